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

use std::collections::HashMap;
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

#[derive(Clone, Copy)]
enum Which {
    Attributes,
    Events,
    Links,
    Tables,
}

/// Encodes spans, in the given order, into one batch.
pub(crate) fn encode(spans: &[Span]) -> Vec<u8> {
    let mut cols = Columns::default();
    let mut resources: Vec<&Arc<Resource>> = Vec::new();
    let mut scopes: Vec<&Arc<Scope>> = Vec::new();
    let mut resource_ids: HashMap<*const Resource, u64> = HashMap::new();
    let mut scope_ids: HashMap<*const Scope, u64> = HashMap::new();
    let mut run: Option<(TraceId, u64)> = None;
    let mut num_runs = 0u64;
    let mut previous_start = 0u64;

    for span in spans {
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

        let resource_id = *resource_ids.entry(Arc::as_ptr(&span.resource)).or_insert_with(|| {
            resources.push(&span.resource);
            resources.len() as u64 - 1
        });
        let scope_id = *scope_ids.entry(Arc::as_ptr(&span.scope)).or_insert_with(|| {
            scopes.push(&span.scope);
            scopes.len() as u64 - 1
        });
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
    tables.varint(resources.len() as u64);
    for resource in &resources {
        tables.varint(u64::from(resource.dropped_attributes_count));
        tables.bytes(resource.schema_url.as_bytes());
        cols.key_values(Which::Tables, &resource.attributes);
    }
    tables.varint(scopes.len() as u64);
    for scope in &scopes {
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
        &cols.attributes,
        &cols.events,
        &cols.links,
    ] {
        out.bytes(&column.buf);
    }
    out.buf
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

    pub(crate) fn string(&mut self) -> Result<String, CorruptBatch> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| CorruptBatch("invalid utf-8"))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CorruptBatch> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

struct Decoder {
    strings: Vec<String>,
}

impl Decoder {
    fn string(&self, r: &mut Reader<'_>) -> Result<String, CorruptBatch> {
        let id = r.varint()?;
        self.strings.get(id as usize).cloned().ok_or(CorruptBatch("string id out of range"))
    }

    fn key_values(&self, r: &mut Reader<'_>) -> Result<Vec<KeyValue>, CorruptBatch> {
        let n = r.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.string(r)?;
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
                    let key = self.string(r)?;
                    kvs.push(KeyValue { key, value: self.value(r, depth + 1)? });
                }
                Value::KvList(kvs)
            }
            _ => return Err(CorruptBatch("unknown value tag")),
        })
    }
}

/// Decodes a batch written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Span>, CorruptBatch> {
    let mut r = Reader::new(bytes);
    if r.u8()? != BATCH_VERSION {
        return Err(CorruptBatch("unknown batch version"));
    }
    let num_spans = r.count()?;
    let num_strings = r.count()?;
    let mut strings = Vec::with_capacity(num_strings);
    for _ in 0..num_strings {
        strings.push(r.string()?);
    }
    let d = Decoder { strings };
    let mut tables = Reader::new(r.bytes()?);
    let num_runs = r.varint()?;
    let mut table_attributes = Reader::new(r.bytes()?);
    let mut trace_runs = Reader::new(r.bytes()?);
    let mut span_ids = Reader::new(r.bytes()?);
    let mut parent_ids = Reader::new(r.bytes()?);
    let mut names = Reader::new(r.bytes()?);
    let mut kinds = Reader::new(r.bytes()?);
    let mut starts = Reader::new(r.bytes()?);
    let mut durations = Reader::new(r.bytes()?);
    let mut status = Reader::new(r.bytes()?);
    let mut misc = Reader::new(r.bytes()?);
    let mut attributes = Reader::new(r.bytes()?);
    let mut events = Reader::new(r.bytes()?);
    let mut links = Reader::new(r.bytes()?);

    let num_resources = tables.count()?;
    let mut resources = Vec::with_capacity(num_resources);
    for _ in 0..num_resources {
        let dropped_attributes_count = tables.u32()?;
        let schema_url = tables.string()?;
        let attributes = d.key_values(&mut table_attributes)?;
        resources.push(Arc::new(Resource { attributes, dropped_attributes_count, schema_url }));
    }
    let num_scopes = tables.count()?;
    let mut scopes = Vec::with_capacity(num_scopes);
    for _ in 0..num_scopes {
        let name = tables.string()?;
        let version = tables.string()?;
        let schema_url = tables.string()?;
        let dropped_attributes_count = tables.u32()?;
        let attributes = d.key_values(&mut table_attributes)?;
        scopes.push(Arc::new(Scope {
            name,
            version,
            attributes,
            dropped_attributes_count,
            schema_url,
        }));
    }

    // Each span takes at least 8 bytes of span id, which bounds the allocation.
    if num_spans.saturating_mul(SpanId::LEN) > bytes.len() {
        return Err(CorruptBatch("span count larger than the data"));
    }
    let mut out = Vec::with_capacity(num_spans);
    let mut runs_left = num_runs;
    let mut run: Option<(TraceId, u64)> = None;
    let mut previous_start = 0u64;
    for _ in 0..num_spans {
        let trace_id = match &mut run {
            Some((id, left)) if *left > 0 => {
                *left -= 1;
                *id
            }
            _ => {
                if runs_left == 0 {
                    return Err(CorruptBatch("more spans than trace runs"));
                }
                runs_left -= 1;
                let id = TraceId::from_bytes(trace_runs.array()?)
                    .map_err(|_| CorruptBatch("invalid trace id"))?;
                let len = trace_runs.varint()?;
                if len == 0 {
                    return Err(CorruptBatch("empty trace run"));
                }
                run = Some((id, len - 1));
                id
            }
        };
        let span_id =
            SpanId::from_bytes(span_ids.array()?).map_err(|_| CorruptBatch("invalid span id"))?;
        let parent_span_id = SpanId::from_bytes(parent_ids.array()?).ok();
        let name = d.string(&mut names)?;
        let kind = SpanKind::from_otlp(i32::from(kinds.u8()?));
        let start_time_unix_nanos = previous_start.wrapping_add(starts.zigzag()? as u64);
        previous_start = start_time_unix_nanos;
        let end_time_unix_nanos = start_time_unix_nanos
            .checked_add(durations.varint()?)
            .ok_or(CorruptBatch("end time overflows"))?;
        let code = StatusCode::from_otlp(i32::from(status.u8()?));
        let message = d.string(&mut status)?;
        let resource = resources.get(misc.varint()? as usize).ok_or(CorruptBatch("resource id"))?;
        let scope = scopes.get(misc.varint()? as usize).ok_or(CorruptBatch("scope id"))?;
        let trace_state = d.string(&mut misc)?;
        let flags = misc.u32()?;
        let dropped_attributes_count = misc.u32()?;
        let dropped_events_count = misc.u32()?;
        let dropped_links_count = misc.u32()?;
        let span_attributes = d.key_values(&mut attributes)?;

        let num_events = events.count()?;
        let mut span_events = Vec::with_capacity(num_events);
        for _ in 0..num_events {
            let time_unix_nanos = start_time_unix_nanos.wrapping_add(events.zigzag()? as u64);
            let name = d.string(&mut events)?;
            let dropped_attributes_count = events.u32()?;
            let attributes = d.key_values(&mut events)?;
            span_events.push(Event { time_unix_nanos, name, attributes, dropped_attributes_count });
        }

        let num_links = links.count()?;
        let mut span_links = Vec::with_capacity(num_links);
        for _ in 0..num_links {
            let trace_id = TraceId::from_bytes(links.array()?)
                .map_err(|_| CorruptBatch("invalid link trace id"))?;
            let span_id = SpanId::from_bytes(links.array()?)
                .map_err(|_| CorruptBatch("invalid link span id"))?;
            let trace_state = d.string(&mut links)?;
            let flags = links.u32()?;
            let dropped_attributes_count = links.u32()?;
            let attributes = d.key_values(&mut links)?;
            span_links.push(Link {
                trace_id,
                span_id,
                trace_state,
                attributes,
                dropped_attributes_count,
                flags,
            });
        }

        out.push(Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            flags,
            name,
            kind,
            start_time_unix_nanos,
            end_time_unix_nanos,
            attributes: span_attributes,
            dropped_attributes_count,
            events: span_events,
            dropped_events_count,
            links: span_links,
            dropped_links_count,
            status: Status { code, message },
            resource: Arc::clone(resource),
            scope: Arc::clone(scope),
        });
    }
    Ok(out)
}
