//! The SQL layer on SQLite: statements through `rusqlite`'s statement cache, values mapped
//! to SQLite's storage classes, and the `greatest`/`least` functions PostgreSQL has built in.

use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::StoreError;
use crate::sql::{Executor, Row, Value};

pub(crate) fn error(e: rusqlite::Error) -> StoreError {
    StoreError::Metadata(e.to_string())
}

/// Statements on a connection or a transaction (which dereferences to one).
pub(crate) struct Sqlite<'c>(pub(crate) &'c Connection);

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Bytes(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

fn read(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(bytes) => Value::Bytes(bytes.to_vec()),
    }
}

impl Executor for Sqlite<'_> {
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        let mut statement = self.0.prepare_cached(sql).map_err(error)?;
        let changed = statement.execute(rusqlite::params_from_iter(args)).map_err(error)?;
        Ok(changed as u64)
    }

    fn batch(&mut self, script: &str) -> Result<(), StoreError> {
        self.0.execute_batch(script).map_err(error)
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.0.prepare_cached(sql).map_err(error)?;
        let columns: Arc<[String]> = statement.column_names().map(str::to_owned).collect();
        let mut rows = statement.query(rusqlite::params_from_iter(args)).map_err(error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(error)? {
            let values = (0..columns.len())
                .map(|i| row.get_ref(i).map(read))
                .collect::<Result<_, _>>()
                .map_err(error)?;
            out.push(Row::new(Arc::clone(&columns), values));
        }
        Ok(out)
    }
}

/// `greatest(a, b, …)` and `least(a, b, …)` as PostgreSQL defines them: NULLs are ignored,
/// the answer is NULL only when every argument is.
pub(crate) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    for (name, pick_greater) in [("greatest", true), ("least", false)] {
        conn.create_scalar_function(
            name,
            -1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            move |ctx| {
                let mut best: Option<rusqlite::types::Value> = None;
                for i in 0..ctx.len() {
                    let value: rusqlite::types::Value = ctx.get(i)?;
                    if value == rusqlite::types::Value::Null {
                        continue;
                    }
                    best = Some(match best {
                        None => value,
                        Some(current) => {
                            let greater = compare(&value, &current).is_gt();
                            if greater == pick_greater { value } else { current }
                        }
                    });
                }
                Ok(best.unwrap_or(rusqlite::types::Value::Null))
            },
        )?;
    }
    Ok(())
}

/// SQLite's ordering of two non-NULL values of the storage classes the metadata uses.
fn compare(a: &rusqlite::types::Value, b: &rusqlite::types::Value) -> std::cmp::Ordering {
    use rusqlite::types::Value as V;
    match (a, b) {
        (V::Integer(x), V::Integer(y)) => x.cmp(y),
        (V::Real(x), V::Real(y)) => x.total_cmp(y),
        (V::Integer(x), V::Real(y)) => (*x as f64).total_cmp(y),
        (V::Real(x), V::Integer(y)) => x.total_cmp(&(*y as f64)),
        (V::Text(x), V::Text(y)) => x.cmp(y),
        (V::Blob(x), V::Blob(y)) => x.cmp(y),
        // Numbers sort before text, text before blobs.
        (x, y) => rank(x).cmp(&rank(y)),
    }
}

fn rank(value: &rusqlite::types::Value) -> u8 {
    use rusqlite::types::Value as V;
    match value {
        V::Null => 0,
        V::Integer(_) | V::Real(_) => 1,
        V::Text(_) => 2,
        V::Blob(_) => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::args;

    #[test]
    fn greatest_and_least_ignore_nulls_like_postgresql() {
        let conn = Connection::open_in_memory().unwrap();
        register_functions(&conn).unwrap();
        let mut db = Sqlite(&conn);
        let db: &mut dyn Executor = &mut db;
        let pick = |db: &mut dyn Executor, sql: &str| -> Option<i64> {
            db.query_value::<Option<i64>>(sql, args![]).unwrap().flatten()
        };
        assert_eq!(pick(db, "SELECT greatest(3, NULL, 7)"), Some(7));
        assert_eq!(pick(db, "SELECT least(3, NULL, 7)"), Some(3));
        assert_eq!(pick(db, "SELECT greatest(NULL, NULL)"), None);
    }
}
