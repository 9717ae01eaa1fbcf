//! The JSON API's shapes as typed values, with the words every outlet writes them in (units,
//! short times, labels). Views build them; the JSON API serialises them, and pages,
//! notifications and MCP read their fields and words. A `…J` type is one object of the JSON
//! API, by resource: `changes`, `traces`, `deploys`, `findings`, `dora`; `words` holds the
//! text helpers they share.

mod changes;
mod deploys;
mod dora;
mod findings;
mod traces;
mod words;

pub use changes::*;
pub use deploys::*;
pub use dora::*;
pub use findings::*;
pub use traces::*;
pub use words::*;
