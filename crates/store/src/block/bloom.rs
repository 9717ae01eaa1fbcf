//! Bloom filters of a block: trace ids per block, and (key, value) pairs and span names per
//! row group, with the hashes both writing and probing use.

use model::{TraceId, Value};

/// 16 bits per trace and 11 probes: about one false positive in 2,000 blocks.
pub(super) const TRACE_BLOOM_BITS: u64 = 16;

pub(super) const TRACE_BLOOM_HASHES: u32 = 11;

/// Attribute blooms (which also hold span names): 8 bits per distinct (key, value) pair and
/// 6 probes (about 2% false positives), but never more than 1.5 bytes per span, so
/// high-cardinality values cost a bounded share of the block (their false-positive rate rises
/// instead).
pub(super) const ATTRIBUTE_BLOOM_BITS: u64 = 8;

pub(super) const ATTRIBUTE_BLOOM_MAX_BITS_PER_SPAN: u64 = 12;

pub(super) const ATTRIBUTE_BLOOM_HASHES: u32 = 6;

/// A row group's bloom over the (key, text) of its spans' and resources' attributes and over
/// its span names.
pub(crate) struct GroupBloom(pub(super) Bloom);

/// The key span names are hashed under in the attribute bloom. A real attribute of this
/// name would only add false positives.
pub(super) const NAME_KEY: &str = "\u{0}span.name";

/// A bloom filter probed with double hashing. Trace ids are mostly random, but some
/// generators put a timestamp in the high bytes, so each half is mixed before use.
#[derive(Debug)]
pub(super) struct Bloom {
    pub(super) bits: Vec<u8>,
    pub(super) hashes: u32,
}

pub(super) fn trace_hashes(trace_id: &TraceId) -> (u64, u64) {
    let bytes = trace_id.as_bytes();
    let h1 = mix(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")));
    let h2 = mix(u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"))) | 1;
    (h1, h2)
}

/// A stable 64-bit hash of an attribute as a search compares it: key and text.
pub(super) fn attribute_hash(key: &str, text: &str) -> u64 {
    // FNV-1a over the key, a separator no UTF-8 text contains, and the text.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes().iter().chain(&[0xff]).chain(text.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// [`attribute_hash`] of the value's text as `Value::to_text` spells it (what a search
/// compares), written into `buf` instead of a new string; `None` for values without a text.
pub(super) fn value_hash(key: &str, value: &Value, buf: &mut String) -> Option<u64> {
    use std::fmt::Write as _;
    buf.clear();
    // The spellings of `Value::to_text`: `Display` of the number or boolean.
    let written = match value {
        Value::String(text) => return Some(attribute_hash(key, text)),
        Value::Int(i) => write!(buf, "{i}"),
        Value::Double(d) => write!(buf, "{d}"),
        Value::Bool(b) => write!(buf, "{b}"),
        _ => return None,
    };
    written.ok().map(|()| attribute_hash(key, buf))
}

pub(super) fn split_hash(h: u64) -> (u64, u64) {
    (h, mix(h ^ 0x9e37_79b9_7f4a_7c15) | 1)
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl GroupBloom {
    /// Whether a span (or its resource) may have attribute `key` reading as `text`.
    pub(crate) fn may_hold_attribute(&self, key: &str, text: &str) -> bool {
        self.0.may_contain(split_hash(attribute_hash(key, text)))
    }

    /// Whether a span may be named `name`.
    pub(crate) fn may_hold_name(&self, name: &str) -> bool {
        self.0.may_contain(split_hash(attribute_hash(NAME_KEY, name)))
    }
}

impl Bloom {
    pub(super) fn new(num_bits: u64, hashes: u32) -> Bloom {
        let num_bits = num_bits.max(64).next_multiple_of(8);
        Bloom { bits: vec![0; (num_bits / 8) as usize], hashes }
    }

    fn positions(&self, (h1, h2): (u64, u64)) -> impl Iterator<Item = u64> + use<> {
        let num_bits = self.bits.len() as u64 * 8;
        (0..u64::from(self.hashes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % num_bits)
    }

    pub(super) fn insert(&mut self, hashes: (u64, u64)) {
        for bit in self.positions(hashes) {
            self.bits[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }

    pub(super) fn may_contain(&self, hashes: (u64, u64)) -> bool {
        self.positions(hashes).all(|bit| self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }
}
