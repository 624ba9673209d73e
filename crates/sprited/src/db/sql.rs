//! One way to speak SQL to either engine: SQLite (the embedded default) or
//! PostgreSQL (`--database postgres://...`). The table modules write each
//! statement once, in the SQL both engines take (`?N` parameters, `ON
//! CONFLICT` upserts), and ask [`Conn::engine`] only where the engines
//! differ (JSON functions, catalogs). Rows come back as owned [`Value`]s:
//! this database's rows are few and small.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::hosts::Lease;
use super::DbError;

/// Which engine a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A value going into or coming out of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What can be a statement's parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for i32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

/// A statement's parameters, in order: `params![a, b]`.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$($crate::db::sql::ToValue::to_value(&$p)),*] as &[$crate::db::sql::Value]
    };
}
pub(crate) use params;

/// What a column's value can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, DbError>;
}

fn mismatch(v: &Value, want: &str) -> DbError {
    DbError::Type(format!("a column holds {v:?}, read as {want}"))
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(mismatch(other, "text")),
        }
    }
}
impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Int(i) => Ok(*i),
            other => Err(mismatch(other, "an integer")),
        }
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Real(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => Err(mismatch(other, "a number")),
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Int(i) => Ok(*i != 0),
            other => Err(mismatch(other, "a flag")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a result.
#[derive(Debug, Clone)]
pub struct Row {
    names: std::sync::Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// Column `i` (from 0) as a `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        match self.values.get(i) {
            Some(v) => T::from_value(v),
            None => Err(DbError::Type(format!("no column {i} in a row"))),
        }
    }

    /// Column names and values, in the statement's order.
    pub fn columns(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.names.iter().map(String::as_str).zip(&self.values)
    }
}

/// A connection, or a transaction on one.
pub trait Conn {
    fn engine(&self) -> Engine;
    /// Runs one statement; how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    /// Runs one statement; every row it answers.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
}

impl dyn Conn + '_ {
    /// The first row, read by `f`, if there is one.
    pub fn query_opt<T>(
        &mut self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        self.query(sql, params)?.first().map(f).transpose()
    }

    /// Every row, each read by `f`.
    pub fn query_map<T>(
        &mut self,
        sql: &str,
        params: &[Value],
        f: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        self.query(sql, params)?.iter().map(f).collect()
    }
}

/// Refuses a write unless `lease`'s host is still live at its epoch (see
/// [`super::hosts`]).
pub fn check_fence(c: &mut dyn Conn, lease: &Lease) -> Result<(), DbError> {
    super::hosts::check_fence(c, lease)
}

// --- SQLite ---------------------------------------------------------------

/// A SQLite connection (or a transaction: it derefs to one). Statements are
/// prepared once per connection (`prepare_cached`).
pub struct Lite<'a> {
    pub conn: &'a rusqlite::Connection,
    pub writes: &'a AtomicU64,
    /// Checked by each write not already in a transaction that checked it.
    pub fence: Option<&'a Lease>,
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Conn for Lite<'_> {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        if let Some(lease) = self.fence.filter(|_| self.conn.is_autocommit()) {
            let tx = rusqlite::Transaction::new_unchecked(
                self.conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            let mut inner = Lite {
                conn: &tx,
                writes: self.writes,
                fence: None,
            };
            check_fence(&mut inner, lease)?;
            let n = inner.execute(sql, params)?;
            tx.commit()?;
            return Ok(n);
        }
        let n = self
            .conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut st = self.conn.prepare_cached(sql)?;
        let names: std::sync::Arc<[String]> =
            st.column_names().iter().map(|c| c.to_string()).collect();
        let mut rows = st.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(names.len());
            for i in 0..names.len() {
                values.push(from_sqlite(r.get_ref(i)?));
            }
            out.push(Row {
                names: names.clone(),
                values,
            });
        }
        Ok(out)
    }
}

// --- PostgreSQL -----------------------------------------------------------

/// `?N` parameters as PostgreSQL writes them (`$N`); text in quotes is
/// left alone.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            c => out.push(c),
        }
    }
    out
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Text(s), _) => s.as_str().to_sql(ty, out),
            (Value::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (v, ty) => Err(format!("{v:?} cannot be a parameter of type {ty}").into()),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn from_postgres(row: &postgres::Row, i: usize) -> Result<Value, DbError> {
    use postgres::types::Type;
    let ty = row.columns()[i].type_();
    let v = match *ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map(|v| Value::Real(v.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        }
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
        ref other => {
            return Err(DbError::Type(format!(
                "column {} is of type {other}, which sprited does not read",
                row.columns()[i].name()
            )))
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

/// A PostgreSQL client or transaction, with the connection's prepared
/// statements (by their SQL as written here).
pub struct Pg<'a, C: postgres::GenericClient> {
    pub client: &'a mut C,
    pub statements: &'a mut HashMap<String, postgres::Statement>,
    pub writes: &'a AtomicU64,
    /// Checked by each write not already in a transaction that checked it.
    pub fence: Option<&'a Lease>,
}

impl<C: postgres::GenericClient> Pg<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(&to_postgres(sql))?;
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

fn pg_params(params: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl<C: postgres::GenericClient> Conn for Pg<'_, C> {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        if let Some(lease) = self.fence {
            let mut tx = self.client.transaction()?;
            let mut inner = Pg {
                client: &mut tx,
                statements: &mut *self.statements,
                writes: self.writes,
                fence: None,
            };
            check_fence(&mut inner, lease)?;
            let n = inner.execute(sql, params)?;
            tx.commit()?;
            return Ok(n);
        }
        let st = self.statement(sql)?;
        let n = self.client.execute(&st, &pg_params(params))?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(n)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let st = self.statement(sql)?;
        let names: std::sync::Arc<[String]> =
            st.columns().iter().map(|c| c.name().to_string()).collect();
        let rows = self.client.query(&st, &pg_params(params))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let values = (0..names.len())
                .map(|i| from_postgres(r, i))
                .collect::<Result<_, _>>()?;
            out.push(Row {
                names: names.clone(),
                values,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::to_postgres;

    #[test]
    fn parameters_are_renumbered_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?1 AND c = '?2' OR d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' OR d = $12"
        );
    }
}
