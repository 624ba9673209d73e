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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sql::{params, Conn, Engine, Value as SqlValue};
use super::{Db, DbError};

/// The tables dumped, each with the column naming the sprite and its
/// primary key (the rows' order in a dump; a test holds it to the schema).
const DUMPED: &[(&str, &str, &str)] = &[
    ("sprites", "id", "id"),
    ("checkpoints", "sprite_id", "sprite_id, id"),
    ("checkpoint_state", "sprite_id", "sprite_id"),
    ("network_policies", "sprite_id", "sprite_id"),
    ("privileges_policies", "sprite_id", "sprite_id"),
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

fn json_of(v: &SqlValue) -> Result<Value, DbError> {
    Ok(match v {
        SqlValue::Null => Value::Null,
        SqlValue::Int(i) => Value::from(*i),
        SqlValue::Real(f) => Value::from(*f),
        SqlValue::Text(t) => Value::from(t.clone()),
        SqlValue::Blob(_) => {
            return Err(DbError::Dump("a blob column cannot be dumped".into()));
        }
    })
}

fn sql_of(v: &Value) -> Result<SqlValue, DbError> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Int(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Int(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => return Err(DbError::Dump(format!("a value {other} in a row"))),
    })
}

/// The rows a query answers, as JSON objects.
fn rows_of(c: &mut dyn Conn, sql: &str, id: &str) -> Result<Vec<Row>, DbError> {
    let mut out = Vec::new();
    for r in c.query(sql, params![id])? {
        let mut row = Row::new();
        for (name, v) in r.columns() {
            row.insert(name.to_string(), json_of(v)?);
        }
        out.push(row);
    }
    Ok(out)
}

/// A table's columns, each with whether it is part of the primary key.
fn columns(c: &mut dyn Conn, table: &str) -> Result<Vec<(String, bool)>, DbError> {
    let sql = match c.engine() {
        Engine::Sqlite => "SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid",
        Engine::Postgres => {
            "SELECT CAST(a.attname AS TEXT),
                    CASE WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid
                                      AND i.indisprimary AND a.attnum = ANY(i.indkey))
                         THEN 1 ELSE 0 END
             FROM pg_attribute a
             WHERE a.attrelid = CAST(CAST(?1 AS TEXT) AS regclass) AND a.attnum > 0
               AND NOT a.attisdropped
             ORDER BY a.attnum"
        }
    };
    c.query_map(sql, params![table], |r| {
        Ok((r.get::<String>(0)?, r.get::<i64>(1)? > 0))
    })
}

/// The key columns of a table, joined for an `ORDER BY` or `ON CONFLICT`.
fn key_of(cols: &[(String, bool)]) -> String {
    cols.iter()
        .filter(|(_, pk)| *pk)
        .map(|(c, _)| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Db {
    /// The sprite's rows (`None` if there is no such sprite); with its
    /// usage summed by hour when `usage` is set.
    pub fn dump_sprite(&self, id: &str, usage: bool) -> Result<Option<SpriteDump>, DbError> {
        let mut tables = self.run(|c| {
            let mut tables = BTreeMap::new();
            // The key from the table, not the catalog: the metadata sweep
            // dumps every sprite whenever anything was written.
            for (table, key, order) in DUMPED {
                let rows = rows_of(
                    c,
                    &format!("SELECT * FROM {table} WHERE {key} = ?1 ORDER BY {order}"),
                    id,
                )?;
                if !rows.is_empty() {
                    tables.insert(table.to_string(), rows);
                }
            }
            Ok(tables)
        })?;
        let Some(sprite) = tables.get("sprites").and_then(|r| r.first()) else {
            return Ok(None);
        };
        let name = sprite
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if usage {
            let rows = self.run(|c| {
                rows_of(
                    c,
                    "SELECT sprite_id, MAX(sprite_name) AS sprite_name, (minute / 60) * 60 AS minute,
                            SUM(cpu_seconds) AS cpu_seconds, SUM(ram_gb_seconds) AS ram_gb_seconds,
                            SUM(hot_gb_seconds) AS hot_gb_seconds, SUM(cold_gb_hours) AS cold_gb_hours
                     FROM usage WHERE sprite_id = ?1 GROUP BY sprite_id, minute / 60 ORDER BY minute",
                    id,
                )
            })?;
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
        self.tx(|c| {
            for (table, rows) in &dump.tables {
                let key = DUMPED
                    .iter()
                    .find(|(t, _, _)| t == table)
                    .map(|(_, k, _)| *k)
                    .or(LOADED_TOO.contains(&table.as_str()).then_some("sprite_id"))
                    .ok_or_else(|| DbError::Dump(format!("unknown table {table}")))?;
                let known = columns(c, table)?;
                let pk = key_of(&known);
                for row in rows {
                    if row.get(key).and_then(Value::as_str) != Some(dump.id.as_str()) {
                        return Err(DbError::Dump(format!("a row of {table} of another sprite")));
                    }
                    if let Some(col) = row.keys().find(|col| !known.iter().any(|(k, _)| k == *col)) {
                        return Err(DbError::Dump(format!("unknown column {table}.{col}")));
                    }
                    let cols: Vec<&str> = row.keys().map(String::as_str).collect();
                    let values = row.values().map(sql_of).collect::<Result<Vec<_>, _>>()?;
                    let marks = (1..=cols.len())
                        .map(|i| format!("?{i}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    // A row of the same key is replaced (usage a destroyed
                    // sprite of this id left behind).
                    let set = cols
                        .iter()
                        .filter(|col| !known.iter().any(|(k, is_pk)| *is_pk && k == *col))
                        .map(|col| format!("{col} = excluded.{col}"))
                        .collect::<Vec<_>>();
                    let on_conflict = if set.is_empty() {
                        "DO NOTHING".to_string()
                    } else {
                        format!("DO UPDATE SET {}", set.join(", "))
                    };
                    // Names checked against the table's own columns above.
                    let sql = format!(
                        "INSERT INTO {table} ({}) VALUES ({marks}) ON CONFLICT ({pk}) {on_conflict}",
                        cols.join(", ")
                    );
                    c.execute(&sql, &values)?;
                }
            }
            Ok(())
        })
    }

    /// Sprites destroyed here whose copies in the object store are still
    /// to remove.
    pub fn forgotten(&self) -> Result<Vec<String>, DbError> {
        self.run(|c| {
            c.query_map(
                "SELECT sprite_id FROM forgotten ORDER BY destroyed_at, sprite_id",
                &[],
                |r| r.get(0),
            )
        })
    }

    /// The destroyed sprite's copies are gone from the store.
    pub fn forget_done(&self, id: &str) -> Result<(), DbError> {
        self.run(|c| c.execute("DELETE FROM forgotten WHERE sprite_id = ?1", params![id]))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::sprites::tests::rec;
    use super::super::{CheckpointRecord, DbError, Snapshot};
    use super::*;
    use crate::db::testing::each_engine;

    #[test]
    fn a_dump_loads_into_an_empty_database_with_every_row() {
        each_engine(|fresh| {
            let a = fresh();
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

            let b = fresh();
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
                    data_bytes: 7,
                    epoch: 0
                })
            );
            // Twice is refused, and so is a row of another sprite.
            assert!(b.load_sprite(&back).is_err());
            let mut other = a.dump_sprite(&r.id, false).expect("dump").expect("some");
            other.id = "id-other".into();
            other.name = "other".into();
            assert!(matches!(b.load_sprite(&other), Err(DbError::Dump(_))));
            assert!(b.get("other").expect("get").is_none());
        });
    }

    /// The order each dumped table's rows go in is its primary key.
    #[test]
    fn dumped_tables_are_ordered_by_their_primary_keys() {
        each_engine(|fresh| {
            let db = fresh();
            for (table, _, order) in DUMPED {
                let pk = db
                    .run(|c| Ok(key_of(&columns(c, table)?)))
                    .expect("columns");
                assert_eq!(&pk, order, "{table}");
            }
        });
    }

    #[test]
    fn a_dump_naming_what_this_schema_lacks_is_refused() {
        each_engine(|fresh| {
            let db = fresh();
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
        });
    }
}
