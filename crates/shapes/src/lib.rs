//! The JSON API's shapes as typed values, with the words every outlet writes them in (units,
//! short times, labels). Views build them; the JSON API serialises them, and pages,
//! notifications and MCP read their fields and words. A `…J` type is one object of the JSON
//! API, by resource: `changes`, `traces`, `deploys`, `findings`, `dora`; `words` holds the
//! text helpers they share.
//!
//! The types are the API's contract: a field renamed here is renamed in the API. Stored
//! parts of a finding (its numbers and explanation) are written and read through them too,
//! so their `Deserialize` accepts what older versions stored.
//!
//! May depend on: serde and jiff only.
//! **Never:** the store, a view's logic, HTTP or templates.

mod changes;
mod deploys;
mod dora;
mod findings;
mod traces;
mod words;

#[cfg(test)]
mod tests;

pub use changes::*;
pub use deploys::*;
pub use dora::*;
pub use findings::*;
pub use traces::*;
pub use words::*;
