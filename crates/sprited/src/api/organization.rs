//! `GET /v1/organization`: the one organization this daemon serves, its
//! configured limits (0 in the config is no limit, left out here) and its
//! sprites by status.

use axum::extract::State;
use axum::Json;
use sprites_api::organization::{OrgLimits, Organization, SpriteCounts};

use super::sprites::{org_counts, ORGANIZATION};
use crate::AppState;

pub async fn get(State(state): State<AppState>) -> Json<Organization> {
    let cfg = &state.manager.cfg;
    let set = |n: u64| (n > 0).then_some(n);
    let c = org_counts(&state.manager);
    Json(Organization {
        name: ORGANIZATION.into(),
        limits: OrgLimits {
            max_sprites: set(cfg.max_sprites),
            max_running: set(cfg.max_running),
            create_rate_per_minute: set(cfg.create_rate_per_minute),
        },
        counts: SpriteCounts {
            running: c.running,
            warm: c.warm,
            cold: c.cold,
            total: c.running + c.warm + c.cold,
        },
    })
}
