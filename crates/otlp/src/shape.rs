//! What a request will cost to decode, measured before it is decoded: a walk over the
//! protobuf wire format (or the JSON text) that allocates nothing and counts spans and the
//! memory the decoded message would take.
//!
//! A decoder allocates a struct for every element it meets, so a body of tiny elements (an
//! attribute is two bytes of protobuf, `4a 00`) decodes to forty times its size. The walk
//! counts the elements of each repeated field and prices the `Vec` that will hold them as it
//! grows (four elements at first, then doubling), and every string or bytes field at its
//! length, each rounded up to the allocator's size classes: an upper bound of what `prost`
//! or `serde_json` hold once decoded (`shape_bounds_what_decoding_allocates` measures it). The server refuses or throttles on that figure before
//! decoding (see `server::ingest`).

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use crate::{DecodeError, DecodeLimits};

/// Deepest protobuf nesting walked: `prost`'s own recursion limit (OTLP's messages nest 5
/// deep; a nested attribute value takes two levels per level).
pub const MAX_NESTING: usize = 100;

/// Deepest JSON nesting walked: `serde_json`'s own limit (a nested value takes three JSON
/// containers per level).
const MAX_JSON_NESTING: usize = 128;

/// What decoding a request will cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub num_spans: u64,
    /// An upper bound of the memory the decoded message takes.
    pub decoded_bytes: u64,
}

impl Shape {
    /// Refuses a request over the per-request caps, saying which and what to change.
    pub fn check(&self, limits: &DecodeLimits) -> Result<(), DecodeError> {
        if self.num_spans > limits.max_spans_per_request as u64 {
            return Err(DecodeError::TooManySpans {
                num_spans: self.num_spans,
                limit: limits.max_spans_per_request,
            });
        }
        if self.decoded_bytes > limits.max_decoded_bytes as u64 {
            return Err(DecodeError::DecodesTooLarge {
                decoded_bytes: self.decoded_bytes,
                limit_bytes: limits.max_decoded_bytes,
            });
        }
        Ok(())
    }
}

/// The messages of a trace export, as far as the walk needs to tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

impl Message {
    /// The size of the decoded struct.
    fn size_bytes(self) -> usize {
        match self {
            Message::Request => 24,
            Message::ResourceSpans => size_of::<ResourceSpans>(),
            Message::Resource => size_of::<Resource>(),
            Message::EntityRef => size_of::<EntityRef>(),
            Message::ScopeSpans => size_of::<ScopeSpans>(),
            Message::Scope => size_of::<InstrumentationScope>(),
            Message::Span => size_of::<Span>(),
            Message::Event => size_of::<span::Event>(),
            Message::Link => size_of::<span::Link>(),
            Message::Status => size_of::<Status>(),
            Message::KeyValue => size_of::<KeyValue>(),
            Message::AnyValue => size_of::<AnyValue>(),
            Message::ArrayValue => size_of::<ArrayValue>(),
            Message::KeyValueList => size_of::<KeyValueList>(),
        }
    }

    /// The message a protobuf field of this message holds, if it holds one, and whether the
    /// field is repeated (its elements live in a `Vec`; a singular one is inline in its parent,
    /// and a repeat of it merges into the same instance).
    fn field(self, number: u64) -> Option<(Message, bool)> {
        use Message as M;
        Some(match (self, number) {
            (M::Request, 1) => (M::ResourceSpans, true),
            (M::ResourceSpans, 1) => (M::Resource, false),
            (M::ResourceSpans, 2) => (M::ScopeSpans, true),
            (M::Resource, 1) | (M::Scope, 3) | (M::Span, 9) | (M::Event, 3) | (M::Link, 4) => {
                (M::KeyValue, true)
            }
            (M::Resource, 3) => (M::EntityRef, true),
            (M::ScopeSpans, 1) => (M::Scope, false),
            (M::ScopeSpans, 2) => (M::Span, true),
            (M::Span, 11) => (M::Event, true),
            (M::Span, 13) => (M::Link, true),
            (M::Span, 15) => (M::Status, false),
            (M::KeyValue, 2) => (M::AnyValue, false),
            (M::ArrayValue, 1) => (M::AnyValue, true),
            (M::AnyValue, 5) => (M::ArrayValue, false),
            (M::AnyValue, 6) => (M::KeyValueList, false),
            (M::KeyValueList, 1) => (M::KeyValue, true),
            _ => return None,
        })
    }

    /// Whether a string or bytes field of this message is repeated (`EntityRef`'s key lists).
    fn repeated_leaf(self, number: u64) -> bool {
        self == Message::EntityRef && matches!(number, 3 | 4)
    }

    /// The message a JSON key of this message holds (OTLP/JSON's lowerCamelCase names) and
    /// whether it is repeated, as [`Message::field`].
    fn key(self, key: &[u8]) -> Option<(Message, bool)> {
        let number = match (self, key) {
            (Message::Request, b"resourceSpans")
            | (Message::ResourceSpans, b"resource")
            | (Message::Resource, b"attributes")
            | (Message::ScopeSpans, b"scope")
            | (Message::ArrayValue | Message::KeyValueList, b"values") => 1,
            (Message::ResourceSpans, b"scopeSpans")
            | (Message::ScopeSpans, b"spans")
            | (Message::KeyValue, b"value") => 2,
            (Message::Resource, b"entityRefs") | (Message::Scope, b"attributes") => 3,
            (Message::Event, b"attributes") | (Message::Link, b"attributes") => {
                if self == Message::Event { 3 } else { 4 }
            }
            (Message::AnyValue, b"arrayValue") => 5,
            (Message::AnyValue, b"kvlistValue") => 6,
            (Message::Span, b"attributes") => 9,
            (Message::Span, b"events") => 11,
            (Message::Span, b"links") => 13,
            (Message::Span, b"status") => 15,
            _ => return None,
        };
        self.field(number)
    }
}

/// An allocation of `len` bytes, rounded up to the allocator's size class (16-byte steps
/// up to 128 bytes, then at most a quarter more).
fn allocation_bytes(len: usize) -> u64 {
    if len == 0 { 0 } else { (len + (len / 4).max(16)) as u64 }
}

/// The `Vec` that holds `count` elements of `size_bytes` pushed one by one: four at first,
/// then doubling.
fn vec_bytes(count: u64, size_bytes: usize) -> u64 {
    let capacity = if count == 0 { 0 } else { count.next_power_of_two().max(4) };
    allocation_bytes(usize::try_from(capacity).unwrap_or(usize::MAX).saturating_mul(size_bytes))
}

/// The fields numbered below this are counted one by one (OTLP's repeated fields are 1-13).
const COUNTED_FIELDS: usize = 16;

/// Measures a protobuf `ExportTraceServiceRequest` without decoding it.
pub fn measure_protobuf(bytes: &[u8]) -> Result<Shape, DecodeError> {
    let mut shape = Shape::default();
    walk_protobuf(bytes, Message::Request, 0, &mut shape)?;
    Ok(shape)
}

fn walk_protobuf(
    mut bytes: &[u8],
    message: Message,
    depth: usize,
    shape: &mut Shape,
) -> Result<(), DecodeError> {
    if depth > MAX_NESTING {
        return Err(DecodeError::TooDeep { limit: MAX_NESTING });
    }
    let malformed = |what: &str| DecodeError::Protobuf(format!("{what} in a {message:?} message"));
    // Elements met per repeated field of this message; each becomes one `Vec`.
    let mut counts = [0u64; COUNTED_FIELDS];
    while !bytes.is_empty() {
        let key = varint(&mut bytes).ok_or_else(|| malformed("a truncated field key"))?;
        let skip = match key & 7 {
            0 => {
                varint(&mut bytes).ok_or_else(|| malformed("a truncated varint"))?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let len = varint(&mut bytes).ok_or_else(|| malformed("a truncated length"))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= bytes.len())
                    .ok_or_else(|| malformed("a length past the end of the body"))?;
                let (field, rest) = bytes.split_at(len);
                let number = key >> 3;
                if let Some(count) = counts.get_mut(number as usize) {
                    *count += 1;
                }
                match message.field(number) {
                    Some((child, _)) => {
                        shape.num_spans += u64::from(child == Message::Span);
                        walk_protobuf(field, child, depth + 1, shape)?;
                    }
                    None => shape.decoded_bytes += allocation_bytes(len),
                }
                bytes = rest;
                0
            }
            // A group (proto2): no OTLP field is one, so the decoder skips it unallocated.
            3 => {
                bytes = skip_group(bytes, key >> 3, depth + 1)
                    .ok_or_else(|| malformed("an unterminated or too deep group"))?;
                0
            }
            wire_type => {
                return Err(malformed(&format!("wire type {wire_type} outside a group")));
            }
        };
        if skip > bytes.len() {
            return Err(malformed("a truncated fixed-width field"));
        }
        bytes = &bytes[skip..];
    }
    for (number, &count) in counts.iter().enumerate() {
        let number = number as u64;
        shape.decoded_bytes += match message.field(number) {
            Some((child, true)) => vec_bytes(count, child.size_bytes()),
            _ if message.repeated_leaf(number) => vec_bytes(count, size_of::<String>()),
            _ => 0,
        };
    }
    Ok(())
}

/// The bytes after the end of the group `number` that `bytes` starts inside.
fn skip_group(mut bytes: &[u8], number: u64, depth: usize) -> Option<&[u8]> {
    if depth > MAX_NESTING {
        return None;
    }
    loop {
        let key = varint(&mut bytes)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut bytes)?;
                0
            }
            1 => 8,
            5 => 4,
            2 => usize::try_from(varint(&mut bytes)?).ok()?,
            3 => {
                bytes = skip_group(bytes, key >> 3, depth + 1)?;
                0
            }
            4 if key >> 3 == number => return Some(bytes),
            _ => return None,
        };
        bytes = bytes.get(skip..)?;
    }
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Measures an OTLP/JSON `ExportTraceServiceRequest` without decoding it. Malformed JSON is
/// left for the decoder to describe; only nesting beyond `serde_json`'s limit is refused here.
pub fn measure_json(bytes: &[u8]) -> Result<Shape, DecodeError> {
    let mut shape = Shape::default();
    // Each open container: the message it is (or its elements are, for an array) and whether
    // that is repeated; whether it is an object (whose next string is a key); and, for an
    // array, its elements so far and whether one has begun since the last comma.
    struct Open {
        message: Option<(Message, bool)>,
        is_object: bool,
        elements: u64,
    }
    let mut open: Vec<Open> = Vec::new();
    let mut last_key: &[u8] = b"";
    let mut expect_key = false;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        // The first byte of an array's element counts it.
        if let Some(array) = open.last_mut().filter(|o| !o.is_object)
            && !matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']')
            && array.elements & 1 == 0
        {
            array.elements += 1;
        }
        match byte {
            b'"' => {
                let end = string_end(bytes, i + 1);
                let text = &bytes[i + 1..end.min(bytes.len())];
                if expect_key {
                    last_key = text;
                    expect_key = false;
                } else {
                    shape.decoded_bytes += allocation_bytes(text.len());
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => {
                if open.len() >= MAX_JSON_NESTING {
                    return Err(DecodeError::TooDeep { limit: MAX_JSON_NESTING });
                }
                let is_object = byte == b'{';
                let message = match open.last() {
                    None => Some((Message::Request, false)),
                    // An element of an array is the array's message.
                    Some(Open { message, is_object: false, .. }) => *message,
                    Some(Open { message, is_object: true, .. }) => {
                        message.and_then(|(m, _)| m.key(last_key))
                    }
                };
                if is_object && matches!(message, Some((Message::Span, _))) {
                    shape.num_spans += 1;
                }
                open.push(Open { message, is_object, elements: 0 });
                expect_key = is_object;
            }
            b'}' | b']' => {
                if let Some(closed) = open.pop()
                    && !closed.is_object
                {
                    // Elements are counted twice each (begun, then ended by a comma or `]`).
                    let count = closed.elements.div_ceil(2);
                    shape.decoded_bytes += match closed.message {
                        Some((child, true)) => vec_bytes(count, child.size_bytes()),
                        // A list of strings or numbers.
                        _ => vec_bytes(count, size_of::<String>()),
                    };
                }
                expect_key = false;
            }
            b',' => match open.last_mut() {
                Some(o) if o.is_object => expect_key = true,
                Some(array) => array.elements += array.elements & 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    Ok(shape)
}

/// The index of the quote closing a JSON string that starts at `from` (or the end).
fn string_end(bytes: &[u8], mut from: usize) -> usize {
    while from < bytes.len() {
        match bytes[from] {
            b'\\' => from += 2,
            b'"' => return from,
            _ => from += 1,
        }
    }
    bytes.len()
}
