//! The write-ahead log: numbered segment files of length- and checksum-framed records.
//!
//! A record is `[payload length: u32 LE][crc32 of payload: u32 LE][payload]`, where the payload
//! is a zstd-compressed span batch (see `codec`). Appends go to the newest segment; a segment
//! is deleted once every span in it is in a sealed block. On open, each segment is replayed
//! up to its last complete, checksummed record and truncated there: a torn write at the end of
//! the log (the process died mid-`write`) costs only the record that was never acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use model::Span;

use crate::{StoreError, codec, io_error};

const HEADER_BYTES: usize = 8;
/// zstd level for WAL records: fast, and still about 5x smaller than the raw batch.
const WAL_ZSTD_LEVEL: i32 = 1;
/// A record larger than this is treated as corruption on replay (no valid batch is this big).
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// When the WAL is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fdatasync` before any write is acknowledged (group commit: one sync per batch of
    /// concurrent writes). An acknowledged span survives a crash of the process or the machine.
    Always,
    /// Never sync; the OS writes back on its own schedule. Survives a process crash, not a
    /// power loss. For benchmarks and throwaway demos only.
    Never,
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Segment numbers present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else { continue };
        if let Ok(seq) = stem.parse() {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Frames one batch as a record, ready to append.
pub(crate) fn encode_record(spans: &[Span]) -> Vec<u8> {
    let batch = codec::encode(spans);
    let payload = zstd::bulk::compress(&batch, WAL_ZSTD_LEVEL)
        .expect("INVARIANT: zstd compression into a growable buffer cannot fail");
    let mut record = Vec::with_capacity(HEADER_BYTES + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

/// Reads every complete record of a segment and cuts the file after the last one.
pub(crate) fn replay_segment(path: &Path) -> Result<Vec<Span>, StoreError> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    let mut spans = Vec::new();
    let mut offset = 0usize;
    while let Some(header) = bytes.get(offset..offset + HEADER_BYTES) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_RECORD_BYTES {
            break;
        }
        let Some(payload) = bytes.get(offset + HEADER_BYTES..offset + HEADER_BYTES + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(batch) = zstd::bulk::decompress(payload, MAX_RECORD_BYTES) else { break };
        let Ok(decoded) = codec::decode(&batch) else { break };
        spans.extend(decoded);
        offset += HEADER_BYTES + len;
    }
    let truncated_bytes = (bytes.len() - offset) as u64;
    if truncated_bytes > 0 {
        tracing::warn!(
            path = %path.display(),
            truncated_bytes,
            "cutting a torn or corrupt record off the end of a WAL segment"
        );
        let file = OpenOptions::new().write(true).open(path).map_err(io_error(path))?;
        file.set_len(offset as u64).map_err(io_error(path))?;
        file.sync_all().map_err(io_error(path))?;
    }
    Ok(spans)
}

/// The segment currently appended to.
pub(crate) struct SegmentWriter {
    pub(crate) seq: u64,
    file: File,
    path: PathBuf,
    pub(crate) bytes: u64,
}

impl SegmentWriter {
    pub(crate) fn create(dir: &Path, seq: u64) -> Result<SegmentWriter, StoreError> {
        let path = segment_path(dir, seq);
        let file =
            OpenOptions::new().create(true).append(true).open(&path).map_err(io_error(&path))?;
        let bytes = file.metadata().map_err(io_error(&path))?.len();
        sync_dir(dir)?;
        Ok(SegmentWriter { seq, file, path, bytes })
    }

    pub(crate) fn append(&mut self, records: &[u8], sync: SyncPolicy) -> Result<(), StoreError> {
        self.file.write_all(records).map_err(io_error(&self.path))?;
        if sync == SyncPolicy::Always {
            self.file.sync_data().map_err(io_error(&self.path))?;
        }
        self.bytes += records.len() as u64;
        Ok(())
    }
}

/// Makes a file creation, rename or deletion in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}
