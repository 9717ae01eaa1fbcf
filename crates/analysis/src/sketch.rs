//! A DDSketch of span durations (Masson, Rim and Lee, VLDB 2019): every quantile it reports is
//! within 1% of the true value, and two sketches merge exactly by adding bucket counts.
//!
//! Bucket `i` holds durations in `(γ^(i-1), γ^i]` nanoseconds with `γ = (1 + α) / (1 - α)`, and
//! reports them as `2γ^i / (γ + 1)`, which is within `α` of any of them. Counts live in one
//! dense vector from the lowest to the highest bucket seen (about 1,440 buckets span 1 ns to
//! an hour), so adding a span is an index computation and an increment. Zero-length spans
//! have a bucket of their own.
//!
//! Own implementation rather than a crate: detection reads the buckets themselves (rank tests
//! and order-statistic intervals), and the store needs a stable, compact encoding.

/// The relative accuracy `α` of every reported quantile.
pub const RELATIVE_ACCURACY: f64 = 0.01;

const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);

/// The encoding's version byte.
const ENCODING_V1: u8 = 1;

/// Durations in nanoseconds. Invariant: when not empty, the first and last dense counts are
/// non-zero, so equal contents compare equal however they were built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LatencySketch {
    zero_count: u64,
    /// `counts[k]` is bucket `offset + k`.
    offset: i32,
    counts: Vec<u64>,
    count: u64,
}

/// One bucket of a sketch, in ascending order of duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Every duration in the bucket is above this (the zero bucket: 0) ...
    pub lower_nanos: f64,
    /// ... and at most this.
    pub upper_nanos: f64,
    /// What the sketch reports for a duration in this bucket.
    pub value_nanos: f64,
    pub count: u64,
}

impl LatencySketch {
    pub fn new() -> LatencySketch {
        LatencySketch::default()
    }

    pub fn add(&mut self, duration_nanos: u64) {
        self.add_n(duration_nanos, 1);
    }

    /// Adds `n` spans of the same duration.
    pub fn add_n(&mut self, duration_nanos: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.count += n;
        if duration_nanos == 0 {
            self.zero_count += n;
            return;
        }
        let index = bucket_index(duration_nanos as f64);
        let slot = self.slot(index);
        self.counts[slot] += n;
    }

    /// Adds every span of `other`: exact, and in any order the result is the same.
    pub fn merge(&mut self, other: &LatencySketch) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.zero_count += other.zero_count;
        if other.counts.is_empty() {
            return;
        }
        let last = other.offset + other.counts.len() as i32 - 1;
        self.slot(other.offset);
        self.slot(last);
        let start = (other.offset - self.offset) as usize;
        for (mine, theirs) in self.counts[start..].iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    /// The number of spans added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) in nanoseconds, within 1% of the true value; `None` when
    /// empty. The rank is `q·(n − 1)`, rounded down.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        self.value_at_rank((q * (self.count - 1) as f64).floor() as u64)
    }

    /// The duration of the span at 0-based `rank` in ascending order, as the sketch reports it.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        let mut seen = 0;
        self.buckets().find_map(|bucket| {
            seen += bucket.count;
            (seen > rank).then_some(bucket.value_nanos)
        })
    }

    /// The non-empty buckets, shortest durations first.
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        let zero = (self.zero_count > 0).then_some(Bucket {
            lower_nanos: 0.0,
            upper_nanos: 0.0,
            value_nanos: 0.0,
            count: self.zero_count,
        });
        let dense = self.counts.iter().enumerate().filter(|(_, count)| **count > 0).map(
            move |(k, &count)| {
                let index = self.offset + k as i32;
                let upper = GAMMA.powi(index);
                Bucket {
                    lower_nanos: upper / GAMMA,
                    upper_nanos: upper,
                    value_nanos: 2.0 * upper / (GAMMA + 1.0),
                    count,
                }
            },
        );
        zero.into_iter().chain(dense)
    }

    /// A compact, versioned byte form: `[1, varint zero_count, zigzag offset, varint len,
    /// varint count...]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENCODING_V1];
        put_varint(&mut out, self.zero_count);
        put_varint(&mut out, zigzag(self.offset));
        put_varint(&mut out, self.counts.len() as u64);
        for &count in &self.counts {
            put_varint(&mut out, count);
        }
        out
    }

    /// Reads [`LatencySketch::encode`]'s form; `None` for anything else (never panics).
    pub fn decode(bytes: &[u8]) -> Option<LatencySketch> {
        let (&version, mut rest) = bytes.split_first()?;
        if version != ENCODING_V1 {
            return None;
        }
        let zero_count = take_varint(&mut rest)?;
        let offset = unzigzag(take_varint(&mut rest)?)?;
        let len = usize::try_from(take_varint(&mut rest)?).ok()?;
        // Every count takes at least one byte, and buckets past u64 durations cannot exist.
        if len > rest.len() || len > MAX_BUCKETS {
            return None;
        }
        let counts = (0..len).map(|_| take_varint(&mut rest)).collect::<Option<Vec<u64>>>()?;
        let valid_ends =
            counts.first().is_none_or(|&c| c > 0) && counts.last().is_none_or(|&c| c > 0);
        let last_index = i64::from(offset) + len as i64 - 1;
        if !rest.is_empty()
            || !valid_ends
            || (len > 0 && (offset < MIN_INDEX || last_index > MAX_INDEX as i64))
        {
            return None;
        }
        let count = counts.iter().try_fold(zero_count, |sum, &c| sum.checked_add(c))?;
        Some(LatencySketch { zero_count, offset, counts, count })
    }

    /// The non-empty buckets as `(index, count)`, the zero bucket as [`ZERO_BUCKET`]: the
    /// form an engine that sums bucket maps itself (ClickHouse) stores.
    pub fn indexed_counts(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        let zero = (self.zero_count > 0).then_some((ZERO_BUCKET, self.zero_count));
        let dense = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(k, &count)| (self.offset + k as i32, count));
        zero.into_iter().chain(dense)
    }

    /// The sketch of [`LatencySketch::indexed_counts`]' pairs, in any order and repeated
    /// indexes summed; `None` for an index no duration can have (never panics).
    pub fn from_indexed_counts(
        pairs: impl IntoIterator<Item = (i32, u64)>,
    ) -> Option<LatencySketch> {
        let mut sketch = LatencySketch::new();
        for (index, count) in pairs {
            if count == 0 {
                continue;
            }
            sketch.count = sketch.count.checked_add(count)?;
            if index == ZERO_BUCKET {
                sketch.zero_count += count;
            } else if (MIN_INDEX..=MAX_INDEX).contains(&index) {
                let slot = sketch.slot(index);
                sketch.counts[slot] += count;
            } else {
                return None;
            }
        }
        Some(sketch)
    }

    /// The dense slot of bucket `index`, growing the vector to hold it.
    fn slot(&mut self, index: i32) -> usize {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(0);
            return 0;
        }
        if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        }
        let slot = (index - self.offset) as usize;
        if slot >= self.counts.len() {
            self.counts.resize(slot + 1, 0);
        }
        slot
    }
}

/// The bucket of a duration of 1 ns: `ceil(log_γ 1) = 0`.
const MIN_INDEX: i32 = 0;
/// The bucket of `u64::MAX` nanoseconds.
const MAX_INDEX: i32 = 2_220;
const MAX_BUCKETS: usize = (MAX_INDEX - MIN_INDEX + 1) as usize;
/// The index [`LatencySketch::indexed_counts`] gives zero-length spans.
pub const ZERO_BUCKET: i32 = i32::MIN;

fn bucket_index(nanos: f64) -> i32 {
    ((nanos.ln() / GAMMA.ln()).ceil() as i32).clamp(MIN_INDEX, MAX_INDEX)
}

fn zigzag(value: i32) -> u64 {
    ((value << 1) ^ (value >> 31)) as u32 as u64
}

fn unzigzag(value: u64) -> Option<i32> {
    let value = u32::try_from(value).ok()?;
    Some(((value >> 1) as i32) ^ -((value & 1) as i32))
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sketch_of(values: &[u64]) -> LatencySketch {
        let mut sketch = LatencySketch::new();
        for &v in values {
            sketch.add(v);
        }
        sketch
    }

    proptest! {
        #[test]
        fn indexed_counts_round_trip(values in proptest::collection::vec(0u64..u64::MAX, 0..200), pairs in proptest::collection::vec((any::<i32>(), 0u64..1000), 0..20)) {
            let sketch = sketch_of(&values);
            let mut shuffled: Vec<(i32, u64)> = sketch.indexed_counts().collect();
            shuffled.reverse();
            prop_assert_eq!(LatencySketch::from_indexed_counts(shuffled), Some(sketch));
            // Arbitrary pairs never panic.
            let _ = LatencySketch::from_indexed_counts(pairs);
        }
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let values: Vec<u64> = (1..=10_000).map(|i| i * 1_000).collect();
        let sketch = sketch_of(&values);
        for q in [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let exact = values[(q * (values.len() - 1) as f64).floor() as usize] as f64;
            let got = sketch.quantile(q).unwrap();
            assert!((got - exact).abs() <= RELATIVE_ACCURACY * exact, "q={q}: {got} vs {exact}");
        }
        assert_eq!(sketch.count(), 10_000);
        assert_eq!(LatencySketch::new().quantile(0.5), None);
        assert_eq!(sketch_of(&[0, 0, 5]).quantile(0.5), Some(0.0));
    }

    #[test]
    fn the_extremes_of_u64_have_buckets() {
        let sketch = sketch_of(&[1, u64::MAX]);
        assert_eq!(sketch.buckets().count(), 2);
        assert!(LatencySketch::decode(&sketch.encode()).is_some());
    }

    proptest! {
        #[test]
        fn merge_is_associative_and_commutative(
            a in proptest::collection::vec(0u64..10_000_000_000, 0..50),
            b in proptest::collection::vec(0u64..10_000_000_000, 0..50),
            c in proptest::collection::vec(0u64..10_000_000_000, 0..50),
        ) {
            let (sa, sb, sc) = (sketch_of(&a), sketch_of(&b), sketch_of(&c));
            let mut ab_c = sa.clone();
            ab_c.merge(&sb);
            ab_c.merge(&sc);
            let mut bc = sb.clone();
            bc.merge(&sc);
            let mut a_bc = sa.clone();
            a_bc.merge(&bc);
            let mut cba = sc.clone();
            cba.merge(&sb);
            cba.merge(&sa);
            prop_assert_eq!(&ab_c, &a_bc);
            prop_assert_eq!(&ab_c, &cba);
            // And merging equals adding every value to one sketch.
            let all: Vec<u64> = a.iter().chain(&b).chain(&c).copied().collect();
            prop_assert_eq!(&ab_c, &sketch_of(&all));
        }

        #[test]
        fn encoding_round_trips(values in proptest::collection::vec(any::<u64>(), 0..100)) {
            let sketch = sketch_of(&values);
            prop_assert_eq!(LatencySketch::decode(&sketch.encode()), Some(sketch));
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(sketch) = LatencySketch::decode(&bytes) {
                prop_assert_eq!(LatencySketch::decode(&sketch.encode()), Some(sketch));
            }
        }
    }
}
