//! Sealed blocks: immutable files of spans sorted by trace id, the store's long-term format.
//!
//! ```text
//! "SPBLK001"
//! row group 0: zstd(span batch), spans sorted by (trace id, start time)
//! row group 1 ...
//! footer: summary (span count, time range, services, source WAL segment),
//!         row-group directory (offset, length, crc32, span count, first/last trace id, time range),
//!         bloom filter over the block's trace ids
//! footer length: u32 LE | footer crc32: u32 LE | "SPBLK001"
//! ```
//!
//! Finding a trace costs a bloom-filter probe per block (in memory), a binary search of the
//! directory, and one row-group read and decompression. Search skips blocks and row groups
//! by time range and service before decompressing anything.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use model::{Span, TraceId};

use crate::codec::{self, CorruptBatch, Reader, Writer};
use crate::{StoreError, io_error, wal::sync_dir};

const MAGIC: &[u8; 8] = b"SPBLK001";
const TRAILER_BYTES: usize = 16;
const BLOCK_ZSTD_LEVEL: i32 = 3;
const BLOOM_BITS_PER_TRACE: u64 = 10;
const BLOOM_HASHES: u32 = 7;

#[derive(Debug, Clone)]
pub(crate) struct RowGroup {
    offset: u64,
    compressed_bytes: u64,
    raw_bytes: u64,
    crc32: u32,
    pub(crate) num_spans: u64,
    first_trace: [u8; 16],
    last_trace: [u8; 16],
    pub(crate) min_start_unix_nanos: u64,
    pub(crate) max_end_unix_nanos: u64,
}

/// What the store keeps in memory about a sealed block.
#[derive(Debug)]
pub(crate) struct BlockMeta {
    pub(crate) path: PathBuf,
    pub(crate) file_bytes: u64,
    /// The newest WAL segment whose spans this block holds.
    pub(crate) last_wal_segment: u64,
    pub(crate) num_spans: u64,
    pub(crate) min_start_unix_nanos: u64,
    pub(crate) max_end_unix_nanos: u64,
    pub(crate) services: Vec<String>,
    pub(crate) row_groups: Vec<RowGroup>,
    bloom: Bloom,
}

pub(crate) fn block_path(dir: &Path, last_wal_segment: u64) -> PathBuf {
    dir.join(format!("{last_wal_segment:020}.blk"))
}

/// Sorts the spans and writes them as a block, durably, then returns its metadata.
pub(crate) fn write_block(
    dir: &Path,
    last_wal_segment: u64,
    mut spans: Vec<Span>,
    row_group_spans: usize,
) -> Result<BlockMeta, StoreError> {
    spans.sort_by(|a, b| {
        (a.trace_id, a.start_time_unix_nanos).cmp(&(b.trace_id, b.start_time_unix_nanos))
    });
    let path = block_path(dir, last_wal_segment);
    let tmp = path.with_extension("blk.tmp");
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(MAGIC).map_err(io_error(&tmp))?;
    let mut offset = MAGIC.len() as u64;

    let mut row_groups = Vec::new();
    let mut bloom = Bloom::new(spans.len() as u64);
    let mut services: Vec<String> = Vec::new();
    let mut chunk_start = 0;
    while chunk_start < spans.len() {
        // Extend the group to the end of its last trace so a trace never straddles two groups
        // (unless a single trace is larger than a whole group).
        let mut chunk_end = (chunk_start + row_group_spans.max(1)).min(spans.len());
        while chunk_end < spans.len()
            && spans[chunk_end].trace_id == spans[chunk_end - 1].trace_id
            && chunk_end - chunk_start < 4 * row_group_spans.max(1)
        {
            chunk_end += 1;
        }
        let chunk = &spans[chunk_start..chunk_end];
        let raw = codec::encode(chunk);
        let compressed = zstd::bulk::compress(&raw, BLOCK_ZSTD_LEVEL)
            .expect("INVARIANT: zstd compression into a growable buffer cannot fail");
        file.write_all(&compressed).map_err(io_error(&tmp))?;
        for span in chunk {
            bloom.insert(&span.trace_id);
            let service = span.service_name();
            if !services.iter().any(|s| s == service) {
                services.push(service.to_owned());
            }
        }
        row_groups.push(RowGroup {
            offset,
            compressed_bytes: compressed.len() as u64,
            raw_bytes: raw.len() as u64,
            crc32: crc32fast::hash(&compressed),
            num_spans: chunk.len() as u64,
            first_trace: *chunk[0].trace_id.as_bytes(),
            last_trace: *chunk[chunk.len() - 1].trace_id.as_bytes(),
            min_start_unix_nanos: chunk.iter().map(|s| s.start_time_unix_nanos).min().unwrap_or(0),
            max_end_unix_nanos: chunk.iter().map(|s| s.end_time_unix_nanos).max().unwrap_or(0),
        });
        offset += compressed.len() as u64;
        chunk_start = chunk_end;
    }
    services.sort();

    let meta = BlockMeta {
        file_bytes: 0,
        path: path.clone(),
        last_wal_segment,
        num_spans: spans.len() as u64,
        min_start_unix_nanos: row_groups.iter().map(|g| g.min_start_unix_nanos).min().unwrap_or(0),
        max_end_unix_nanos: row_groups.iter().map(|g| g.max_end_unix_nanos).max().unwrap_or(0),
        services,
        row_groups,
        bloom,
    };
    let footer = encode_footer(&meta);
    file.write_all(&footer).map_err(io_error(&tmp))?;
    file.write_all(&(footer.len() as u32).to_le_bytes()).map_err(io_error(&tmp))?;
    file.write_all(&crc32fast::hash(&footer).to_le_bytes()).map_err(io_error(&tmp))?;
    file.write_all(MAGIC).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_error(&path))?;
    sync_dir(dir)?;
    let file_bytes = offset + footer.len() as u64 + TRAILER_BYTES as u64;
    Ok(BlockMeta { file_bytes, ..meta })
}

fn encode_footer(meta: &BlockMeta) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(1);
    w.varint(meta.last_wal_segment);
    w.varint(meta.num_spans);
    w.varint(meta.min_start_unix_nanos);
    w.varint(meta.max_end_unix_nanos);
    w.varint(meta.services.len() as u64);
    for service in &meta.services {
        w.bytes(service.as_bytes());
    }
    w.varint(meta.row_groups.len() as u64);
    for g in &meta.row_groups {
        w.varint(g.offset);
        w.varint(g.compressed_bytes);
        w.varint(g.raw_bytes);
        w.raw(&g.crc32.to_le_bytes());
        w.varint(g.num_spans);
        w.raw(&g.first_trace);
        w.raw(&g.last_trace);
        w.varint(g.min_start_unix_nanos);
        w.varint(g.max_end_unix_nanos);
    }
    w.varint(u64::from(meta.bloom.hashes));
    w.bytes(&meta.bloom.bits);
    w.buf
}

/// Reads and checks a block's footer.
pub(crate) fn read_block_meta(path: &Path) -> Result<BlockMeta, StoreError> {
    let corrupt = |reason: &'static str| StoreError::CorruptBlock {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let file = File::open(path).map_err(io_error(path))?;
    let file_bytes = file.metadata().map_err(io_error(path))?.len();
    if file_bytes < (MAGIC.len() + TRAILER_BYTES) as u64 {
        return Err(corrupt("shorter than a block header and trailer"));
    }
    let mut trailer = [0u8; TRAILER_BYTES];
    file.read_exact_at(&mut trailer, file_bytes - TRAILER_BYTES as u64).map_err(io_error(path))?;
    if &trailer[8..] != MAGIC {
        return Err(corrupt("missing trailer magic"));
    }
    let footer_len = u64::from(u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")));
    let footer_crc = u32::from_le_bytes(trailer[4..8].try_into().expect("4 bytes"));
    if footer_len + (MAGIC.len() + TRAILER_BYTES) as u64 > file_bytes {
        return Err(corrupt("footer length beyond the file"));
    }
    let mut footer = vec![0u8; footer_len as usize];
    file.read_exact_at(&mut footer, file_bytes - TRAILER_BYTES as u64 - footer_len)
        .map_err(io_error(path))?;
    if crc32fast::hash(&footer) != footer_crc {
        return Err(corrupt("footer checksum mismatch"));
    }
    decode_footer(path, file_bytes, &footer).map_err(|e| corrupt(e.0))
}

fn decode_footer(path: &Path, file_bytes: u64, footer: &[u8]) -> Result<BlockMeta, CorruptBatch> {
    let mut r = Reader::new(footer);
    if r.u8()? != 1 {
        return Err(CorruptBatch("unknown footer version"));
    }
    let last_wal_segment = r.varint()?;
    let num_spans = r.varint()?;
    let min_start_unix_nanos = r.varint()?;
    let max_end_unix_nanos = r.varint()?;
    let num_services = r.count()?;
    let mut services = Vec::with_capacity(num_services);
    for _ in 0..num_services {
        services.push(r.string()?);
    }
    let num_groups = r.count()?;
    let mut row_groups = Vec::with_capacity(num_groups);
    for _ in 0..num_groups {
        row_groups.push(RowGroup {
            offset: r.varint()?,
            compressed_bytes: r.varint()?,
            raw_bytes: r.varint()?,
            crc32: u32::from_le_bytes(r.array()?),
            num_spans: r.varint()?,
            first_trace: r.array()?,
            last_trace: r.array()?,
            min_start_unix_nanos: r.varint()?,
            max_end_unix_nanos: r.varint()?,
        });
    }
    let hashes = r.u32()?;
    let bits = r.bytes()?.to_vec();
    if bits.is_empty() || !r.is_empty() {
        return Err(CorruptBatch("malformed bloom filter"));
    }
    Ok(BlockMeta {
        path: path.to_owned(),
        file_bytes,
        last_wal_segment,
        num_spans,
        min_start_unix_nanos,
        max_end_unix_nanos,
        services,
        row_groups,
        bloom: Bloom { bits, hashes },
    })
}

impl BlockMeta {
    pub(crate) fn may_contain(&self, trace_id: &TraceId) -> bool {
        self.bloom.may_contain(trace_id)
    }

    /// Indexes of the row groups whose trace-id range covers `trace_id`.
    pub(crate) fn row_groups_for(&self, trace_id: &TraceId) -> impl Iterator<Item = usize> + '_ {
        let id = *trace_id.as_bytes();
        let first = self.row_groups.partition_point(|g| g.last_trace < id);
        (first..self.row_groups.len()).take_while(move |&i| self.row_groups[i].first_trace <= id)
    }

    /// Reads, checks and decodes one row group.
    pub(crate) fn read_row_group(&self, idx: usize) -> Result<Vec<Span>, StoreError> {
        let corrupt = |reason: &str| StoreError::CorruptBlock {
            path: self.path.clone(),
            reason: format!("row group {idx}: {reason}"),
        };
        let group = self.row_groups.get(idx).ok_or_else(|| corrupt("no such row group"))?;
        let file = File::open(&self.path).map_err(io_error(&self.path))?;
        let mut compressed = vec![0u8; group.compressed_bytes as usize];
        file.read_exact_at(&mut compressed, group.offset).map_err(io_error(&self.path))?;
        if crc32fast::hash(&compressed) != group.crc32 {
            return Err(corrupt("checksum mismatch"));
        }
        let raw = zstd::bulk::decompress(&compressed, group.raw_bytes as usize)
            .map_err(|e| corrupt(&e.to_string()))?;
        codec::decode(&raw).map_err(|e| corrupt(e.0))
    }
}

/// A bloom filter over trace ids. Trace ids are mostly random, but some generators put a
/// timestamp in the high bytes, so each half is mixed before use.
#[derive(Debug)]
struct Bloom {
    bits: Vec<u8>,
    hashes: u32,
}

impl Bloom {
    fn new(expected_items: u64) -> Bloom {
        let num_bits = (expected_items.max(1) * BLOOM_BITS_PER_TRACE).next_multiple_of(8);
        Bloom { bits: vec![0; (num_bits / 8) as usize], hashes: BLOOM_HASHES }
    }

    fn positions(&self, trace_id: &TraceId) -> impl Iterator<Item = u64> + use<> {
        let bytes = trace_id.as_bytes();
        let h1 = mix(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")));
        let h2 = mix(u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"))) | 1;
        let num_bits = self.bits.len() as u64 * 8;
        (0..u64::from(self.hashes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % num_bits)
    }

    fn insert(&mut self, trace_id: &TraceId) {
        for bit in self.positions(trace_id) {
            self.bits[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }

    fn may_contain(&self, trace_id: &TraceId) -> bool {
        self.positions(trace_id).all(|bit| self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
