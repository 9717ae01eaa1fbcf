//! The span batch encoding shared by WAL records and block row groups.
//!
//! A batch is laid out column by column (ids, then names, then timestamps...) so that zstd,
//! which compresses the whole batch afterwards, sees similar bytes next to each other.
//! Strings that repeat across spans (names, attribute keys, trace states, status messages)
//! go through one dictionary; resources and scopes, shared by many spans, are written once.
//! Trace ids are run-length encoded because blocks are sorted by trace id.
//!
//! Decoding never trusts a length or a count: every read is bounds-checked and a corrupt batch
//! is an error, never a panic or a huge allocation.

use foldhash::HashMap;
use std::sync::Arc;

use model::{
    Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
    Value,
};

/// Format version written at the start of every batch.
const BATCH_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
#[error("corrupt span batch: {0}")]
pub(crate) struct CorruptBatch(pub(crate) &'static str);

// ---------------------------------------------------------------------------------------------
// Writing

#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub(crate) fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
}

/// Interns strings into dictionary indexes.
#[derive(Default)]
struct Dictionary<'a> {
    index: HashMap<&'a str, u32>,
    entries: Vec<&'a str>,
}

impl<'a> Dictionary<'a> {
    fn id(&mut self, text: &'a str) -> u64 {
        let next = self.entries.len() as u32;
        let id = *self.index.entry(text).or_insert(next);
        if id == next {
            self.entries.push(text);
        }
        u64::from(id)
    }
}

/// Columns of a batch under construction.
#[derive(Default)]
struct Columns<'a> {
    strings: Dictionary<'a>,
    trace_runs: Writer,
    span_ids: Writer,
    parent_ids: Writer,
    names: Writer,
    kinds: Writer,
    starts: Writer,
    durations: Writer,
    status: Writer,
    misc: Writer,
    table_attributes: Writer,
    attributes: Writer,
    events: Writer,
    links: Writer,
}

impl<'a> Columns<'a> {
    fn key_values(&mut self, out: Which, kvs: &'a [KeyValue]) {
        let mut w = std::mem::take(self.column(out));
        w.varint(kvs.len() as u64);
        for kv in kvs {
            w.varint(self.strings.id(&kv.key));
            self.value(&mut w, &kv.value);
        }
        *self.column(out) = w;
    }

    fn value(&mut self, w: &mut Writer, value: &'a Value) {
        match value {
            Value::Empty => w.u8(0),
            Value::String(s) => {
                w.u8(1);
                w.bytes(s.as_bytes());
            }
            Value::Bool(b) => {
                w.u8(2);
                w.u8(u8::from(*b));
            }
            Value::Int(i) => {
                w.u8(3);
                w.zigzag(*i);
            }
            Value::Double(d) => {
                w.u8(4);
                w.raw(&d.to_le_bytes());
            }
            Value::Bytes(b) => {
                w.u8(5);
                w.bytes(b);
            }
            Value::Array(values) => {
                w.u8(6);
                w.varint(values.len() as u64);
                for v in values {
                    self.value(w, v);
                }
            }
            Value::KvList(kvs) => {
                w.u8(7);
                w.varint(kvs.len() as u64);
                for kv in kvs {
                    w.varint(self.strings.id(&kv.key));
                    self.value(w, &kv.value);
                }
            }
        }
    }

    fn column(&mut self, which: Which) -> &mut Writer {
        match which {
            Which::Attributes => &mut self.attributes,
            Which::Events => &mut self.events,
            Which::Links => &mut self.links,
            Which::Tables => &mut self.table_attributes,
        }
    }
}

/// Resources (or scopes) written once per batch: equal ones share an entry, whether or not
/// they share an allocation (every export brings its own copies of the same resources).
struct Table<'a, T> {
    entries: Vec<&'a Arc<T>>,
    by_pointer: HashMap<*const T, u64>,
    by_content: HashMap<u64, Vec<u64>>,
}

impl<T> Default for Table<'_, T> {
    fn default() -> Self {
        Table {
            entries: Vec::new(),
            by_pointer: HashMap::default(),
            by_content: HashMap::default(),
        }
    }
}

impl<'a, T: PartialEq + std::fmt::Debug> Table<'a, T> {
    fn id(&mut self, item: &'a Arc<T>) -> u64 {
        if let Some(&id) = self.by_pointer.get(&Arc::as_ptr(item)) {
            return id;
        }
        // A new allocation: look its content up (once per allocation, not per span).
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            format!("{item:?}").hash(&mut hasher);
            hasher.finish()
        };
        let same = self.by_content.entry(digest).or_default();
        let id = match same.iter().find(|&&id| **self.entries[id as usize] == **item) {
            Some(&id) => id,
            None => {
                self.entries.push(item);
                let id = self.entries.len() as u64 - 1;
                same.push(id);
                id
            }
        };
        self.by_pointer.insert(Arc::as_ptr(item), id);
        id
    }
}

#[derive(Clone, Copy)]
enum Which {
    Attributes,
    Events,
    Links,
    Tables,
}

/// Encodes spans, in the given order, into one batch.
pub(crate) fn encode(spans: &[Span]) -> Vec<u8> {
    let spans: Vec<&Span> = spans.iter().collect();
    let (mut core, heavy) = encode_parts(&spans, false);
    core.extend_from_slice(&heavy.attributes);
    core.extend_from_slice(&heavy.events_links);
    core
}

/// A batch cut in three for a block's row group, each part compressed on its own so a read
/// decompresses only what it needs: the core (strings, resources, ids, names, times,
/// status), the span attributes, and the events and links.
pub(crate) struct SplitBatch {
    pub(crate) core: Vec<u8>,
    pub(crate) attributes: Vec<u8>,
    pub(crate) events_links: Vec<u8>,
}

/// Encodes spans, in the given order, as a [`SplitBatch`].
pub(crate) fn encode_split(spans: &[&Span]) -> SplitBatch {
    let (core, heavy) = encode_parts(spans, true);
    SplitBatch { core, attributes: heavy.attributes, events_links: heavy.events_links }
}

/// The three heavy columns, each length-prefixed: in a whole batch they follow the core's
/// columns; in a split one the core holds three empty columns in their place.
struct Heavy {
    attributes: Vec<u8>,
    events_links: Vec<u8>,
}

fn encode_parts(spans: &[&Span], split: bool) -> (Vec<u8>, Heavy) {
    let mut cols = Columns::default();
    let mut resources = Table::<Resource>::default();
    let mut scopes = Table::<Scope>::default();
    let mut run: Option<(TraceId, u64)> = None;
    let mut num_runs = 0u64;
    let mut previous_start = 0u64;

    for &span in spans {
        match &mut run {
            Some((id, len)) if *id == span.trace_id => *len += 1,
            _ => {
                if let Some((id, len)) = run.take() {
                    cols.trace_runs.raw(id.as_bytes());
                    cols.trace_runs.varint(len);
                    num_runs += 1;
                }
                run = Some((span.trace_id, 1));
            }
        }
        cols.span_ids.raw(span.span_id.as_bytes());
        cols.parent_ids.raw(span.parent_span_id.as_ref().map_or(&[0; 8], |p| p.as_bytes()));
        let name = cols.strings.id(&span.name);
        cols.names.varint(name);
        cols.kinds.u8(span.kind as u8);
        cols.starts.zigzag(span.start_time_unix_nanos.wrapping_sub(previous_start) as i64);
        previous_start = span.start_time_unix_nanos;
        cols.durations.varint(span.duration_nanos());
        cols.status.u8(span.status.code as u8);
        let message = cols.strings.id(&span.status.message);
        cols.status.varint(message);

        let resource_id = resources.id(&span.resource);
        let scope_id = scopes.id(&span.scope);
        let trace_state = cols.strings.id(&span.trace_state);
        cols.misc.varint(resource_id);
        cols.misc.varint(scope_id);
        cols.misc.varint(trace_state);
        cols.misc.varint(u64::from(span.flags));
        cols.misc.varint(u64::from(span.dropped_attributes_count));
        cols.misc.varint(u64::from(span.dropped_events_count));
        cols.misc.varint(u64::from(span.dropped_links_count));

        cols.key_values(Which::Attributes, &span.attributes);

        cols.events.varint(span.events.len() as u64);
        for event in &span.events {
            cols.events
                .zigzag(event.time_unix_nanos.wrapping_sub(span.start_time_unix_nanos) as i64);
            let name = cols.strings.id(&event.name);
            cols.events.varint(name);
            cols.events.varint(u64::from(event.dropped_attributes_count));
            cols.key_values(Which::Events, &event.attributes);
        }

        cols.links.varint(span.links.len() as u64);
        for link in &span.links {
            cols.links.raw(link.trace_id.as_bytes());
            cols.links.raw(link.span_id.as_bytes());
            let state = cols.strings.id(&link.trace_state);
            cols.links.varint(state);
            cols.links.varint(u64::from(link.flags));
            cols.links.varint(u64::from(link.dropped_attributes_count));
            cols.key_values(Which::Links, &link.attributes);
        }
    }
    if let Some((id, len)) = run {
        cols.trace_runs.raw(id.as_bytes());
        cols.trace_runs.varint(len);
        num_runs += 1;
    }

    // Resources and scopes are written once; spans refer to them by index.
    let mut tables = Writer::default();
    tables.varint(resources.entries.len() as u64);
    for resource in &resources.entries {
        tables.varint(u64::from(resource.dropped_attributes_count));
        tables.bytes(resource.schema_url.as_bytes());
        cols.key_values(Which::Tables, &resource.attributes);
    }
    tables.varint(scopes.entries.len() as u64);
    for scope in &scopes.entries {
        tables.bytes(scope.name.as_bytes());
        tables.bytes(scope.version.as_bytes());
        tables.bytes(scope.schema_url.as_bytes());
        tables.varint(u64::from(scope.dropped_attributes_count));
        cols.key_values(Which::Tables, &scope.attributes);
    }

    let mut out = Writer::default();
    out.u8(BATCH_VERSION);
    out.varint(spans.len() as u64);
    out.varint(cols.strings.entries.len() as u64);
    for entry in &cols.strings.entries {
        out.bytes(entry.as_bytes());
    }
    out.bytes(&tables.buf);
    out.varint(num_runs);
    for column in [
        &cols.table_attributes,
        &cols.trace_runs,
        &cols.span_ids,
        &cols.parent_ids,
        &cols.names,
        &cols.kinds,
        &cols.starts,
        &cols.durations,
        &cols.status,
        &cols.misc,
    ] {
        out.bytes(&column.buf);
    }
    let mut attributes = Writer::default();
    attributes.bytes(&cols.attributes.buf);
    let mut events_links = Writer::default();
    events_links.bytes(&cols.events.buf);
    events_links.bytes(&cols.links.buf);
    if split {
        for _ in 0..3 {
            out.varint(0);
        }
    }
    (out.buf, Heavy { attributes: attributes.buf, events_links: events_links.buf })
}

// ---------------------------------------------------------------------------------------------
// Reading

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptBatch> {
        if n > self.bytes.len() {
            return Err(CorruptBatch("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CorruptBatch> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn varint(&mut self) -> Result<u64, CorruptBatch> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CorruptBatch("varint too long"))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CorruptBatch> {
        u32::try_from(self.varint()?).map_err(|_| CorruptBatch("count out of range"))
    }

    /// A count of items each taking at least one byte; bounded by what is left to read.
    pub(crate) fn count(&mut self) -> Result<usize, CorruptBatch> {
        let n = self.varint()?;
        if n > self.bytes.len() as u64 {
            return Err(CorruptBatch("count larger than the data"));
        }
        Ok(n as usize)
    }

    pub(crate) fn zigzag(&mut self) -> Result<i64, CorruptBatch> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CorruptBatch> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| CorruptBatch("length out of range"))?;
        self.take(n)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, CorruptBatch> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CorruptBatch("invalid utf-8"))
    }

    pub(crate) fn string(&mut self) -> Result<String, CorruptBatch> {
        self.str().map(str::to_owned)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CorruptBatch> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads through `work` and returns the bytes it consumed, so they can be read again.
    fn span_of(
        &mut self,
        work: impl FnOnce(&mut Reader<'a>) -> Result<(), CorruptBatch>,
    ) -> Result<&'a [u8], CorruptBatch> {
        let before = self.bytes;
        work(self)?;
        Ok(&before[..before.len() - self.bytes.len()])
    }
}

/// The batch's string dictionary, borrowed from the decompressed bytes.
struct Strings<'a>(Vec<&'a str>);

impl<'a> Strings<'a> {
    fn get(&self, r: &mut Reader<'_>) -> Result<&'a str, CorruptBatch> {
        let id = r.varint()?;
        self.0.get(id as usize).copied().ok_or(CorruptBatch("string id out of range"))
    }

    fn key_values(&self, r: &mut Reader<'_>) -> Result<Vec<KeyValue>, CorruptBatch> {
        let n = r.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.get(r)?.to_owned();
            out.push(KeyValue { key, value: self.value(r, 0)? });
        }
        Ok(out)
    }

    fn value(&self, r: &mut Reader<'_>, depth: usize) -> Result<Value, CorruptBatch> {
        if depth > 64 {
            return Err(CorruptBatch("value nested too deeply"));
        }
        Ok(match r.u8()? {
            0 => Value::Empty,
            1 => Value::String(r.string()?),
            2 => Value::Bool(r.u8()? != 0),
            3 => Value::Int(r.zigzag()?),
            4 => Value::Double(f64::from_le_bytes(r.array()?)),
            5 => Value::Bytes(r.bytes()?.to_vec()),
            6 => {
                let n = r.count()?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(self.value(r, depth + 1)?);
                }
                Value::Array(values)
            }
            7 => {
                let n = r.count()?;
                let mut kvs = Vec::with_capacity(n);
                for _ in 0..n {
                    let key = self.get(r)?.to_owned();
                    kvs.push(KeyValue { key, value: self.value(r, depth + 1)? });
                }
                Value::KvList(kvs)
            }
            _ => return Err(CorruptBatch("unknown value tag")),
        })
    }

    /// Steps over one value without building it.
    fn skip_value(&self, r: &mut Reader<'_>, depth: usize) -> Result<(), CorruptBatch> {
        if depth > 64 {
            return Err(CorruptBatch("value nested too deeply"));
        }
        match r.u8()? {
            0 => {}
            1 | 5 => {
                r.bytes()?;
            }
            2 => {
                r.u8()?;
            }
            3 => {
                r.varint()?;
            }
            4 => {
                r.take(8)?;
            }
            6 => {
                for _ in 0..r.count()? {
                    self.skip_value(r, depth + 1)?;
                }
            }
            7 => {
                for _ in 0..r.count()? {
                    self.get(r)?;
                    self.skip_value(r, depth + 1)?;
                }
            }
            _ => return Err(CorruptBatch("unknown value tag")),
        }
        Ok(())
    }

    fn skip_key_values(&self, r: &mut Reader<'_>) -> Result<(), CorruptBatch> {
        for _ in 0..r.count()? {
            self.get(r)?;
            self.skip_value(r, 0)?;
        }
        Ok(())
    }
}

/// One span of a batch as stored: its scalar fields decoded, its attributes, events and
/// links left as the bytes that encode them (empty when their part was not read).
pub(crate) struct RawSpan<'a> {
    pub(crate) trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    pub(crate) name: &'a str,
    kind: SpanKind,
    pub(crate) start_time_unix_nanos: u64,
    pub(crate) end_time_unix_nanos: u64,
    pub(crate) status_code: StatusCode,
    status_message: &'a str,
    /// Index into [`Cursor::resources`].
    pub(crate) resource: usize,
    scope: usize,
    trace_state: &'a str,
    flags: u32,
    dropped_attributes_count: u32,
    dropped_events_count: u32,
    dropped_links_count: u32,
    attributes: &'a [u8],
    events: &'a [u8],
    links: &'a [u8],
}

/// Reads a batch span by span without building spans: a reader decides, from each
/// [`RawSpan`], which ones to [`materialize`](Cursor::materialize).
pub(crate) struct Cursor<'a> {
    strings: Strings<'a>,
    resources: Vec<Arc<Resource>>,
    scopes: Vec<Arc<Scope>>,
    num_spans: usize,
    read: usize,
    runs_left: u64,
    run: Option<(TraceId, u64)>,
    previous_start: u64,
    trace_runs: Reader<'a>,
    span_ids: Reader<'a>,
    parent_ids: Reader<'a>,
    names: Reader<'a>,
    kinds: Reader<'a>,
    starts: Reader<'a>,
    durations: Reader<'a>,
    status: Reader<'a>,
    misc: Reader<'a>,
    /// `None`: the part holding the column was not read.
    attributes: Option<Reader<'a>>,
    events: Option<Reader<'a>>,
    links: Option<Reader<'a>>,
}

impl<'a> Cursor<'a> {
    /// A cursor over a whole batch written by [`encode`].
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Cursor<'a>, CorruptBatch> {
        let mut r = Reader::new(bytes);
        let mut cursor = Cursor::core(&mut r)?;
        cursor.attributes = Some(Reader::new(r.bytes()?));
        cursor.events = Some(Reader::new(r.bytes()?));
        cursor.links = Some(Reader::new(r.bytes()?));
        Ok(cursor)
    }

    /// A cursor over a [`SplitBatch`]'s core and the heavy parts that were read (`None`:
    /// not read; spans then carry no attributes, or no events and links).
    pub(crate) fn split(
        core: &'a [u8],
        attributes: Option<&'a [u8]>,
        events_links: Option<&'a [u8]>,
    ) -> Result<Cursor<'a>, CorruptBatch> {
        let mut r = Reader::new(core);
        let mut cursor = Cursor::core(&mut r)?;
        for _ in 0..3 {
            if !r.bytes()?.is_empty() {
                return Err(CorruptBatch("a split core holds heavy columns"));
            }
        }
        if let Some(bytes) = attributes {
            cursor.attributes = Some(Reader::new(Reader::new(bytes).bytes()?));
        }
        if let Some(bytes) = events_links {
            let mut r = Reader::new(bytes);
            cursor.events = Some(Reader::new(r.bytes()?));
            cursor.links = Some(Reader::new(r.bytes()?));
        }
        Ok(cursor)
    }

    fn core(r: &mut Reader<'a>) -> Result<Cursor<'a>, CorruptBatch> {
        if r.u8()? != BATCH_VERSION {
            return Err(CorruptBatch("unknown batch version"));
        }
        let num_spans = r.count()?;
        let num_strings = r.count()?;
        let mut strings = Vec::with_capacity(num_strings);
        for _ in 0..num_strings {
            strings.push(r.str()?);
        }
        let strings = Strings(strings);
        let mut tables = Reader::new(r.bytes()?);
        let runs_left = r.varint()?;
        let mut table_attributes = Reader::new(r.bytes()?);
        let mut columns = [(); 9].map(|()| Reader::new(&[]));
        for column in &mut columns {
            *column = Reader::new(r.bytes()?);
        }
        let [trace_runs, span_ids, parent_ids, names, kinds, starts, durations, status, misc] =
            columns;

        let num_resources = tables.count()?;
        let mut resources = Vec::with_capacity(num_resources);
        for _ in 0..num_resources {
            let dropped_attributes_count = tables.u32()?;
            let schema_url = tables.string()?;
            let attributes = strings.key_values(&mut table_attributes)?;
            resources.push(Arc::new(Resource { attributes, dropped_attributes_count, schema_url }));
        }
        let num_scopes = tables.count()?;
        let mut scopes = Vec::with_capacity(num_scopes);
        for _ in 0..num_scopes {
            let name = tables.string()?;
            let version = tables.string()?;
            let schema_url = tables.string()?;
            let dropped_attributes_count = tables.u32()?;
            let attributes = strings.key_values(&mut table_attributes)?;
            scopes.push(Arc::new(Scope {
                name,
                version,
                attributes,
                dropped_attributes_count,
                schema_url,
            }));
        }
        // Each span takes 8 bytes of span id, which bounds every allocation by the data.
        if num_spans.saturating_mul(SpanId::LEN) > span_ids.bytes.len() {
            return Err(CorruptBatch("span count larger than the data"));
        }
        Ok(Cursor {
            strings,
            resources,
            scopes,
            num_spans,
            read: 0,
            runs_left,
            run: None,
            previous_start: 0,
            trace_runs,
            span_ids,
            parent_ids,
            names,
            kinds,
            starts,
            durations,
            status,
            misc,
            attributes: None,
            events: None,
            links: None,
        })
    }

    pub(crate) fn num_spans(&self) -> usize {
        self.num_spans
    }

    /// The resources spans refer to by index.
    pub(crate) fn resources(&self) -> &[Arc<Resource>] {
        &self.resources
    }

    /// The next span, or `None` after the last.
    pub(crate) fn next_span(&mut self) -> Result<Option<RawSpan<'a>>, CorruptBatch> {
        if self.read == self.num_spans {
            return Ok(None);
        }
        self.read += 1;
        let trace_id = match &mut self.run {
            Some((id, left)) if *left > 0 => {
                *left -= 1;
                *id
            }
            _ => {
                if self.runs_left == 0 {
                    return Err(CorruptBatch("more spans than trace runs"));
                }
                self.runs_left -= 1;
                let id = TraceId::from_bytes(self.trace_runs.array()?)
                    .map_err(|_| CorruptBatch("invalid trace id"))?;
                let len = self.trace_runs.varint()?;
                if len == 0 {
                    return Err(CorruptBatch("empty trace run"));
                }
                self.run = Some((id, len - 1));
                id
            }
        };
        let span_id = SpanId::from_bytes(self.span_ids.array()?)
            .map_err(|_| CorruptBatch("invalid span id"))?;
        let parent_span_id = SpanId::from_bytes(self.parent_ids.array()?).ok();
        let name = self.strings.get(&mut self.names)?;
        let kind = SpanKind::from_otlp(i32::from(self.kinds.u8()?));
        let start_time_unix_nanos = self.previous_start.wrapping_add(self.starts.zigzag()? as u64);
        self.previous_start = start_time_unix_nanos;
        let end_time_unix_nanos = start_time_unix_nanos
            .checked_add(self.durations.varint()?)
            .ok_or(CorruptBatch("end time overflows"))?;
        let status_code = StatusCode::from_otlp(i32::from(self.status.u8()?));
        let status_message = self.strings.get(&mut self.status)?;
        let resource = self.misc.varint()? as usize;
        if resource >= self.resources.len() {
            return Err(CorruptBatch("resource id"));
        }
        let scope = self.misc.varint()? as usize;
        if scope >= self.scopes.len() {
            return Err(CorruptBatch("scope id"));
        }
        let trace_state = self.strings.get(&mut self.misc)?;
        let flags = self.misc.u32()?;
        let dropped_attributes_count = self.misc.u32()?;
        let dropped_events_count = self.misc.u32()?;
        let dropped_links_count = self.misc.u32()?;

        let strings = &self.strings;
        let attributes = match &mut self.attributes {
            None => &[][..],
            Some(column) => column.span_of(|r| strings.skip_key_values(r))?,
        };
        let events = match &mut self.events {
            None => &[][..],
            Some(column) => column.span_of(|r| {
                for _ in 0..r.count()? {
                    r.zigzag()?;
                    strings.get(r)?;
                    r.u32()?;
                    strings.skip_key_values(r)?;
                }
                Ok(())
            })?,
        };
        let links = match &mut self.links {
            None => &[][..],
            Some(column) => column.span_of(|r| {
                for _ in 0..r.count()? {
                    r.take(TraceId::LEN + SpanId::LEN)?;
                    strings.get(r)?;
                    r.u32()?;
                    r.u32()?;
                    strings.skip_key_values(r)?;
                }
                Ok(())
            })?,
        };
        Ok(Some(RawSpan {
            trace_id,
            span_id,
            parent_span_id,
            name,
            kind,
            start_time_unix_nanos,
            end_time_unix_nanos,
            status_code,
            status_message,
            resource,
            scope,
            trace_state,
            flags,
            dropped_attributes_count,
            dropped_events_count,
            dropped_links_count,
            attributes,
            events,
            links,
        }))
    }

    /// The resource a span belongs to.
    pub(crate) fn resource_of(&self, span: &RawSpan<'_>) -> &Arc<Resource> {
        &self.resources[span.resource]
    }

    /// The span's own attribute `key` (not its resource's), built only when present.
    pub(crate) fn span_attribute(
        &self,
        span: &RawSpan<'_>,
        key: &str,
    ) -> Result<Option<Value>, CorruptBatch> {
        let mut r = Reader::new(span.attributes);
        if r.is_empty() {
            return Ok(None);
        }
        for _ in 0..r.count()? {
            if self.strings.get(&mut r)? == key {
                return self.strings.value(&mut r, 0).map(Some);
            }
            self.strings.skip_value(&mut r, 0)?;
        }
        Ok(None)
    }

    /// Builds the whole span (with what of its heavy parts was read).
    pub(crate) fn materialize(&self, raw: &RawSpan<'_>) -> Result<Span, CorruptBatch> {
        let attributes = match raw.attributes {
            [] => Vec::new(),
            bytes => self.strings.key_values(&mut Reader::new(bytes))?,
        };
        let mut events = Vec::new();
        if !raw.events.is_empty() {
            let mut r = Reader::new(raw.events);
            for _ in 0..r.count()? {
                let time_unix_nanos = raw.start_time_unix_nanos.wrapping_add(r.zigzag()? as u64);
                let name = self.strings.get(&mut r)?.to_owned();
                let dropped_attributes_count = r.u32()?;
                let attributes = self.strings.key_values(&mut r)?;
                events.push(Event { time_unix_nanos, name, attributes, dropped_attributes_count });
            }
        }
        let mut links = Vec::new();
        if !raw.links.is_empty() {
            let mut r = Reader::new(raw.links);
            for _ in 0..r.count()? {
                let trace_id = TraceId::from_bytes(r.array()?)
                    .map_err(|_| CorruptBatch("invalid link trace id"))?;
                let span_id = SpanId::from_bytes(r.array()?)
                    .map_err(|_| CorruptBatch("invalid link span id"))?;
                let trace_state = self.strings.get(&mut r)?.to_owned();
                let flags = r.u32()?;
                let dropped_attributes_count = r.u32()?;
                let attributes = self.strings.key_values(&mut r)?;
                links.push(Link {
                    trace_id,
                    span_id,
                    trace_state,
                    attributes,
                    dropped_attributes_count,
                    flags,
                });
            }
        }
        Ok(Span {
            trace_id: raw.trace_id,
            span_id: raw.span_id,
            parent_span_id: raw.parent_span_id,
            trace_state: raw.trace_state.to_owned(),
            flags: raw.flags,
            name: raw.name.to_owned(),
            kind: raw.kind,
            start_time_unix_nanos: raw.start_time_unix_nanos,
            end_time_unix_nanos: raw.end_time_unix_nanos,
            attributes,
            dropped_attributes_count: raw.dropped_attributes_count,
            events,
            dropped_events_count: raw.dropped_events_count,
            links,
            dropped_links_count: raw.dropped_links_count,
            status: Status { code: raw.status_code, message: raw.status_message.to_owned() },
            resource: Arc::clone(&self.resources[raw.resource]),
            scope: Arc::clone(&self.scopes[raw.scope]),
        })
    }
}

/// Decodes a batch written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Span>, CorruptBatch> {
    let mut cursor = Cursor::new(bytes)?;
    let mut out = Vec::with_capacity(cursor.num_spans());
    while let Some(raw) = cursor.next_span()? {
        out.push(cursor.materialize(&raw)?);
    }
    Ok(out)
}

/// A span read from a batch, as search filters see it.
pub(crate) struct StoredSpan<'c, 'a> {
    pub(crate) cursor: &'c Cursor<'a>,
    pub(crate) raw: &'c RawSpan<'a>,
}

impl crate::query::SpanFields for StoredSpan<'_, '_> {
    fn start_unix_nanos(&self) -> u64 {
        self.raw.start_time_unix_nanos
    }

    fn duration_nanos(&self) -> u64 {
        self.raw.end_time_unix_nanos - self.raw.start_time_unix_nanos
    }

    fn status_code(&self) -> StatusCode {
        self.raw.status_code
    }

    fn name(&self) -> &str {
        self.raw.name
    }

    fn span_attribute(&self, key: &str) -> Option<std::borrow::Cow<'_, Value>> {
        // The part was checked while stepping over it; a value that still fails to read
        // (invalid UTF-8 in a string) matches nothing.
        self.cursor.span_attribute(self.raw, key).ok().flatten().map(std::borrow::Cow::Owned)
    }

    fn resource(&self) -> &Resource {
        self.cursor.resource_of(self.raw)
    }
}
