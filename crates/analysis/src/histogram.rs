//! Counts of observed values in fixed buckets, with their sum and count: the data of a
//! Prometheus histogram, kept by whoever observes (the store's writes and reads, the jobs)
//! and written out by the server's `/metrics`.

/// Bounds for durations in seconds, from a WAL sync (half a millisecond) to a long merge.
pub const DURATION_BOUNDS_SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, increasing.
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last counts those past every bound.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    /// Durations in seconds ([`DURATION_BOUNDS_SECONDS`]).
    pub fn durations() -> Histogram {
        Histogram::new(&DURATION_BOUNDS_SECONDS)
    }

    pub fn observe(&mut self, value: f64) {
        let at = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[at] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Each bound with the observations at or below it, as the text format's `le` buckets
    /// (the `+Inf` bucket is `count`).
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds.iter().zip(&self.counts).scan(0, |total, (bound, n)| {
            *total += n;
            Some((*bound, *total))
        })
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::durations()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 7.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, [2, 1, 1]);
        assert_eq!(h.cumulative().collect::<Vec<_>>(), [(0.1, 2), (1.0, 3)]);
        assert_eq!((h.count, h.sum), (4, 7.65));
    }
}
