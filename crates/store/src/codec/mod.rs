//! The span batch encoding shared by WAL records and block row groups.
//!
//! A batch is laid out column by column (ids, then names, then timestamps...) so that zstd,
//! which compresses the whole batch afterwards, sees similar bytes next to each other.
//! Strings that repeat across spans (names, attribute keys, trace states, status messages)
//! go through one dictionary; resources and scopes, shared by many spans, are written once.
//! Trace ids are run-length encoded because blocks are sorted by trace id.
//!
//! Decoding never trusts a length or a count: every read is bounds-checked and a corrupt batch
//! is an error, never a panic or a huge allocation.

mod format;
mod read;
mod write;

pub(crate) use format::CorruptBatch;
pub(crate) use read::{Cursor, Reader, StoredSpan, decode};
pub(crate) use write::{Writer, encode, encode_split};
