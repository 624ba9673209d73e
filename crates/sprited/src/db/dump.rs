//! A sprite's rows as one JSON document: what the object store keeps of
//! the sprite's metadata, so that a host with none of this database (a
//! lost disk) can bring it back. Rows go column by column, by name, so a
//! document written by an older schema loads into a newer one (a column
//! added since takes its default); one from a newer schema is refused.
//!
//! The cold tier's rows (`cold_sprites`, `cold_checkpoints`, `snapshots`)
//! are not dumped: what the store holds is their truth, and the recovery
//! makes them from it. They load with the rest, in one transaction, so a
//! crash in a recovery leaves the sprite whole or absent.

use std::collections::BTreeMap;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params, params_from_iter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Db, DbError};

/// The tables dumped, each with the column naming the sprite.
const DUMPED: &[(&str, &str)] = &[
    ("sprites", "id"),
    ("checkpoints", "sprite_id"),
    ("checkpoint_state", "sprite_id"),
    ("network_policies", "sprite_id"),
    ("privileges_policies", "sprite_id"),
];

/// Tables a recovery may load besides those dumped.
const LOADED_TOO: &[&str] = &["usage", "cold_sprites", "cold_checkpoints", "snapshots"];

/// One row: column name to value.
pub type Row = BTreeMap<String, Value>;

/// A sprite's metadata as the object store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpriteDump {
    /// The schema version of the database it was written from.
    pub schema: u32,
    pub id: String,
    pub name: String,
    /// Rows by table.
    pub tables: BTreeMap<String, Vec<Row>>,
}

impl SpriteDump {
    /// Adds rows to load with the sprite (a table of [`LOADED_TOO`]).
    pub fn add_rows(&mut self, table: &str, rows: Vec<Row>) {
        self.tables.entry(table.into()).or_default().extend(rows);
    }

    /// The rows of one table.
    pub fn rows(&self, table: &str) -> &[Row] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
    }
}

fn json_of(v: ValueRef<'_>) -> Result<Value, DbError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(_) => {
            return Err(DbError::Dump("a blob column cannot be dumped".into()));
        }
    })
}

fn sql_of(v: &Value) -> Result<SqlValue, DbError> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => return Err(DbError::Dump(format!("a value {other} in a row"))),
    })
}

/// The rows a query answers, as JSON objects.
fn rows_of(conn: &rusqlite::Connection, sql: &str, id: &str) -> Result<Vec<Row>, DbError> {
    let mut st = conn.prepare(sql)?;
    let names: Vec<String> = st.column_names().iter().map(|c| c.to_string()).collect();
    let mut rows = st.query(params![id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut row = Row::new();
        for (i, name) in names.iter().enumerate() {
            row.insert(name.clone(), json_of(r.get_ref(i)?)?);
        }
        out.push(row);
    }
    Ok(out)
}

/// The columns a table has.
fn columns(conn: &rusqlite::Connection, table: &str) -> Result<Vec<String>, DbError> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let cols = st.query_map(params![table], |r| r.get::<_, String>(0))?;
    Ok(cols.collect::<Result<_, _>>()?)
}

impl Db {
    /// The sprite's rows (`None` if there is no such sprite); with its
    /// usage summed by hour when `usage` is set.
    pub fn dump_sprite(&self, id: &str, usage: bool) -> Result<Option<SpriteDump>, DbError> {
        let conn = self.lock()?;
        let mut tables = BTreeMap::new();
        for (table, key) in DUMPED {
            let rows = rows_of(
                &conn,
                &format!("SELECT * FROM {table} WHERE {key} = ?1 ORDER BY rowid"),
                id,
            )?;
            if !rows.is_empty() {
                tables.insert(table.to_string(), rows);
            }
        }
        let Some(sprite) = tables.get("sprites").and_then(|r| r.first()) else {
            return Ok(None);
        };
        let name = sprite
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if usage {
            let rows = rows_of(
                &conn,
                "SELECT sprite_id, MAX(sprite_name) AS sprite_name, (minute / 60) * 60 AS minute,
                        SUM(cpu_seconds) AS cpu_seconds, SUM(ram_gb_seconds) AS ram_gb_seconds,
                        SUM(hot_gb_seconds) AS hot_gb_seconds, SUM(cold_gb_hours) AS cold_gb_hours
                 FROM usage WHERE sprite_id = ?1 GROUP BY minute / 60 ORDER BY minute",
                id,
            )?;
            if !rows.is_empty() {
                tables.insert("usage".into(), rows);
            }
        }
        Ok(Some(SpriteDump {
            schema: super::SCHEMA_VERSION,
            id: id.into(),
            name,
            tables,
        }))
    }

    /// Adds a sprite from its dump, every row in one transaction. Refused
    /// when a sprite of that id or name exists, or the dump is of a newer
    /// schema or names a table or column this one does not have.
    pub fn load_sprite(&self, dump: &SpriteDump) -> Result<(), DbError> {
        if dump.schema > super::SCHEMA_VERSION {
            return Err(DbError::TooNew {
                found: dump.schema,
                known: super::SCHEMA_VERSION,
            });
        }
        match dump.rows("sprites") {
            [row] if row.get("name").and_then(Value::as_str) == Some(dump.name.as_str()) => {}
            _ => return Err(DbError::Dump("a dump holds its one sprite's row".into())),
        }
        if self.get_by_id(&dump.id)?.is_some() {
            return Err(DbError::Dump(format!("sprite {} exists already", dump.id)));
        }
        if self.get(&dump.name)?.is_some() {
            return Err(DbError::Duplicate(dump.name.clone()));
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        for (table, rows) in &dump.tables {
            let key = DUMPED
                .iter()
                .find(|(t, _)| t == table)
                .map(|(_, k)| *k)
                .or(LOADED_TOO.contains(&table.as_str()).then_some("sprite_id"))
                .ok_or_else(|| DbError::Dump(format!("unknown table {table}")))?;
            let known = columns(&tx, table)?;
            for row in rows {
                if row.get(key).and_then(Value::as_str) != Some(dump.id.as_str()) {
                    return Err(DbError::Dump(format!("a row of {table} of another sprite")));
                }
                if let Some(c) = row.keys().find(|c| !known.contains(c)) {
                    return Err(DbError::Dump(format!("unknown column {table}.{c}")));
                }
                let cols: Vec<&str> = row.keys().map(String::as_str).collect();
                let values = row.values().map(sql_of).collect::<Result<Vec<_>, _>>()?;
                let marks = (1..=cols.len())
                    .map(|i| format!("?{i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                // Names checked against the table's own columns above.
                let sql = format!(
                    "INSERT OR REPLACE INTO {table} ({}) VALUES ({marks})",
                    cols.join(", ")
                );
                tx.execute(&sql, params_from_iter(values))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Sprites destroyed here whose copies in the object store are still
    /// to remove.
    pub fn forgotten(&self) -> Result<Vec<String>, DbError> {
        let conn = self.lock()?;
        let mut st = conn.prepare("SELECT sprite_id FROM forgotten ORDER BY destroyed_at")?;
        let ids = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// The destroyed sprite's copies are gone from the store.
    pub fn forget_done(&self, id: &str) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute("DELETE FROM forgotten WHERE sprite_id = ?1", params![id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::sprites::tests::rec;
    use super::super::{CheckpointRecord, Db, DbError, Snapshot};
    use super::*;

    #[test]
    fn a_dump_loads_into_an_empty_database_with_every_row() {
        let dir = tempfile::tempdir().expect("dir");
        let a = Db::open(&dir.path().join("a.db")).expect("open a");
        let r = rec("alpha");
        a.insert(&r).expect("insert");
        a.set_network_policy(&r.id, r#"{"rules":[]}"#)
            .expect("policy");
        a.insert_checkpoint(
            &r.id,
            &CheckpointRecord {
                id: "v0".into(),
                seq: 0,
                create_time: "2026-12-04T00:00:00Z".into(),
                source_id: None,
                comment: Some("first".into()),
                is_auto: false,
            },
        )
        .expect("checkpoint");
        let dump = a.dump_sprite(&r.id, true).expect("dump").expect("some");
        assert_eq!(dump.name, "alpha");
        assert!(a.dump_sprite("nosuch", true).expect("dump").is_none());
        // Through JSON, as the store keeps it.
        let text = serde_json::to_vec(&dump).expect("json");
        let mut back: SpriteDump = serde_json::from_slice(&text).expect("parse");
        back.add_rows(
            "snapshots",
            vec![serde_json::from_value(serde_json::json!({
                "sprite_id": r.id, "at_ms": 5, "stored_bytes": 6, "data_bytes": 7
            }))
            .expect("row")],
        );

        let b = Db::open(&dir.path().join("b.db")).expect("open b");
        b.load_sprite(&back).expect("load");
        assert_eq!(b.get("alpha").expect("get"), Some(r.clone()));
        assert_eq!(
            b.network_policy(&r.id).expect("policy").as_deref(),
            Some(r#"{"rules":[]}"#)
        );
        let cks = b.checkpoints(&r.id).expect("checkpoints");
        assert_eq!(cks.len(), 1);
        assert_eq!(cks[0].comment.as_deref(), Some("first"));
        assert_eq!(b.next_checkpoint_seq(&r.id).expect("seq"), 1);
        assert_eq!(
            b.last_snapshot(&r.id).expect("snap"),
            Some(Snapshot {
                at_ms: 5,
                stored_bytes: 6,
                data_bytes: 7
            })
        );
        // Twice is refused, and so is a row of another sprite.
        assert!(b.load_sprite(&back).is_err());
        let mut other = a.dump_sprite(&r.id, false).expect("dump").expect("some");
        other.id = "id-other".into();
        other.name = "other".into();
        assert!(matches!(b.load_sprite(&other), Err(DbError::Dump(_))));
        assert!(b.get("other").expect("get").is_none());
    }

    #[test]
    fn a_dump_naming_what_this_schema_lacks_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::open(&dir.path().join("a.db")).expect("open");
        let r = rec("beta");
        db.insert(&r).expect("insert");
        let dump = db.dump_sprite(&r.id, false).expect("dump").expect("some");
        db.delete(&r.id).expect("delete");

        let mut newer = dump.clone();
        newer.schema += 1;
        assert!(matches!(
            db.load_sprite(&newer),
            Err(DbError::TooNew { .. })
        ));
        let mut column = dump.clone();
        column.tables.get_mut("sprites").expect("sprites")[0]
            .insert("color; DROP TABLE sprites".into(), Value::from(1));
        assert!(matches!(db.load_sprite(&column), Err(DbError::Dump(_))));
        let mut table = dump.clone();
        table.add_rows("tokens", vec![Row::new()]);
        assert!(matches!(db.load_sprite(&table), Err(DbError::Dump(_))));
        assert!(db.get("beta").expect("get").is_none());
        db.load_sprite(&dump).expect("the dump itself loads");
        assert_eq!(db.get("beta").expect("get"), Some(r));
    }
}
