//! The `usage` table (what each sprite used, per minute) and `meter_state`
//! (where each sprite's meter stood at its last sample).

use super::sql::params;

use super::{Db, DbError};

pub use sprites_api::usage::Amounts as Usage;

/// One sprite's usage since its last sample, and where its meter stands.
#[derive(Debug, Clone)]
pub struct UsageSample {
    pub sprite_id: String,
    pub sprite_name: String,
    /// Unix minute the usage is booked in.
    pub minute: i64,
    pub usage: Usage,
    pub sampled_unix_ms: i64,
    pub cpu_ns: u64,
    pub running: bool,
}

/// A sum of usage (per day when asked: `day` is days since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub day: i64,
    pub sprite_name: String,
    pub usage: Usage,
}

/// The meter's last sample of a sprite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterState {
    pub sampled_unix_ms: i64,
    /// The sandbox's CPU counter then.
    pub cpu_ns: u64,
    pub running: bool,
}

impl Db {
    /// The meter's last sample of a sprite.
    pub fn meter_state(&self, sprite_id: &str) -> Result<Option<MeterState>, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT sampled_unix_ms, cpu_ns, running FROM meter_state WHERE sprite_id = ?1",
                params![sprite_id],
                |r| {
                    Ok(MeterState {
                        sampled_unix_ms: r.get(0)?,
                        cpu_ns: r.get::<i64>(1)? as u64,
                        running: r.get(2)?,
                    })
                },
            )
        })
    }

    /// Adds one round of samples to the usage and records where each
    /// sprite's meter now stands, in one transaction: a crash leaves either
    /// both or neither, so nothing is counted twice.
    pub fn record_usage(&self, samples: &[UsageSample]) -> Result<(), DbError> {
        self.tx(|c| {
        for s in samples {
            c.execute(
                "INSERT INTO usage (sprite_id, sprite_name, minute, cpu_seconds, ram_gb_seconds, hot_gb_seconds, cold_gb_hours)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(sprite_id, minute) DO UPDATE SET
                   cpu_seconds = usage.cpu_seconds + excluded.cpu_seconds,
                   ram_gb_seconds = usage.ram_gb_seconds + excluded.ram_gb_seconds,
                   hot_gb_seconds = usage.hot_gb_seconds + excluded.hot_gb_seconds,
                   cold_gb_hours = usage.cold_gb_hours + excluded.cold_gb_hours",
                params![
                    s.sprite_id,
                    s.sprite_name,
                    s.minute,
                    s.usage.cpu_seconds,
                    s.usage.ram_gb_seconds,
                    s.usage.hot_storage_gb_seconds,
                    s.usage.cold_storage_gb_hours
                ],
            )?;
            c.execute(
                "INSERT INTO meter_state (sprite_id, sampled_unix_ms, cpu_ns, running) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(sprite_id) DO UPDATE SET sampled_unix_ms = excluded.sampled_unix_ms,
                   cpu_ns = excluded.cpu_ns, running = excluded.running",
                params![s.sprite_id, s.sampled_unix_ms, s.cpu_ns as i64, s.running],
            )?;
        }
        Ok(())
        })
    }

    /// Usage summed per sprite name and UTC day (`days`) or over the whole
    /// range, for minutes in [from, to).
    pub fn usage(
        &self,
        sprite_id: Option<&str>,
        from_minute: i64,
        to_minute: i64,
        by_day: bool,
    ) -> Result<Vec<UsageRow>, DbError> {
        let day = if by_day { "minute / 1440" } else { "0" };
        let sql = format!(
            "SELECT {day} AS d, sprite_name, sum(cpu_seconds), sum(ram_gb_seconds), sum(hot_gb_seconds), sum(cold_gb_hours)
             FROM usage WHERE minute >= ?1 AND minute < ?2 AND (CAST(?3 AS TEXT) IS NULL OR sprite_id = ?3)
             GROUP BY d, sprite_name ORDER BY d, sprite_name"
        );
        self.read(|c| {
            c.query_map(&sql, params![from_minute, to_minute, sprite_id], |r| {
                Ok(UsageRow {
                    day: r.get(0)?,
                    sprite_name: r.get(1)?,
                    usage: Usage {
                        cpu_seconds: r.get(2)?,
                        ram_gb_seconds: r.get(3)?,
                        hot_storage_gb_seconds: r.get(4)?,
                        cold_storage_gb_hours: r.get(5)?,
                    },
                })
            })
        })
    }
}
