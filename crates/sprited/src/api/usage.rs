//! `GET /v1/sprites/{name}/usage?from=&to=` and `GET /v1/usage?from=&to=`
//! (per UTC day). `from` and `to` are RFC 3339 times or Unix seconds;
//! the default range is the last 30 days. Usage is kept per minute, so the
//! range is widened to whole minutes.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use sprites_api::usage::{Amounts, DayUsage, OrgUsage, SpriteUsage, UsageReport};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::query::Query;
use crate::error::ApiError;
use crate::AppState;

const DEFAULT_RANGE_DAYS: i64 = 30;

fn parse_time(key: &str, v: &str) -> Result<OffsetDateTime, ApiError> {
    if let Ok(secs) = v.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| ApiError::BadRequest(format!("{key}={v}: {e}")));
    }
    OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
        ApiError::BadRequest(format!(
            "{key}={v:?} is not an RFC 3339 time (2026-01-05T10:30:00Z) or Unix seconds"
        ))
    })
}

/// The range as whole minutes: [from, to).
fn range(raw: Option<&str>) -> Result<(i64, i64), ApiError> {
    let q = Query::parse(raw);
    let now = OffsetDateTime::now_utc();
    let to = match q.get("to") {
        Some(v) => parse_time("to", v)?,
        None => now,
    };
    let from = match q.get("from") {
        Some(v) => parse_time("from", v)?,
        None => to - time::Duration::days(DEFAULT_RANGE_DAYS),
    };
    if from > to {
        return Err(ApiError::BadRequest("from is after to".into()));
    }
    let from_minute = from.unix_timestamp().div_euclid(60);
    let to_minute = (to.unix_timestamp() + 59).div_euclid(60) + i64::from(to == now);
    Ok((from_minute, to_minute))
}

fn stamp(minute: i64) -> String {
    OffsetDateTime::from_unix_timestamp(minute * 60)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn date(day: i64) -> String {
    OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

pub async fn sprite(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<UsageReport>, ApiError> {
    let m = &state.manager;
    let rec = m.get(&name)?;
    let (from, to) = range(raw.as_deref())?;
    let mut total = Amounts::default();
    for row in m.db.usage(Some(&rec.id), from, to, false)? {
        total += row.usage;
    }
    let rates = m.cfg.rates;
    Ok(Json(UsageReport {
        sprite: rec.name,
        from: stamp(from),
        to: stamp(to),
        usage: total,
        cost: rates.cost(&total),
        currency: "USD".into(),
        rates,
    }))
}

pub async fn org(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<OrgUsage>, ApiError> {
    let m = &state.manager;
    let (from, to) = range(raw.as_deref())?;
    let rates = m.cfg.rates;
    let mut days: Vec<DayUsage> = Vec::new();
    let mut total = Amounts::default();
    for row in m.db.usage(None, from, to, true)? {
        let day = date(row.day);
        if days.last().is_none_or(|d| d.date != day) {
            days.push(DayUsage {
                date: day,
                sprites: Vec::new(),
                usage: Amounts::default(),
                cost: Default::default(),
            });
        }
        if let Some(d) = days.last_mut() {
            d.usage += row.usage;
            d.sprites.push(SpriteUsage {
                sprite: row.sprite_name,
                usage: row.usage,
                cost: rates.cost(&row.usage),
            });
        }
        total += row.usage;
    }
    for d in &mut days {
        d.cost = rates.cost(&d.usage);
    }
    Ok(Json(OrgUsage {
        from: stamp(from),
        to: stamp(to),
        days,
        usage: total,
        cost: rates.cost(&total),
        currency: "USD".into(),
        rates,
    }))
}
