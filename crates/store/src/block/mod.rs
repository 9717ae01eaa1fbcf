//! Sealed blocks: immutable files of spans sorted by trace id, the store's long-term format.
//!
//! ```text
//! "SPBLK002"
//! row group 0: zstd(core) | zstd(attributes) | zstd(events and links) | attribute bloom
//! row group 1 ...
//! footer: summary (span count, time range, services, source WAL segment),
//!         row groups (per part: offset, lengths, crc32; span count, first/last trace id,
//!         time range, duration range, spans per status, the services present, whether any
//!         span sets an identity attribute itself, where the attribute bloom is),
//!         a bloom filter over the block's trace ids
//! footer length: u32 LE | footer crc32: u32 LE | "SPBLK002"
//! ```
//!
//! A row group is one span batch (`codec`) cut in three parts, each compressed on its own, so
//! a search decompresses the core (ids, names, times, status, resources) and reads the span
//! attributes only when a filter needs them. Finding a trace costs a bloom probe per block (in
//! memory), a binary search of the row groups by trace id, and one row group's decompression;
//! only that trace's spans are built. A search skips blocks and row groups by time range,
//! service, duration range and status from the footer, and, for attribute equality, by the
//! group's attribute bloom (read from the file on demand, so memory does not grow with them).
//!
//! Blocks written by the first format ("SPBLK001": one compressed batch per row group, a
//! bloom over span count) are still read: their row groups are whole batches without stats.

use foldhash::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use model::{Span, StatusCode, TraceId, attribute_names};

pub(crate) use self::bloom::GroupBloom;
use self::bloom::{
    ATTRIBUTE_BLOOM_BITS, ATTRIBUTE_BLOOM_HASHES, ATTRIBUTE_BLOOM_MAX_BITS_PER_SPAN, Bloom,
    NAME_KEY, TRACE_BLOOM_BITS, TRACE_BLOOM_HASHES, attribute_hash, split_hash, trace_hashes,
    value_hash,
};
use crate::codec::{self, CorruptBatch, Cursor, Reader, Writer};
use crate::{StoreError, io_error, wal::sync_dir};

mod bloom;

const MAGIC_V1: &[u8; 8] = b"SPBLK001";
const MAGIC: &[u8; 8] = b"SPBLK002";
const TRAILER_BYTES: usize = 16;
const BLOCK_ZSTD_LEVEL: i32 = 3;
/// A row group's services are a bit set over the block's list; past 64 services every bit
/// is set ("may hold any").
const MAX_SERVICE_BITS: usize = 64;
/// No row-group part decompresses to more than this (a group is thousands of spans).
const MAX_PART_RAW_BYTES: u64 = 1 << 30;

/// Where a part of a row group lies in the file.
#[derive(Debug, Clone, Copy, Default)]
struct Part {
    offset: u64,
    compressed_bytes: u64,
    raw_bytes: u64,
    crc32: u32,
}

/// Which parts of a row group a read needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parts {
    /// Ids, names, times, status and resources.
    Core,
    /// The core and the span attributes.
    CoreAndAttributes,
    /// Everything: whole spans.
    All,
}

/// What a row group's footer entry says about its spans (`None` in first-format blocks).
#[derive(Debug, Clone)]
pub(crate) struct GroupStats {
    min_duration_nanos: u64,
    max_duration_nanos: u64,
    /// Spans per status code: unset, ok, error.
    status_counts: [u64; 3],
    /// Bit `i`: a span of the block's `services[i]`.
    service_bits: u64,
    /// Whether a span sets `service.name`, an environment or a version as its own attribute
    /// (then a filter on them must read the attributes part, not only the resource).
    identity_in_span_attributes: bool,
    attribute_bloom: Part,
}

#[derive(Debug, Clone)]
pub(crate) struct RowGroup {
    /// First format: one whole batch; second: core, attributes, events and links.
    parts: Vec<Part>,
    pub(crate) num_spans: u64,
    first_trace: [u8; 16],
    last_trace: [u8; 16],
    pub(crate) min_start_unix_nanos: u64,
    pub(crate) max_end_unix_nanos: u64,
    stats: Option<GroupStats>,
}

/// What the store keeps in memory about a sealed block.
#[derive(Debug)]
pub(crate) struct BlockMeta {
    pub(crate) path: PathBuf,
    /// Held open for the block's life: reads never reopen it, so a block deleted by
    /// compaction or retention stays readable to a search that already holds it.
    file: File,
    pub(crate) file_bytes: u64,
    /// The blocks this one was compacted from (file names): a crash after this block was
    /// written and before they were deleted leaves them behind, and opening deletes them.
    pub(crate) sources: Vec<String>,
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

/// Where a block compacted from blocks holding WAL segments up to `first..=last` goes.
pub(crate) fn compacted_block_path(dir: &Path, first: u64, last: u64) -> PathBuf {
    dir.join(format!("{last:020}-{first:020}.blk"))
}

/// Writes the spans, sorted by trace id, as a block, durably, then returns its metadata.
pub(crate) fn write_block(
    dir: &Path,
    last_wal_segment: u64,
    spans: &[Span],
    row_group_spans: usize,
) -> Result<BlockMeta, StoreError> {
    let mut spans: Vec<&Span> = spans.iter().collect();
    spans.sort_by(|a, b| {
        (a.trace_id, a.start_time_unix_nanos).cmp(&(b.trace_id, b.start_time_unix_nanos))
    });
    let mut services: Vec<String> = spans.iter().map(|s| s.service_name().to_owned()).collect();
    services.sort();
    services.dedup();
    let num_traces = spans.windows(2).filter(|w| w[0].trace_id != w[1].trace_id).count() + 1;
    let mut writer = BlockWriter::create(
        block_path(dir, last_wal_segment),
        last_wal_segment,
        services,
        num_traces as u64,
        Vec::new(),
    )?;
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
        writer.push_row_group(&spans[chunk_start..chunk_end])?;
        chunk_start = chunk_end;
    }
    writer.finish()
}

/// A block being written: row groups are added in trace-id order, then [`finish`]
/// (BlockWriter::finish) writes the footer, syncs and renames it into place.
pub(crate) struct BlockWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    offset: u64,
    last_wal_segment: u64,
    services: Vec<String>,
    sources: Vec<String>,
    bloom: Bloom,
    row_groups: Vec<RowGroup>,
    num_spans: u64,
}

impl BlockWriter {
    /// Starts a block at `path` (written as `path.tmp` until finished). `services` must name
    /// every service of the spans to come, sorted; `expected_traces` sizes the trace bloom.
    pub(crate) fn create(
        path: PathBuf,
        last_wal_segment: u64,
        services: Vec<String>,
        expected_traces: u64,
        sources: Vec<String>,
    ) -> Result<BlockWriter, StoreError> {
        let tmp = path.with_extension("blk.tmp");
        // Readable too: the finished block keeps this handle for its reads.
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_error(&tmp))?;
        file.write_all(MAGIC).map_err(io_error(&tmp))?;
        Ok(BlockWriter {
            path,
            tmp,
            file,
            offset: MAGIC.len() as u64,
            last_wal_segment,
            services,
            sources,
            bloom: Bloom::new(expected_traces.max(1) * TRACE_BLOOM_BITS, TRACE_BLOOM_HASHES),
            row_groups: Vec::new(),
            num_spans: 0,
        })
    }

    /// Appends one row group; `chunk` is sorted by (trace id, start) and follows the last.
    pub(crate) fn push_row_group(&mut self, chunk: &[&Span]) -> Result<(), StoreError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let tmp = &self.tmp;
        let split = codec::encode_split(chunk);
        let mut parts = Vec::with_capacity(3);
        for raw in [&split.core, &split.attributes, &split.events_links] {
            let compressed = zstd::bulk::compress(raw, BLOCK_ZSTD_LEVEL)
                .expect("INVARIANT: zstd compression into a growable buffer cannot fail");
            self.file.write_all(&compressed).map_err(io_error(tmp))?;
            parts.push(Part {
                offset: self.offset,
                compressed_bytes: compressed.len() as u64,
                raw_bytes: raw.len() as u64,
                crc32: crc32fast::hash(&compressed),
            });
            self.offset += compressed.len() as u64;
        }
        let (mut stats, attribute_bloom) = group_stats(chunk, &self.services);
        self.file.write_all(&attribute_bloom.bits).map_err(io_error(tmp))?;
        stats.attribute_bloom = Part {
            offset: self.offset,
            compressed_bytes: attribute_bloom.bits.len() as u64,
            raw_bytes: u64::from(attribute_bloom.hashes),
            crc32: crc32fast::hash(&attribute_bloom.bits),
        };
        self.offset += attribute_bloom.bits.len() as u64;
        for span in chunk {
            self.bloom.insert(trace_hashes(&span.trace_id));
        }
        self.num_spans += chunk.len() as u64;
        self.row_groups.push(RowGroup {
            parts,
            num_spans: chunk.len() as u64,
            first_trace: *chunk[0].trace_id.as_bytes(),
            last_trace: *chunk[chunk.len() - 1].trace_id.as_bytes(),
            min_start_unix_nanos: chunk.iter().map(|s| s.start_time_unix_nanos).min().unwrap_or(0),
            max_end_unix_nanos: chunk.iter().map(|s| s.end_time_unix_nanos).max().unwrap_or(0),
            stats: Some(stats),
        });
        Ok(())
    }

    /// Writes the footer, syncs the file, renames it into place and syncs the directory.
    pub(crate) fn finish(mut self) -> Result<BlockMeta, StoreError> {
        let (tmp, path) = (self.tmp, self.path);
        let footer = encode_footer(&FooterView {
            last_wal_segment: self.last_wal_segment,
            num_spans: self.num_spans,
            services: &self.services,
            sources: &self.sources,
            row_groups: &self.row_groups,
            bloom: &self.bloom,
        });
        self.file.write_all(&footer).map_err(io_error(&tmp))?;
        self.file.write_all(&(footer.len() as u32).to_le_bytes()).map_err(io_error(&tmp))?;
        self.file.write_all(&crc32fast::hash(&footer).to_le_bytes()).map_err(io_error(&tmp))?;
        self.file.write_all(MAGIC).map_err(io_error(&tmp))?;
        self.file.sync_all().map_err(io_error(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        let file_bytes = self.offset + footer.len() as u64 + TRAILER_BYTES as u64;
        Ok(BlockMeta {
            path,
            file: self.file,
            file_bytes,
            sources: self.sources,
            last_wal_segment: self.last_wal_segment,
            num_spans: self.num_spans,
            min_start_unix_nanos: self
                .row_groups
                .iter()
                .map(|g| g.min_start_unix_nanos)
                .min()
                .unwrap_or(0),
            max_end_unix_nanos: self
                .row_groups
                .iter()
                .map(|g| g.max_end_unix_nanos)
                .max()
                .unwrap_or(0),
            services: self.services,
            row_groups: self.row_groups,
            bloom: self.bloom,
        })
    }
}

/// Merges `sources` (blocks sorted by trace id) into one block, streaming: each source holds
/// one decoded row group at a time, so memory follows the number of sources, not their size.
/// The sources are left in place; the new block names them, so whoever opens the directory
/// after a crash deletes them (see `Embedded::open`).
pub(crate) fn compact(
    dir: &Path,
    sources: &[&BlockMeta],
    row_group_spans: usize,
) -> Result<BlockMeta, StoreError> {
    let first = sources.iter().map(|b| b.last_wal_segment).min().unwrap_or(0);
    let last = sources.iter().map(|b| b.last_wal_segment).max().unwrap_or(0);
    let mut services: Vec<String> =
        sources.iter().flat_map(|b| b.services.iter().cloned()).collect();
    services.sort();
    services.dedup();
    let expected_traces =
        sources.iter().map(|b| b.bloom.bits.len() as u64 * 8 / TRACE_BLOOM_BITS).sum();
    let names = sources
        .iter()
        .filter_map(|b| b.path.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .collect();
    let mut writer = BlockWriter::create(
        compacted_block_path(dir, first, last),
        last,
        services,
        expected_traces,
        names,
    )?;

    let mut readers: Vec<GroupStream<'_>> = sources.iter().map(|b| GroupStream::new(b)).collect();
    let mut heap = std::collections::BinaryHeap::new();
    for (i, reader) in readers.iter_mut().enumerate() {
        if let Some(span) = reader.next()? {
            heap.push(std::cmp::Reverse((
                (span.trace_id, span.start_time_unix_nanos),
                i,
                HeapSpan(span),
            )));
        }
    }
    let mut chunk: Vec<Span> = Vec::with_capacity(row_group_spans);
    while let Some(std::cmp::Reverse((_, i, HeapSpan(span)))) = heap.pop() {
        if let Some(next) = readers[i].next()? {
            heap.push(std::cmp::Reverse((
                (next.trace_id, next.start_time_unix_nanos),
                i,
                HeapSpan(next),
            )));
        }
        let trace_id = span.trace_id;
        chunk.push(span);
        // Cut after a trace's last span once the group is full (a trace straddles two groups
        // only when it alone is larger than four).
        let next_trace = heap.peek().map(|std::cmp::Reverse(((id, _), _, _))| *id);
        let full = chunk.len() >= row_group_spans.max(1);
        if (full && next_trace != Some(trace_id)) || chunk.len() >= 4 * row_group_spans.max(1) {
            writer.push_row_group(&chunk.iter().collect::<Vec<_>>())?;
            chunk.clear();
        }
    }
    writer.push_row_group(&chunk.iter().collect::<Vec<_>>())?;
    writer.finish()
}

/// A span in the merge heap, ordered by the key beside it only.
struct HeapSpan(Span);

impl PartialEq for HeapSpan {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HeapSpan {}
impl PartialOrd for HeapSpan {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapSpan {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// A block's spans in stored order, one decoded row group at a time.
struct GroupStream<'b> {
    block: &'b BlockMeta,
    next_group: usize,
    spans: std::vec::IntoIter<Span>,
}

impl<'b> GroupStream<'b> {
    fn new(block: &'b BlockMeta) -> GroupStream<'b> {
        GroupStream { block, next_group: 0, spans: Vec::new().into_iter() }
    }

    fn next(&mut self) -> Result<Option<Span>, StoreError> {
        loop {
            if let Some(span) = self.spans.next() {
                return Ok(Some(span));
            }
            if self.next_group == self.block.row_groups.len() {
                return Ok(None);
            }
            let idx = self.next_group;
            self.next_group += 1;
            let loaded = self.block.load_row_group(idx, Parts::All)?;
            let corrupt = |e: CorruptBatch| StoreError::CorruptBlock {
                path: self.block.path.clone(),
                reason: format!("row group {idx}: {}", e.0),
            };
            let mut cursor = loaded.cursor().map_err(corrupt)?;
            let mut spans = Vec::with_capacity(cursor.num_spans());
            while let Some(raw) = cursor.next_span().map_err(corrupt)? {
                spans.push(cursor.materialize(&raw).map_err(corrupt)?);
            }
            self.spans = spans.into_iter();
        }
    }
}

/// A row group's statistics and its attribute bloom (whose place in the file is set later).
fn group_stats(chunk: &[&Span], services: &[String]) -> (GroupStats, Bloom) {
    let mut stats = GroupStats {
        min_duration_nanos: u64::MAX,
        max_duration_nanos: 0,
        status_counts: [0; 3],
        service_bits: if services.len() > MAX_SERVICE_BITS { u64::MAX } else { 0 },
        identity_in_span_attributes: false,
        attribute_bloom: Part::default(),
    };
    let mut pairs = HashSet::default();
    let mut resources_seen = HashSet::default();
    let mut text = String::new();
    for span in chunk {
        pairs.insert(attribute_hash(NAME_KEY, &span.name));
        let duration = span.duration_nanos();
        stats.min_duration_nanos = stats.min_duration_nanos.min(duration);
        stats.max_duration_nanos = stats.max_duration_nanos.max(duration);
        stats.status_counts[status_index(span.status.code)] += 1;
        if services.len() <= MAX_SERVICE_BITS
            && let Ok(i) = services.binary_search_by(|s| s.as_str().cmp(span.service_name()))
        {
            stats.service_bits |= 1 << i;
        }
        for kv in &span.attributes {
            stats.identity_in_span_attributes |= attribute_names::is_identity(&kv.key);
            pairs.extend(value_hash(&kv.key, &kv.value, &mut text));
        }
        if resources_seen.insert(std::sync::Arc::as_ptr(&span.resource)) {
            for kv in &span.resource.attributes {
                pairs.extend(value_hash(&kv.key, &kv.value, &mut text));
            }
        }
    }
    let bits = (pairs.len() as u64 * ATTRIBUTE_BLOOM_BITS)
        .min(chunk.len() as u64 * ATTRIBUTE_BLOOM_MAX_BITS_PER_SPAN);
    let mut bloom = Bloom::new(bits, ATTRIBUTE_BLOOM_HASHES);
    for pair in pairs {
        bloom.insert(split_hash(pair));
    }
    (stats, bloom)
}

fn status_index(code: StatusCode) -> usize {
    match code {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    }
}

/// What the footer holds, borrowed from a writer.
struct FooterView<'a> {
    last_wal_segment: u64,
    num_spans: u64,
    services: &'a [String],
    sources: &'a [String],
    row_groups: &'a [RowGroup],
    bloom: &'a Bloom,
}

fn encode_footer(meta: &FooterView<'_>) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(2);
    w.varint(meta.last_wal_segment);
    w.varint(meta.num_spans);
    w.varint(meta.services.len() as u64);
    for service in meta.services {
        w.bytes(service.as_bytes());
    }
    w.varint(meta.sources.len() as u64);
    for source in meta.sources {
        w.bytes(source.as_bytes());
    }
    w.varint(meta.row_groups.len() as u64);
    let part = |w: &mut Writer, p: &Part| {
        w.varint(p.offset);
        w.varint(p.compressed_bytes);
        w.varint(p.raw_bytes);
        w.raw(&p.crc32.to_le_bytes());
    };
    for g in meta.row_groups {
        let stats = g.stats.as_ref().expect("INVARIANT: this format's groups carry stats");
        for p in &g.parts {
            part(&mut w, p);
        }
        w.varint(g.num_spans);
        w.raw(&g.first_trace);
        w.raw(&g.last_trace);
        w.varint(g.min_start_unix_nanos);
        w.varint(g.max_end_unix_nanos);
        w.varint(stats.min_duration_nanos);
        w.varint(stats.max_duration_nanos);
        for count in stats.status_counts {
            w.varint(count);
        }
        w.raw(&stats.service_bits.to_le_bytes());
        w.u8(u8::from(stats.identity_in_span_attributes));
        part(&mut w, &stats.attribute_bloom);
    }
    w.varint(u64::from(meta.bloom.hashes));
    w.bytes(&meta.bloom.bits);
    w.buf
}

/// Reads and checks a block's footer (either format).
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
    let version = match &trailer[8..] {
        magic if magic == MAGIC => 2,
        magic if magic == MAGIC_V1 => 1,
        _ => return Err(corrupt("missing trailer magic")),
    };
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
    decode_footer(path, file, file_bytes, &footer, version).map_err(|e| corrupt(e.0))
}

fn decode_footer(
    path: &Path,
    file: File,
    file_bytes: u64,
    footer: &[u8],
    magic_version: u8,
) -> Result<BlockMeta, CorruptBatch> {
    let mut r = Reader::new(footer);
    if r.u8()? != magic_version {
        return Err(CorruptBatch("footer version does not match the block's magic"));
    }
    let last_wal_segment = r.varint()?;
    let num_spans = r.varint()?;
    if magic_version == 1 {
        // The block's time range, which the second format derives from its row groups.
        r.varint()?;
        r.varint()?;
    }
    let num_services = r.count()?;
    let mut services = Vec::with_capacity(num_services);
    for _ in 0..num_services {
        services.push(r.string()?);
    }
    let mut sources = Vec::new();
    if magic_version == 2 {
        for _ in 0..r.count()? {
            sources.push(r.string()?);
        }
    }
    let num_groups = r.count()?;
    let mut row_groups = Vec::with_capacity(num_groups);
    let part = |r: &mut Reader<'_>| -> Result<Part, CorruptBatch> {
        Ok(Part {
            offset: r.varint()?,
            compressed_bytes: r.varint()?,
            raw_bytes: r.varint()?,
            crc32: u32::from_le_bytes(r.array()?),
        })
    };
    for _ in 0..num_groups {
        let num_parts = if magic_version == 1 { 1 } else { 3 };
        let mut parts = Vec::with_capacity(num_parts);
        for _ in 0..num_parts {
            parts.push(part(&mut r)?);
        }
        let num_spans = r.varint()?;
        let first_trace = r.array()?;
        let last_trace = r.array()?;
        let min_start_unix_nanos = r.varint()?;
        let max_end_unix_nanos = r.varint()?;
        let stats = if magic_version == 1 {
            None
        } else {
            Some(GroupStats {
                min_duration_nanos: r.varint()?,
                max_duration_nanos: r.varint()?,
                status_counts: [r.varint()?, r.varint()?, r.varint()?],
                service_bits: u64::from_le_bytes(r.array()?),
                identity_in_span_attributes: r.u8()? != 0,
                attribute_bloom: part(&mut r)?,
            })
        };
        row_groups.push(RowGroup {
            parts,
            num_spans,
            first_trace,
            last_trace,
            min_start_unix_nanos,
            max_end_unix_nanos,
            stats,
        });
    }
    let hashes = r.u32()?;
    let bits = r.bytes()?.to_vec();
    if bits.is_empty() || !r.is_empty() || hashes == 0 || hashes > 32 {
        return Err(CorruptBatch("malformed bloom filter"));
    }
    // The first format sized its bloom by spans and hashed trace ids the same way.
    Ok(BlockMeta {
        path: path.to_owned(),
        file,
        file_bytes,
        sources,
        last_wal_segment,
        num_spans,
        min_start_unix_nanos: row_groups.iter().map(|g| g.min_start_unix_nanos).min().unwrap_or(0),
        max_end_unix_nanos: row_groups.iter().map(|g| g.max_end_unix_nanos).max().unwrap_or(0),
        services,
        row_groups,
        bloom: Bloom { bits, hashes },
    })
}

/// A row group's parts, decompressed; [`LoadedGroup::cursor`] reads its spans.
pub(crate) struct LoadedGroup {
    parts: Vec<Vec<u8>>,
    split: bool,
}

impl LoadedGroup {
    pub(crate) fn cursor(&self) -> Result<Cursor<'_>, CorruptBatch> {
        if !self.split {
            return Cursor::new(&self.parts[0]);
        }
        Cursor::split(
            &self.parts[0],
            self.parts.get(1).map(Vec::as_slice),
            self.parts.get(2).map(Vec::as_slice),
        )
    }
}

impl BlockMeta {
    pub(crate) fn may_contain(&self, trace_id: &TraceId) -> bool {
        self.bloom.may_contain(trace_hashes(trace_id))
    }

    /// Indexes of the row groups whose trace-id range covers `trace_id`.
    pub(crate) fn row_groups_for(&self, trace_id: &TraceId) -> impl Iterator<Item = usize> + '_ {
        let id = *trace_id.as_bytes();
        let first = self.row_groups.partition_point(|g| g.last_trace < id);
        (first..self.row_groups.len()).take_while(move |&i| self.row_groups[i].first_trace <= id)
    }

    /// Reads, checks and decompresses the parts of one row group a read needs.
    pub(crate) fn load_row_group(
        &self,
        idx: usize,
        wanted: Parts,
    ) -> Result<LoadedGroup, StoreError> {
        let corrupt = |reason: &str| StoreError::CorruptBlock {
            path: self.path.clone(),
            reason: format!("row group {idx}: {reason}"),
        };
        let group = self.row_groups.get(idx).ok_or_else(|| corrupt("no such row group"))?;
        let split = group.stats.is_some();
        let num_parts = match (split, wanted) {
            (false, _) | (true, Parts::Core) => 1,
            (true, Parts::CoreAndAttributes) => 2,
            (true, Parts::All) => 3,
        };
        let parts = group.parts.get(..num_parts).ok_or_else(|| corrupt("missing parts"))?;
        // The parts lie one after another: one read for all of them. A footer is checksummed,
        // but lengths are still checked against the file before anything is allocated.
        let start = parts[0].offset;
        let len: u64 = parts.iter().map(|p| p.compressed_bytes).sum();
        if start.saturating_add(len) > self.file_bytes
            || parts.iter().any(|p| p.raw_bytes > MAX_PART_RAW_BYTES)
        {
            return Err(corrupt("a part lies beyond the file or is implausibly large"));
        }
        let mut compressed = vec![0u8; len as usize];
        self.file.read_exact_at(&mut compressed, start).map_err(io_error(&self.path))?;
        let mut out = Vec::with_capacity(num_parts);
        for part in parts {
            let from =
                part.offset.checked_sub(start).ok_or_else(|| corrupt("parts out of order"))?
                    as usize;
            let bytes = compressed
                .get(from..from + part.compressed_bytes as usize)
                .ok_or_else(|| corrupt("parts are not contiguous"))?;
            if crc32fast::hash(bytes) != part.crc32 {
                return Err(corrupt("checksum mismatch"));
            }
            out.push(
                zstd::bulk::decompress(bytes, part.raw_bytes as usize)
                    .map_err(|e| corrupt(&e.to_string()))?,
            );
        }
        Ok(LoadedGroup { parts: out, split })
    }

    /// Whether the group may hold a span of `service` (unknown for the first format).
    pub(crate) fn group_may_hold_service(&self, idx: usize, service: &str) -> bool {
        let Some(stats) = &self.row_groups[idx].stats else { return true };
        if stats.service_bits == u64::MAX {
            return true;
        }
        self.services
            .binary_search_by(|s| s.as_str().cmp(service))
            .is_ok_and(|i| stats.service_bits & (1 << i) != 0)
    }

    /// Whether the group may hold a span whose duration lies in `[min, max]`.
    pub(crate) fn group_may_hold_duration(&self, idx: usize, min: u64, max: u64) -> bool {
        self.row_groups[idx]
            .stats
            .as_ref()
            .is_none_or(|s| s.max_duration_nanos >= min && s.min_duration_nanos <= max)
    }

    /// Whether the group may hold a span with this status.
    pub(crate) fn group_may_hold_status(&self, idx: usize, code: StatusCode) -> bool {
        self.row_groups[idx].stats.as_ref().is_none_or(|s| s.status_counts[status_index(code)] > 0)
    }

    /// Whether a span of the group sets an identity attribute itself (always assumed for
    /// the first format).
    pub(crate) fn group_has_identity_in_span_attributes(&self, idx: usize) -> bool {
        self.row_groups[idx].stats.as_ref().is_none_or(|s| s.identity_in_span_attributes)
    }

    /// The group's attribute bloom, read from the file (`None` for the first format, which
    /// has none: everything may match).
    pub(crate) fn group_bloom(&self, idx: usize) -> Result<Option<GroupBloom>, StoreError> {
        let Some(stats) = &self.row_groups[idx].stats else { return Ok(None) };
        let part = stats.attribute_bloom;
        if part.offset.saturating_add(part.compressed_bytes) > self.file_bytes {
            return Err(StoreError::CorruptBlock {
                path: self.path.clone(),
                reason: format!("row group {idx}: attribute bloom beyond the file"),
            });
        }
        let mut bits = vec![0u8; part.compressed_bytes as usize];
        self.file.read_exact_at(&mut bits, part.offset).map_err(io_error(&self.path))?;
        if bits.is_empty() || crc32fast::hash(&bits) != part.crc32 {
            return Err(StoreError::CorruptBlock {
                path: self.path.clone(),
                reason: format!("row group {idx}: attribute bloom checksum mismatch"),
            });
        }
        Ok(Some(GroupBloom(Bloom { bits, hashes: part.raw_bytes.clamp(1, 32) as u32 })))
    }
}
