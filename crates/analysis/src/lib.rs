//! Change intelligence, as pure functions: what spanblame computes to say whether a deploy
//! made an operation slower or more error-prone, by how much, and how sure it is.
//!
//! - [`sketch`]: a DDSketch of latencies with 1% relative accuracy. Ingest adds every span to
//!   one per (service, operation, span kind, version, environment, minute); sketches merge
//!   exactly (bucket counts add), so minutes, instances and versions combine in any order.
//! - [`stats`]: the statistics read straight off sketch buckets: distribution-free quantile
//!   confidence intervals from binomial order statistics (no resampling), the Mann–Whitney
//!   rank test with ties, and the two-proportion test for error rates.
//! - [`compare`]: one metric of one operation, before against after, to a [`compare::Verdict`]
//!   with its effect size, confidence interval and sample counts; too few samples give
//!   `Inconclusive` with the reason, never silence.
//! - [`detect`]: one deploy at one look: the baseline (other versions in the same minutes, or
//!   the window before guarded by a day and a week earlier), Benjamini–Hochberg across the
//!   deploy's tests and alpha spending across looks.
//! - [`evidence`]: what a sample of traces before and after shows: slower code paths, new
//!   or multiplied child spans, attributes of slow spans.
//! - [`suspects`]: the deploy's commits ranked by evidence (code paths, trace structure,
//!   attributes of slow spans, priors), with reasons, and a bisect plan when no commit is
//!   clearly ahead.
//! - [`code`]: the lines of the function that encloses a line of a source file, by each
//!   language family's layout (indentation, `def`…`end`, braces), so blame covers the body.
//! - [`traces`]: the shape of one trace (its critical path) and two traces aligned span by
//!   span, for the trace page and the comparison of two traces.
//! - [`gate`]: the tagging gate: whether a change will be attributable once deployed (a
//!   review link, a mapped service, spans that say their version and commit), or why not yet.
//! - [`dora`]: the four DORA metrics and their bands over a window of deploys, changes and
//!   attributed regressions.
//! - [`span_metrics`]: span metrics and the service graph under Tempo's metric names, and
//!   each edge's last minutes for the service-graph page.
//! - [`exposition`]: label values as Prometheus's text format writes them.
//! - [`histogram`]: observed durations in fixed buckets, the data of `/metrics`' histograms.
//!
//! **Architecture Invariant:** no IO, no clock, no randomness, no dependency but `model`: the same
//! inputs give the same findings, so the accuracy harness and the tests are exact.

pub mod code;
pub mod compare;
pub mod detect;
pub mod dora;
pub mod evidence;
pub mod exposition;
pub mod gate;
pub mod histogram;
pub mod sketch;
pub mod span_metrics;
pub mod stats;
pub mod suspects;
pub mod traces;

pub use compare::{Comparison, Metric, Thresholds, Verdict, WindowStats, compare};
pub use sketch::LatencySketch;
