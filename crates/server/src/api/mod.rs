//! The JSON API v1 handlers (and the Tempo and Jaeger query APIs, `tempo` and `jaeger`), one module per resource: each parses its request, calls the
//! view (or the store, for the few writes), and answers JSON; access was decided by the guard.

pub(crate) mod audit;
pub(crate) mod deploys;
pub(crate) mod dora;
pub(crate) mod findings;
pub(crate) mod gate;
pub(crate) mod health;
pub(crate) mod incidents;
pub(crate) mod jaeger;
pub(crate) mod notifications;
pub(crate) mod tempo;
pub(crate) mod tokens;
pub(crate) mod traces;
