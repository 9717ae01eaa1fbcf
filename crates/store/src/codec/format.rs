//! What both directions of the batch encoding share: its version byte and its error.

/// Format version written at the start of every batch.
pub(super) const BATCH_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
#[error("corrupt span batch: {0}")]
pub(crate) struct CorruptBatch(pub(crate) &'static str);
