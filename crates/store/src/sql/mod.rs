//! One SQL layer under the metadata modules, so each statement is written once and runs on
//! SQLite (one process, the default) and on PostgreSQL (a fleet of replicas).
//!
//! Statements are written in the dialect both accept:
//! - placeholders `?1`, `?2`, …, rewritten to `$1`, `$2`, … for PostgreSQL;
//! - `ON CONFLICT (columns) DO UPDATE` with its target, `ON CONFLICT DO NOTHING`, `RETURNING`;
//! - `greatest(a, b)` / `least(a, b)`, which SQLite gets as functions registered on open;
//! - integers for booleans (0 and 1; compare with `= 1`, never a bare column);
//! - no JSON functions: a list is spelled out as placeholders ([`in_list`]);
//! - an optional filter is `(CAST(?1 AS TEXT) IS NULL OR column = ?1)`: PostgreSQL must
//!   know a placeholder's type where it first meets it;
//! - sums cast to `BIGINT` (PostgreSQL sums integers into `numeric`).
//!
//! Values cross the boundary as [`Value`]; rows come back whole as [`Row`]s (metadata
//! answers are small; the one long walk, the audit chain, pages).

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::sync::Arc;

use crate::StoreError;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
        }
    }
}

/// What can be bound to a placeholder. Unsigned integers are stored as `i64` bit patterns
/// (times in nanoseconds fit until 2262).
pub(crate) trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for u64 {
    fn to_value(&self) -> Value {
        Value::Int(*self as i64)
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for u16 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}
impl ToValue for [u8; 32] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// The values of a statement's placeholders, in order: `args![service, at_unix_nanos]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::sql::ToValue::to_value(&$value)),*][..]
    };
}
pub(crate) use args;

/// `?first, ?first+1, …` for `column IN (…)`, and the values to append; an empty list gives
/// `NULL`, which matches nothing.
pub(crate) fn in_list(first: usize, items: &[String]) -> (String, Vec<Value>) {
    if items.is_empty() {
        return ("NULL".to_owned(), Vec::new());
    }
    let placeholders: Vec<String> = (first..first + items.len()).map(|n| format!("?{n}")).collect();
    (placeholders.join(", "), items.iter().map(|item| Value::Text(item.clone())).collect())
}

/// One row of an answer, with its column names.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

/// A column by position or by name.
pub(crate) trait Column: Copy + std::fmt::Display {
    fn position(self, columns: &[String]) -> Option<usize>;
}
impl Column for usize {
    fn position(self, columns: &[String]) -> Option<usize> {
        (self < columns.len()).then_some(self)
    }
}
impl Column for &str {
    fn position(self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
}

impl Row {
    pub(crate) fn new(columns: Arc<[String]>, values: Vec<Value>) -> Row {
        Row { columns, values }
    }

    pub(crate) fn get<T: FromValue>(&self, column: impl Column) -> Result<T, StoreError> {
        let Some(index) = column.position(&self.columns) else {
            return Err(StoreError::Metadata(format!("the answer has no column `{column}`")));
        };
        let value = &self.values[index];
        T::from_value(value).ok_or_else(|| {
            StoreError::Metadata(format!(
                "column `{}` holds {}, expected {}",
                self.columns[index],
                value.kind(),
                T::EXPECTED
            ))
        })
    }
}

/// What can be read from a column.
pub(crate) trait FromValue: Sized {
    const EXPECTED: &'static str;
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for u64 {
    const EXPECTED: &'static str = "an integer";
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|i| i as u64)
    }
}
impl FromValue for u32 {
    const EXPECTED: &'static str = "an integer below 2^32";
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).and_then(|i| u32::try_from(i).ok())
    }
}
impl FromValue for u16 {
    const EXPECTED: &'static str = "an integer below 2^16";
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).and_then(|i| u16::try_from(i).ok())
    }
}
impl FromValue for bool {
    const EXPECTED: &'static str = "0 or 1";
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|i| i != 0)
    }
}
impl FromValue for String {
    const EXPECTED: &'static str = "text";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(text) => Some(text.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    const EXPECTED: &'static str = "bytes";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bytes(bytes) => Some(bytes.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// Runs statements: a connection, or a transaction on one.
pub(crate) trait Executor {
    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError>;
    /// Runs a script of statements without placeholders (a migration).
    fn batch(&mut self, script: &str) -> Result<(), StoreError>;
    /// Runs a query; returns every row.
    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError>;
}

impl dyn Executor + '_ {
    /// The first row, if any.
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        args: &[Value],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row's first column, if there is a row.
    pub(crate) fn query_value<T: FromValue>(
        &mut self,
        sql: &str,
        args: &[Value],
    ) -> Result<Option<T>, StoreError> {
        self.query_opt(sql, args)?.map(|row| row.get(0)).transpose()
    }

    /// Every row, each read by `read`.
    pub(crate) fn query_map<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        read: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, args)?.iter().map(read).collect()
    }
}

/// `?N` placeholders as `$N`, outside string literals and quoted names.
pub(crate) fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes_only() {
        assert_eq!(
            numbered_placeholders("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b IN (?2, ?10)"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b IN ($2, $10)"
        );
    }

    #[test]
    fn an_empty_list_matches_nothing_and_a_list_continues_the_numbering() {
        assert_eq!(in_list(3, &[]).0, "NULL");
        let (sql, values) = in_list(3, &["a".into(), "b".into()]);
        assert_eq!(sql, "?3, ?4");
        assert_eq!(values, [Value::Text("a".into()), Value::Text("b".into())]);
    }
}
