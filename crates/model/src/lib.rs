//! spanblame's domain vocabulary: trace and span ids, spans as spanblame stores them, and the
//! version identity (service, environment, version, commit, repository, code location) read
//! from a span's attributes; and the change graph (commits, reviews, deploys) it is linked to.
//!
//! Every other crate speaks these types. They carry no wire format: the `otlp` crate converts
//! OTLP messages into them, the `store` crate encodes them on disk, and the `server` crate
//! turns them into JSON views. That is why nothing here derives `Serialize`.
//!
//! **Architecture Invariant:** this crate does no IO, reads no clock and depends on no
//! runtime, HTTP, SQL or serialization crate (checked by `cargo xtask tidy`).
//!
//! May depend on: nothing. **Never:** IO, a clock, or knowing any wire or storage format.

mod change;
mod identity;
mod ids;
mod span;

pub use change::{
    Commit, Deploy, DeploySource, FileChange, FileChangeKind, ForgeEvent, ForgeKind, Person,
    Review, ReviewState, is_null_sha, looks_like_sha, normalize_repository_url, subject,
};
pub use identity::{CodeLocation, UNKNOWN_SERVICE, VersionIdentity, attribute_names};
pub use ids::{ParseIdError, SpanId, TraceId};
pub use span::{Event, KeyValue, Link, Resource, Scope, Span, SpanKind, Status, StatusCode, Value};
