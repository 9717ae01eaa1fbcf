//! Writing batches: the column writers, the dictionary of repeated strings, the tables of
//! shared resources and scopes.

use foldhash::HashMap;
use std::sync::Arc;

use model::{KeyValue, Resource, Scope, Span, TraceId, Value};

use super::format::BATCH_VERSION;

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
