//! The SQL layer on PostgreSQL: a small pool of connections, statements prepared once per
//! connection, values bound as the type PostgreSQL infers for each placeholder, and errors
//! sorted into "unavailable" (the server is down, restarting or full: retry) and the rest.
//!
//! Every write runs in a transaction that first takes one advisory lock
//! ([`WRITE_LOCK`]), so writes from every replica are serialised exactly as SQLite
//! serialises them in one process: each metadata module reasons about one writer at a time
//! on either back-end. Metadata writes are small and few (catalog flushes, webhooks, looks,
//! audit batches), so the lock costs little.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{GenericClient, NoTls, Statement};

use crate::StoreError;
use crate::sql::{Executor, Row, Value, numbered_placeholders};

/// The advisory lock every metadata write holds (an arbitrary constant: "spanblame" in ASCII).
const WRITE_LOCK: i64 = 0x7370_616e_626c_616d;

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A `postgres://user:password@host:port/database` URL or a `host=… dbname=…` string.
    pub url: String,
    /// Connections this process keeps at most.
    pub max_connections: usize,
    /// The longest a connection attempt, or a wait for a free connection, may take.
    pub timeout: Duration,
}

impl PostgresOptions {
    /// `url`, 8 connections, a 10 s timeout.
    pub fn new(url: &str) -> PostgresOptions {
        PostgresOptions {
            url: url.to_owned(),
            max_connections: 8,
            timeout: Duration::from_secs(10),
        }
    }

    /// Checks the URL's form without connecting.
    pub fn check(&self) -> Result<(), StoreError> {
        Pool::new(self).map(|_| ())
    }

    /// The URL with its password replaced, for messages and logs.
    pub fn display_url(&self) -> String {
        redact_password(&self.url)
    }
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &self.display_url())
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; `password=secret` → `password=***`.
pub(crate) fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|pair| if pair.starts_with("password=") { "password=***" } else { pair })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A connection and the statements prepared on it.
struct Connection {
    client: postgres::Client,
    statements: HashMap<String, Statement>,
}

struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

/// Connections shared by the threads of one process.
pub(crate) struct Pool {
    config: postgres::Config,
    url: String,
    max_connections: usize,
    timeout: Duration,
    state: Mutex<PoolState>,
    returned: Condvar,
}

impl Pool {
    /// Checks the URL; connects on first use.
    pub(crate) fn new(options: &PostgresOptions) -> Result<Arc<Pool>, StoreError> {
        let url = options.display_url();
        let mut config: postgres::Config = options.url.parse().map_err(|e| {
            StoreError::Metadata(format!(
                "the PostgreSQL URL `{url}` is not valid ({e}); write it as postgres://user:password@host:5432/database"
            ))
        })?;
        config.connect_timeout(options.timeout);
        if config.get_application_name().is_none() {
            config.application_name("spanblame");
        }
        Ok(Arc::new(Pool {
            config,
            url,
            max_connections: options.max_connections.max(1),
            timeout: options.timeout,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            returned: Condvar::new(),
        }))
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Runs `work` on a connection, outside any transaction.
    pub(crate) fn read<T>(
        &self,
        work: impl FnOnce(&mut dyn Executor) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        blocking(|| {
            let mut conn = self.get()?;
            let Connection { client, statements } = conn.connection();
            work(&mut Pg { client, statements, url: &self.url })
        })
    }

    /// Runs `work` in a transaction holding the write lock; commits when it returns `Ok`.
    pub(crate) fn write<T>(
        &self,
        work: impl FnOnce(&mut dyn Executor) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(WRITE_LOCK, work)
    }

    /// Runs `work` in a transaction holding advisory lock `lock`.
    pub(crate) fn transaction<T>(
        &self,
        lock: i64,
        work: impl FnOnce(&mut dyn Executor) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        blocking(|| {
            let mut conn = self.get()?;
            let Connection { client, statements } = conn.connection();
            let mut tx = client.transaction().map_err(|e| error(&self.url, e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
                .map_err(|e| error(&self.url, e))?;
            let out = work(&mut Pg { client: &mut tx, statements, url: &self.url })?;
            tx.commit().map_err(|e| error(&self.url, e))?;
            Ok(out)
        })
    }

    fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled { pool: self, conn: Some(conn) });
            }
            if state.open < self.max_connections {
                state.open += 1;
                drop(state);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        conn: Some(Connection { client, statements: HashMap::new() }),
                    }),
                    Err(e) => {
                        self.state.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                        self.returned.notify_one();
                        Err(error(&self.url, e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable {
                    engine: "PostgreSQL",
                    url: self.url.clone(),
                    reason: format!(
                        "all {} connections stayed busy for {:?}",
                        self.max_connections, self.timeout
                    ),
                });
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A connection borrowed from the pool; a broken one is dropped instead of returned.
struct Pooled<'p> {
    pool: &'p Pool,
    conn: Option<Connection>,
}

impl Pooled<'_> {
    fn connection(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("INVARIANT: a pooled connection is taken only on drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        if conn.client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}

/// Runs blocking client calls from anywhere: on a runtime worker thread it first tells
/// tokio the thread will block (the client drives its own small runtime).
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

struct Pg<'a, C: GenericClient> {
    client: &'a mut C,
    statements: &'a mut HashMap<String, Statement>,
    url: &'a str,
}

impl<C: GenericClient> Pg<'_, C> {
    fn prepare(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement =
            self.client.prepare(&numbered_placeholders(sql)).map_err(|e| error(self.url, e))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl<C: GenericClient> Executor for Pg<'_, C> {
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        let statement = self.prepare(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|v| v as _).collect();
        self.client.execute(&statement, &params).map_err(|e| error(self.url, e))
    }

    fn batch(&mut self, script: &str) -> Result<(), StoreError> {
        self.client.batch_execute(script).map_err(|e| error(self.url, e))
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        let statement = self.prepare(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|v| v as _).collect();
        let rows = self.client.query(&statement, &params).map_err(|e| error(self.url, e))?;
        let columns: Arc<[String]> =
            statement.columns().iter().map(|c| c.name().to_owned()).collect();
        rows.iter()
            .map(|row| {
                let values = (0..columns.len())
                    .map(|i| read(row, i).map_err(|e| error(self.url, e)))
                    .collect::<Result<_, _>>()?;
                Ok(Row::new(Arc::clone(&columns), values))
            })
            .collect()
    }
}

fn read(row: &postgres::Row, i: usize) -> Result<Value, postgres::Error> {
    fn or_null<T>(value: Option<T>, to: impl FnOnce(T) -> Value) -> Value {
        value.map_or(Value::Null, to)
    }
    Ok(match *row.columns()[i].type_() {
        Type::INT8 => or_null(row.try_get::<_, Option<i64>>(i)?, Value::Int),
        Type::INT4 => or_null(row.try_get::<_, Option<i32>>(i)?, |v| Value::Int(v.into())),
        Type::INT2 => or_null(row.try_get::<_, Option<i16>>(i)?, |v| Value::Int(v.into())),
        Type::BOOL => or_null(row.try_get::<_, Option<bool>>(i)?, |v| Value::Int(v.into())),
        Type::FLOAT8 => or_null(row.try_get::<_, Option<f64>>(i)?, Value::Real),
        Type::FLOAT4 => or_null(row.try_get::<_, Option<f32>>(i)?, |v| Value::Real(v.into())),
        Type::BYTEA => or_null(row.try_get::<_, Option<Vec<u8>>>(i)?, Value::Bytes),
        // Text, and anything else the client can read as text (names, varchar).
        _ => or_null(row.try_get::<_, Option<String>>(i)?, Value::Text),
    })
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound as {ty}").into()),
            },
            Value::Real(r) => match *ty {
                Type::FLOAT8 => r.to_sql(ty, out),
                Type::FLOAT4 => (*r as f32).to_sql(ty, out),
                _ => Err(format!("a real cannot be bound as {ty}").into()),
            },
            Value::Text(text) if <&str as ToSql>::accepts(ty) => text.as_str().to_sql(ty, out),
            Value::Text(_) => Err(format!("text cannot be bound as {ty}").into()),
            Value::Bytes(bytes) if *ty == Type::BYTEA => bytes.as_slice().to_sql(ty, out),
            Value::Bytes(_) => Err(format!("bytes cannot be bound as {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// SQLSTATE classes and codes that mean "the server cannot serve now; the same call may
/// succeed later": connection exceptions, insufficient resources, operator intervention
/// (shutdown, restart), serialization failures and deadlocks.
fn is_transient_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code == "40001"
        || code == "40P01"
}

pub(crate) fn error(url: &str, e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let reason = match db.detail() {
            Some(detail) => format!("{} ({}): {detail}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        };
        return if is_transient_code(db.code().code()) {
            StoreError::Unavailable { engine: "PostgreSQL", url: url.to_owned(), reason }
        } else {
            StoreError::Engine { engine: "PostgreSQL", url: url.to_owned(), reason }
        };
    }
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    let mut io = false;
    while let Some(cause) = source {
        io |= cause.is::<std::io::Error>();
        reason.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let text = reason.to_ascii_lowercase();
    if e.is_closed() || io || text.contains("connect") || text.contains("timeout") {
        StoreError::Unavailable { engine: "PostgreSQL", url: url.to_owned(), reason }
    } else {
        StoreError::Engine { engine: "PostgreSQL", url: url.to_owned(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_password("postgres://spanblame:s3cr:et@db:5432/meta?sslmode=disable"),
            "postgres://spanblame:***@db:5432/meta?sslmode=disable"
        );
        assert_eq!(redact_password("postgres://db/meta"), "postgres://db/meta");
        assert_eq!(
            redact_password("host=db password=s3cret dbname=meta"),
            "host=db password=*** dbname=meta"
        );
        let options = PostgresOptions::new("postgresql://u:hunter2@h/d");
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
