//! Reading batches: bounds-checked readers, and a cursor that builds only the rows and
//! columns asked for.

use std::sync::Arc;

use model::{
    Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
    Value,
};

use super::format::{BATCH_VERSION, CorruptBatch};

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
