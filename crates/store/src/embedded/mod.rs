//! The embedded span engine: spans through a write-ahead log into immutable, compressed,
//! columnar blocks; sketches and the catalog into the SQLite metadata.
//!
//! # The write path
//! [`Embedded::append`] encodes a batch (off any lock), queues it, and waits until it is
//! durable. Whichever caller finds no write in progress becomes the *leader*: it takes every
//! queued batch, appends them to the current WAL segment with one `write` and one
//! `fdatasync`, inserts their spans into the in-memory head, and wakes the others. Many
//! concurrent exports therefore share one sync (group commit), and a caller returns only once
//! its spans are durable and readable.
//!
//! # Head, sealing and blocks
//! The head holds the spans of the WAL segments not yet sealed, indexed by trace id, so recent
//! spans are queryable at once. When it passes `max_head_spans` (or `max_head_age` in
//! [`Embedded::maintain`]) the leader *freezes* it and starts a new WAL segment.
//! [`Embedded::maintain`] seals frozen heads into block files (sorted by trace id, row groups
//! compressed with zstd, a bloom filter and a trace-id directory in the footer) and only then
//! deletes the WAL segments they came from. A block names the newest WAL segment it holds, so
//! after a crash between the two steps the recovery deletes the already-sealed segments
//! instead of replaying them twice.
//!
//! **Architecture Invariant:** a span is acknowledged only after it is in a WAL record that
//! was synced (under [`crate::SyncPolicy::Always`]), and a WAL segment is deleted only after a synced,
//! renamed block holds all of its spans.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use analysis::histogram::Histogram;
use model::{Span, TraceId};

use self::search::{TopTraces, corrupt_group, search_block};
use crate::block::{self, BlockMeta, Parts};
use crate::metadata::{Metadata, PendingCatalog};
use crate::sketches::{self, SketchDelta};
use crate::wal::{self, SegmentWriter};
use crate::{
    RetentionReport, RollUpReport, SketchQuery, SketchRow, SpanEngine, SpanQuery, StoreError,
    StoreOptions, StoreStats, TraceMatch, TraceSummary, io_error, lock,
};

mod search;

/// A set of head spans, covering a contiguous range of WAL segments.
pub(crate) struct HeadPart {
    first_wal_segment: u64,
    last_wal_segment: u64,
    spans: Vec<Span>,
    by_trace: foldhash::HashMap<TraceId, Vec<u32>>,
    /// When `maintain` first saw this part non-empty (for the age limit).
    first_seen_nanos: Option<u64>,
    /// The sketches of this part's spans that are not in the stored sketches yet.
    sketches: SketchDelta,
    /// Set once `sketches` is in the metadata store (readers then skip it).
    sketches_persisted: AtomicBool,
}

impl HeadPart {
    fn new(wal_segment: u64) -> HeadPart {
        HeadPart {
            first_wal_segment: wal_segment,
            last_wal_segment: wal_segment,
            spans: Vec::new(),
            by_trace: foldhash::HashMap::default(),
            first_seen_nanos: None,
            sketches: SketchDelta::default(),
            sketches_persisted: AtomicBool::new(false),
        }
    }

    fn insert(&mut self, spans: Vec<Span>) {
        for span in spans {
            let idx = self.spans.len() as u32;
            self.by_trace.entry(span.trace_id).or_default().push(idx);
            self.spans.push(span);
        }
    }

    fn trace(&self, trace_id: &TraceId, out: &mut Vec<Span>) {
        if let Some(idxs) = self.by_trace.get(trace_id) {
            out.extend(idxs.iter().map(|&i| self.spans[i as usize].clone()));
        }
    }
}

pub(crate) struct Heads {
    active: HeadPart,
    pub(crate) frozen: Vec<Arc<HeadPart>>,
}

struct PendingWrite {
    record: Vec<u8>,
    spans: Vec<Span>,
}

struct WriteState {
    /// `None` only while the leader is writing to it.
    segment: Option<SegmentWriter>,
    pending: Vec<PendingWrite>,
    pending_bytes: usize,
    next_ticket: u64,
    durable_ticket: u64,
    writing: bool,
    failed: Option<String>,
}

pub(crate) struct Embedded {
    wal_dir: PathBuf,
    block_dir: PathBuf,
    options: StoreOptions,
    write: Mutex<WriteState>,
    written: Condvar,
    heads: RwLock<Heads>,
    blocks: RwLock<Vec<Arc<BlockMeta>>>,
    seal_lock: Mutex<()>,
    /// Held while blocks are replaced (compaction) or deleted (retention), so the two never
    /// work on the same block.
    rewrite_lock: Mutex<()>,
    /// Held while sketches move from a head part to the metadata store, and while reading
    /// both, so a reader sees each span's sketch exactly once.
    sketch_lock: Mutex<()>,
    metadata: Arc<Metadata>,
    catalog: PendingCatalog,
    sealed_blocks_total: AtomicU64,
    deleted_blocks_total: AtomicU64,
    compacted_blocks_total: AtomicU64,
    /// How long group commits' writes and syncs, seals and merges took.
    wal_write_seconds: Mutex<Histogram>,
    seal_seconds: Mutex<Histogram>,
    compaction_seconds: Mutex<Histogram>,
    recovered_spans: u64,
}

/// The data directory's subdirectories: write-ahead log segments, and sealed blocks.
pub(crate) const WAL_DIR: &str = "wal";
pub(crate) const BLOCK_DIR: &str = "blocks";

/// Most bytes of encoded batches waiting for the leader before appends are refused as busy.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

impl Embedded {
    /// Opens (or creates) the store in `data_dir`, replaying the WAL into the head.
    pub(crate) fn open(
        data_dir: &Path,
        options: StoreOptions,
        metadata: Arc<Metadata>,
    ) -> Result<Embedded, StoreError> {
        let wal_dir = data_dir.join(WAL_DIR);
        let block_dir = data_dir.join(BLOCK_DIR);
        for dir in [data_dir, &wal_dir, &block_dir] {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }

        let mut blocks = Vec::new();
        for entry in fs::read_dir(&block_dir).map_err(io_error(&block_dir))? {
            let path = entry.map_err(io_error(&block_dir))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => fs::remove_file(&path).map_err(io_error(&path))?,
                Some("blk") => blocks.push(Arc::new(block::read_block_meta(&path)?)),
                _ => {}
            }
        }
        // A compaction that crashed after writing its block and before deleting its sources
        // left them behind: their spans are in the compacted block, so they go now.
        let replaced: std::collections::HashSet<String> =
            blocks.iter().flat_map(|b| b.sources.iter().cloned()).collect();
        blocks.retain(|b| {
            let name = b.path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            !replaced.contains(name)
        });
        for name in &replaced {
            let path = block_dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "deleted a block already compacted")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
        if !replaced.is_empty() {
            wal::sync_dir(&block_dir)?;
        }
        blocks.sort_by_key(|b| b.last_wal_segment);
        let max_sealed = blocks.last().map(|b| b.last_wal_segment);

        let sketch_watermark = sketches::watermark(&*metadata.sqlite()?)?;
        let mut replayed_spans = Vec::new();
        let mut replayed_sketches = SketchDelta::default();
        let mut first_unsealed = None;
        let mut max_segment = max_sealed.unwrap_or(0);
        for seq in wal::list_segments(&wal_dir)? {
            max_segment = max_segment.max(seq);
            let path = wal::segment_path(&wal_dir, seq);
            if max_sealed.is_some_and(|sealed| seq <= sealed) {
                fs::remove_file(&path).map_err(io_error(&path))?;
                continue;
            }
            first_unsealed.get_or_insert(seq);
            let spans = wal::replay_segment(&path)?;
            // Segments at or below the watermark are already in the stored sketches.
            if seq > sketch_watermark {
                replayed_sketches.merge(SketchDelta::of_spans(&spans));
            }
            replayed_spans.extend(spans);
        }
        let segment = SegmentWriter::create(&wal_dir, max_segment + 1)?;
        let mut active = HeadPart::new(first_unsealed.unwrap_or(segment.seq));
        active.last_wal_segment = segment.seq;
        let recovered_spans = replayed_spans.len() as u64;
        let catalog = PendingCatalog::default();
        catalog.note(&replayed_spans);
        active.insert(replayed_spans);
        active.sketches = replayed_sketches;
        if recovered_spans > 0 {
            tracing::info!(recovered_spans, "replayed the write-ahead log");
        }

        Ok(Embedded {
            wal_dir,
            block_dir,
            options,
            write: Mutex::new(WriteState {
                segment: Some(segment),
                pending: Vec::new(),
                pending_bytes: 0,
                next_ticket: 0,
                durable_ticket: 0,
                writing: false,
                failed: None,
            }),
            written: Condvar::new(),
            heads: RwLock::new(Heads { active, frozen: Vec::new() }),
            blocks: RwLock::new(blocks),
            seal_lock: Mutex::new(()),
            rewrite_lock: Mutex::new(()),
            sketch_lock: Mutex::new(()),
            metadata,
            catalog,
            sealed_blocks_total: AtomicU64::new(0),
            deleted_blocks_total: AtomicU64::new(0),
            compacted_blocks_total: AtomicU64::new(0),
            wal_write_seconds: Mutex::default(),
            seal_seconds: Mutex::default(),
            compaction_seconds: Mutex::default(),
            recovered_spans,
        })
    }

    /// Writes everything pending as the leader. Returns with the lock held again.
    fn lead_write<'a>(
        &'a self,
        mut state: MutexGuard<'a, WriteState>,
    ) -> MutexGuard<'a, WriteState> {
        state.writing = true;
        let batch = std::mem::take(&mut state.pending);
        state.pending_bytes = 0;
        let last_ticket = state.next_ticket;
        let mut segment =
            state.segment.take().expect("INVARIANT: only the leader takes the segment");
        drop(state);

        let mut records = Vec::with_capacity(batch.iter().map(|w| w.record.len()).sum());
        let mut spans = Vec::with_capacity(batch.iter().map(|w| w.spans.len()).sum());
        for write in batch {
            records.extend_from_slice(&write.record);
            spans.extend(write.spans);
        }
        let started = std::time::Instant::now();
        let result = segment.append(&records, self.options.sync);
        lock(&self.wal_write_seconds).observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            self.catalog.note(&spans);
            let sketches = SketchDelta::of_spans(&spans);
            let mut heads = self.heads_write();
            heads.active.insert(spans);
            heads.active.sketches.merge(sketches);
        }

        let mut state = lock(&self.write);
        state.segment = Some(segment);
        match result {
            Ok(()) => {
                state.durable_ticket = last_ticket;
                if self.heads_read().active.spans.len() >= self.options.max_head_spans
                    && let Err(e) = self.rotate_locked(&mut state)
                {
                    tracing::error!(error = %e, "could not start a new WAL segment");
                    state.failed = Some(e.to_string());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "WAL write failed; refusing further writes");
                state.failed = Some(e.to_string());
            }
        }
        state.writing = false;
        self.written.notify_all();
        state
    }

    /// Freezes the active head and starts a new WAL segment. Requires `writing` to be false or
    /// held by the caller, so no write lands between the two.
    fn rotate_locked(&self, state: &mut WriteState) -> Result<(), StoreError> {
        let current =
            state.segment.as_ref().expect("INVARIANT: not writing, so the segment is here");
        let current_seq = current.seq;
        let next = SegmentWriter::create(&self.wal_dir, current_seq + 1)?;
        let mut heads = self.heads_write();
        let mut frozen = std::mem::replace(&mut heads.active, HeadPart::new(next.seq));
        frozen.last_wal_segment = current_seq;
        heads.frozen.push(Arc::new(frozen));
        state.segment = Some(next);
        Ok(())
    }

    /// Freezes the active head now (if it holds spans), waiting for any write in progress.
    pub(crate) fn rotate(&self) -> Result<(), StoreError> {
        let mut state = lock(&self.write);
        while state.writing {
            state = self.written.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if self.heads_read().active.spans.is_empty() {
            return Ok(());
        }
        self.rotate_locked(&mut state)
    }

    fn seal_frozen(&self) -> Result<(), StoreError> {
        let _sealing = lock(&self.seal_lock);
        loop {
            let Some(part) = self.heads_read().frozen.first().cloned() else { return Ok(()) };
            // The catalog and the sketches must hold these spans before their WAL segments go.
            let started = std::time::Instant::now();
            self.flush_catalog()?;
            self.persist_sketches(&part)?;
            let meta = block::write_block(
                &self.block_dir,
                part.last_wal_segment,
                &part.spans,
                self.options.row_group_spans,
            )?;
            tracing::debug!(path = %meta.path.display(), num_spans = meta.num_spans, "sealed a block");
            self.blocks_write().push(Arc::new(meta));
            self.heads_write().frozen.retain(|p| !Arc::ptr_eq(p, &part));
            self.sealed_blocks_total.fetch_add(1, Ordering::Relaxed);
            lock(&self.seal_seconds).observe(started.elapsed().as_secs_f64());
            for seq in part.first_wal_segment..=part.last_wal_segment {
                let path = wal::segment_path(&self.wal_dir, seq);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path)(e)),
                }
            }
        }
    }

    /// Moves a frozen part's sketches into the metadata store (once, even when retried).
    pub(crate) fn persist_sketches(&self, part: &HeadPart) -> Result<(), StoreError> {
        if part.sketches_persisted.load(Ordering::Acquire) {
            return Ok(());
        }
        let _moving = lock(&self.sketch_lock);
        if !part.sketches.is_empty() {
            sketches::persist(
                &mut *self.metadata.sqlite()?,
                &part.sketches,
                part.last_wal_segment,
            )?;
        }
        part.sketches_persisted.store(true, Ordering::Release);
        Ok(())
    }

    /// Bytes of WAL segments other than the one being written.
    fn older_wal_bytes(&self) -> u64 {
        let current = lock(&self.write).segment.as_ref().map(|s| s.seq);
        wal::list_segments(&self.wal_dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|&seq| Some(seq) != current)
            .filter_map(|seq| fs::metadata(wal::segment_path(&self.wal_dir, seq)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Merges the oldest run of consecutive small blocks, if one is due; returns whether it
    /// did. The merged block is durable before the others are dropped from the list and
    /// deleted; readers holding them keep reading their open files.
    pub(crate) fn compact_once(&self) -> Result<bool, StoreError> {
        let _rewriting = lock(&self.rewrite_lock);
        let run = {
            // Retention keeps the list by time; runs are consecutive by WAL segment.
            let mut blocks = self.blocks_read().clone();
            blocks.sort_by_key(|b| b.last_wal_segment);
            pick_compaction(&blocks, self.options.compacted_block_spans)
        };
        if run.is_empty() {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let refs: Vec<&BlockMeta> = run.iter().map(|b| &**b).collect();
        let merged = block::compact(&self.block_dir, &refs, self.options.row_group_spans)?;
        tracing::info!(
            path = %merged.path.display(),
            num_spans = merged.num_spans,
            num_sources = run.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "compacted blocks"
        );
        {
            let mut blocks = self.blocks_write();
            blocks.retain(|b| !run.iter().any(|r| Arc::ptr_eq(r, b)));
            blocks.push(Arc::new(merged));
            blocks.sort_by_key(|b| b.last_wal_segment);
        }
        for source in &run {
            match fs::remove_file(&source.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&source.path)(e)),
            }
        }
        wal::sync_dir(&self.block_dir)?;
        self.compacted_blocks_total.fetch_add(run.len() as u64, Ordering::Relaxed);
        lock(&self.compaction_seconds).observe(started.elapsed().as_secs_f64());
        Ok(true)
    }

    #[cfg(test)]
    pub(crate) fn blocks_for_test(&self) -> Vec<Arc<BlockMeta>> {
        self.blocks_read().clone()
    }

    pub(crate) fn heads_read(&self) -> std::sync::RwLockReadGuard<'_, Heads> {
        self.heads.read().unwrap_or_else(|p| p.into_inner())
    }

    fn heads_write(&self) -> std::sync::RwLockWriteGuard<'_, Heads> {
        self.heads.write().unwrap_or_else(|p| p.into_inner())
    }

    fn blocks_read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<BlockMeta>>> {
        self.blocks.read().unwrap_or_else(|p| p.into_inner())
    }

    fn blocks_write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<BlockMeta>>> {
        self.blocks.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl SpanEngine for Embedded {
    #[cfg(test)]
    fn as_embedded(&self) -> Option<&Embedded> {
        Some(self)
    }

    /// Spans recovered from the WAL when the store was opened.
    fn recovered_spans(&self) -> u64 {
        self.recovered_spans
    }

    /// Appends spans durably. Returns once they are synced to the WAL (per the sync policy)
    /// and visible to queries. Blocks the calling thread: call it from a blocking context.
    fn append(&self, spans: Vec<Span>) -> Result<(), StoreError> {
        if spans.is_empty() {
            return Ok(());
        }
        if self.heads_read().frozen.len() >= self.options.max_frozen_heads {
            return Err(StoreError::Busy("sealing is behind ingest"));
        }
        let record = wal::encode_record(&spans);
        let mut state = lock(&self.write);
        if let Some(reason) = &state.failed {
            return Err(StoreError::Failed(reason.clone()));
        }
        if state.pending_bytes + record.len() > MAX_PENDING_BYTES {
            return Err(StoreError::Busy("the write-ahead log queue is full"));
        }
        state.pending_bytes += record.len();
        state.pending.push(PendingWrite { record, spans });
        state.next_ticket += 1;
        let ticket = state.next_ticket;
        loop {
            if state.durable_ticket >= ticket {
                return Ok(());
            }
            if let Some(reason) = &state.failed {
                return Err(StoreError::Failed(reason.clone()));
            }
            if state.writing {
                state = self.written.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state = self.lead_write(state);
        }
    }

    /// Background upkeep, called periodically with the current time: writes the catalog,
    /// freezes a head older than `max_head_age`, and seals frozen heads into blocks.
    fn maintain(&self, now_unix_nanos: u64) -> Result<(), StoreError> {
        self.flush_catalog()?;
        let too_old = {
            let mut heads = self.heads_write();
            let active = &mut heads.active;
            if active.spans.is_empty() {
                false
            } else {
                let first_seen = *active.first_seen_nanos.get_or_insert(now_unix_nanos);
                now_unix_nanos.saturating_sub(first_seen) >= self.options.max_head_age_nanos
            }
        };
        if too_old {
            self.rotate()?;
        }
        self.seal_frozen()
    }

    fn compact(&self) -> Result<(), StoreError> {
        while self.compact_once()? {}
        Ok(())
    }

    /// Seals every head now: for shutdown, tests and benchmarks.
    fn flush(&self) -> Result<(), StoreError> {
        self.flush_catalog()?;
        self.rotate()?;
        self.seal_frozen()
    }

    fn flush_catalog(&self) -> Result<(), StoreError> {
        self.catalog.flush(&self.metadata)
    }

    /// The sketches of one service's minutes, stored and in the head, one row per series and
    /// bucket (rolled-up hours have `resolution_minutes` 60), ordered by series then minute.
    fn sketches(&self, query: &SketchQuery) -> Result<Vec<SketchRow>, StoreError> {
        let mut merged = std::collections::BTreeMap::new();
        {
            let _moving = lock(&self.sketch_lock);
            {
                let heads = self.heads_read();
                heads.active.sketches.collect(query, &mut merged);
                for part in &heads.frozen {
                    if !part.sketches_persisted.load(Ordering::Acquire) {
                        part.sketches.collect(query, &mut merged);
                    }
                }
            }
            sketches::collect_stored(&*self.metadata.sqlite()?, query, &mut merged)?;
        }
        Ok(merged
            .into_iter()
            .map(|((series, unix_minute, resolution_minutes), stats)| SketchRow {
                series,
                unix_minute,
                resolution_minutes,
                stats,
            })
            .collect())
    }

    /// Rolls stored minutes older than `minutes_max_age` into hours and deletes sketches
    /// older than `max_age` (both measured back from `now`).
    fn roll_up_sketches(
        &self,
        now_unix_nanos: u64,
        minutes_max_age_nanos: u64,
        max_age_nanos: u64,
    ) -> Result<RollUpReport, StoreError> {
        let minute = |nanos: u64| (nanos / sketches::NANOS_PER_MINUTE) as i64;
        let _moving = lock(&self.sketch_lock);
        sketches::roll_up(
            &mut *self.metadata.sqlite()?,
            minute(now_unix_nanos.saturating_sub(minutes_max_age_nanos)),
            minute(now_unix_nanos.saturating_sub(max_age_nanos)),
        )
    }

    /// Every stored span of the trace, ordered by start time; duplicates (an exporter's retry
    /// of an export that had in fact succeeded) appear once. In a block, only the trace's
    /// spans are built; the others of its row group are stepped over.
    fn trace(&self, trace_id: &TraceId) -> Result<Vec<Span>, StoreError> {
        let mut spans = Vec::new();
        {
            let heads = self.heads_read();
            heads.active.trace(trace_id, &mut spans);
            for part in &heads.frozen {
                part.trace(trace_id, &mut spans);
            }
        }
        let blocks = self.blocks_read().clone();
        for block in blocks.iter().filter(|b| b.may_contain(trace_id)) {
            for idx in block.row_groups_for(trace_id) {
                let group = block.load_row_group(idx, Parts::All)?;
                let corrupt = corrupt_group(block, idx);
                let mut cursor = group.cursor().map_err(&corrupt)?;
                while let Some(raw) = cursor.next_span().map_err(&corrupt)? {
                    // Row groups are sorted by trace id.
                    match raw.trace_id.cmp(trace_id) {
                        std::cmp::Ordering::Less => {}
                        std::cmp::Ordering::Equal => {
                            spans.push(cursor.materialize(&raw).map_err(&corrupt)?)
                        }
                        std::cmp::Ordering::Greater => break,
                    }
                }
            }
        }
        spans.sort_by_key(|s| (s.start_time_unix_nanos, *s.span_id.as_bytes()));
        let mut seen = std::collections::HashSet::new();
        spans.retain(|s| seen.insert(*s.span_id.as_bytes()));
        Ok(spans)
    }

    /// Traces with a span matching `query`, newest matching span first.
    ///
    /// First the newest `limit` trace ids: the head, then blocks newest first, skipping what
    /// the footers rule out and decompressing only the parts the filters read; no span is
    /// built, and once `limit` traces are found, older blocks and row groups are not read.
    /// Then each of those traces is read by id and its matching spans kept.
    fn search(&self, query: &SpanQuery) -> Result<Vec<TraceMatch>, StoreError> {
        let mut top = TopTraces::new(query.limit);
        {
            let heads = self.heads_read();
            for part in std::iter::once(&heads.active).chain(heads.frozen.iter().map(|p| &**p)) {
                for span in part.spans.iter().filter(|s| query.matches(*s)) {
                    top.offer(span.trace_id, span.start_time_unix_nanos);
                }
            }
        }
        let mut blocks: Vec<Arc<BlockMeta>> = self
            .blocks_read()
            .iter()
            .filter(|b| {
                query.overlaps(b.min_start_unix_nanos, b.max_end_unix_nanos)
                    && query.may_hold_service(&b.services)
            })
            .cloned()
            .collect();
        blocks.sort_by_key(|b| std::cmp::Reverse(b.max_end_unix_nanos));
        for block in blocks {
            if top.is_beyond(block.max_end_unix_nanos) {
                break;
            }
            search_block(&block, query, &mut top)?;
        }
        let mut matches = Vec::new();
        for trace_id in top.finish() {
            let mut spans = self.trace(&trace_id)?;
            let summary = TraceSummary::of(&spans);
            spans.retain(|s| query.matches(s));
            spans.sort_by_key(|s| {
                std::cmp::Reverse((s.start_time_unix_nanos, *s.span_id.as_bytes()))
            });
            if !spans.is_empty() {
                matches.push(TraceMatch { trace_id, spans, summary });
            }
        }
        Ok(matches)
    }

    /// Deletes blocks whose newest span ended before `now - max_age`, then the oldest blocks
    /// until the blocks fit in `disk_budget_bytes`. The head is never deleted.
    fn enforce_retention(
        &self,
        now_unix_nanos: u64,
        max_age_nanos: u64,
        disk_budget_bytes: Option<u64>,
    ) -> Result<RetentionReport, StoreError> {
        let _rewriting = lock(&self.rewrite_lock);
        let cutoff = now_unix_nanos.saturating_sub(max_age_nanos);
        let doomed = {
            let mut blocks = self.blocks_write();
            blocks.sort_by_key(|b| b.max_end_unix_nanos);
            let mut doomed: Vec<Arc<BlockMeta>> = Vec::new();
            blocks.retain(|b| {
                let expired = b.max_end_unix_nanos < cutoff;
                if expired {
                    doomed.push(Arc::clone(b));
                }
                !expired
            });
            if let Some(budget) = disk_budget_bytes {
                let mut total: u64 = blocks.iter().map(|b| b.file_bytes).sum();
                while total > budget && !blocks.is_empty() {
                    let oldest = blocks.remove(0);
                    total -= oldest.file_bytes;
                    doomed.push(oldest);
                }
            }
            doomed
        };
        let mut report = RetentionReport::default();
        for block in doomed {
            fs::remove_file(&block.path).map_err(io_error(&block.path))?;
            report.deleted_blocks += 1;
            report.deleted_bytes += block.file_bytes;
            tracing::info!(path = %block.path.display(), "retention deleted a block");
        }
        self.deleted_blocks_total.fetch_add(report.deleted_blocks, Ordering::Relaxed);
        Ok(report)
    }

    /// Whether writes are accepted (false after a WAL write failure).
    fn is_healthy(&self) -> bool {
        lock(&self.write).failed.is_none()
    }

    fn stats(&self) -> StoreStats {
        let (wal_bytes, pending_write_bytes) = {
            let state = lock(&self.write);
            (state.segment.as_ref().map_or(0, |s| s.bytes), state.pending_bytes as u64)
        };
        let (num_head_spans, num_frozen_heads, frozen_segments) = {
            let heads = self.heads_read();
            let frozen_spans: usize = heads.frozen.iter().map(|p| p.spans.len()).sum();
            let segments: u64 =
                heads.frozen.iter().map(|p| p.last_wal_segment - p.first_wal_segment + 1).sum();
            ((heads.active.spans.len() + frozen_spans) as u64, heads.frozen.len() as u64, segments)
        };
        let blocks = self.blocks_read();
        StoreStats {
            wal_bytes: wal_bytes + self.older_wal_bytes(),
            num_wal_segments: 1 + frozen_segments,
            num_blocks: blocks.len() as u64,
            block_bytes: blocks.iter().map(|b| b.file_bytes).sum(),
            num_block_spans: blocks.iter().map(|b| b.num_spans).sum(),
            num_head_spans,
            num_frozen_heads,
            pending_write_bytes,
            num_sealed_blocks_total: self.sealed_blocks_total.load(Ordering::Relaxed),
            num_deleted_blocks_total: self.deleted_blocks_total.load(Ordering::Relaxed),
            num_compacted_blocks_total: self.compacted_blocks_total.load(Ordering::Relaxed),
            wal_write_seconds: lock(&self.wal_write_seconds).clone(),
            seal_seconds: lock(&self.seal_seconds).clone(),
            compaction_seconds: lock(&self.compaction_seconds).clone(),
            ..StoreStats::default()
        }
    }
}

/// Blocks fewer than this in a run are not worth a rewrite yet.
const MIN_COMPACTION_INPUTS: usize = 4;
/// Most blocks merged at once (each holds one decoded row group while merging).
const MAX_COMPACTION_INPUTS: usize = 16;

/// The oldest run of consecutive (by WAL segment) blocks smaller than half of `target_spans`
/// that holds at least [`MIN_COMPACTION_INPUTS`] blocks, cut at `target_spans` spans; empty
/// when none is due.
fn pick_compaction(blocks: &[Arc<BlockMeta>], target_spans: usize) -> Vec<Arc<BlockMeta>> {
    let small = |b: &BlockMeta| (b.num_spans as usize) < target_spans / 2;
    let mut run: Vec<Arc<BlockMeta>> = Vec::new();
    let mut run_spans = 0usize;
    for block in blocks {
        if !small(block) {
            if run.len() >= MIN_COMPACTION_INPUTS {
                return run;
            }
            run.clear();
            run_spans = 0;
            continue;
        }
        if run_spans + block.num_spans as usize > target_spans || run.len() == MAX_COMPACTION_INPUTS
        {
            if run.len() >= MIN_COMPACTION_INPUTS {
                return run;
            }
            // Too few to be worth it: slide the window on.
            while !run.is_empty()
                && (run_spans + block.num_spans as usize > target_spans
                    || run.len() == MAX_COMPACTION_INPUTS)
            {
                run_spans -= run.remove(0).num_spans as usize;
            }
        }
        run_spans += block.num_spans as usize;
        run.push(Arc::clone(block));
    }
    if run.len() >= MIN_COMPACTION_INPUTS { run } else { Vec::new() }
}
