//! TraceQL, the trace query language of Grafana Tempo, as spanblame reads and runs it: a
//! query is parsed into a [`Query`] ([`parse`]), run over one trace at a time
//! ([`Query::evaluate`]) to the spansets it selects, and asked which conditions every match
//! must meet ([`Query::required`]), so a store can skip what cannot match.
//!
//! What is read: spanset filters `{ … }` with intrinsics (`name`, `status`, `statusMessage`,
//! `kind`, `duration`, `rootName`, `rootServiceName`, `traceDuration`, and the `span:` and
//! `trace:` forms), attributes (`span.`, `resource.`, `.`), literals of every type,
//! `= != > >= < <= =~ !~ && || !` and parentheses; spanset operators `&& || > >> < << ~`;
//! pipelines with `count()`, `avg|min|max|sum(field)` compared to a value, `select(…)`,
//! `by(…)`, `coalesce()` and `{ … }`. spanblame adds `change.commit`, `change.author`,
//! `change.review`, `change.blame.commit`, `change.blame.author` and `deploy.id`, whose values
//! the caller supplies ([`Extensions`]). Metrics queries, arithmetic and the event, link and
//! instrumentation scopes are refused with a message that names them.
//!
//! Precedence, loosest first: `|`; `&&` and `||` alike, left to right (as Tempo's grammar has
//! them); the structural operators and comparisons; `!`. Regular expressions match the whole
//! text (`name =~ "GET .*"`).
//!
//! May depend on: `model` and `regex`. **Never:** IO, a clock, or a store: the caller brings
//! the trace and the values only it knows.

mod ast;
mod eval;
mod lex;
mod parse;

#[cfg(test)]
mod tests;

use std::fmt;

pub use ast::{
    Aggregate, Attribute, AttributeScope, BinaryOp, CHANGE_FIELDS, ChangeField, Field, INTRINSICS,
    Intrinsic, Pipeline, SpansetExpr, SpansetOp, Stage, Static, duration_text,
};
pub use eval::{Condition, Extensions, NoExtensions, Spanset, Trace};

/// The longest query read; longer ones are refused before lexing.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// A parsed query, with its regular expressions compiled once.
#[derive(Debug, Clone)]
pub struct Query {
    pub pipeline: Pipeline,
    regexes: eval::Regexes,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pipeline)
    }
}

/// Reads a TraceQL query.
pub fn parse(text: &str) -> Result<Query, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(
            ParseError::new(MAX_QUERY_BYTES, "a query longer than 16 KiB", None).located(text)
        );
    }
    let tokens = lex::tokens(text).map_err(|e| e.located(text))?;
    let pipeline = parse::Parser::new(text, tokens).query().map_err(|e| e.located(text))?;
    let regexes = eval::Regexes::of(&pipeline);
    Ok(Query { pipeline, regexes })
}

/// Why a query could not be read: where, what was found, and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the query.
    pub position: usize,
    /// 1-based character column of `position`.
    pub column: usize,
    /// What was found there, as in "an unknown word `foo`".
    pub found: String,
    pub hint: Option<String>,
}

impl ParseError {
    pub(crate) fn new(position: usize, found: &str, hint: Option<&str>) -> ParseError {
        ParseError { position, column: 0, found: found.to_owned(), hint: hint.map(str::to_owned) }
    }

    fn located(mut self, text: &str) -> ParseError {
        let position = self.position.min(text.len());
        let prefix = text.get(..position).unwrap_or(text);
        self.column = prefix.chars().count() + 1;
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceQL: {} at column {}", self.found, self.column)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}
