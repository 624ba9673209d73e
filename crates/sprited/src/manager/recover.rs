//! What the object store keeps of the metadata, and a host brought back
//! from the store alone (a lost disk, `meta.db` included, or a new host).
//!
//! Each sprite has a document `meta/sprites/<id>.json`: its rows (name,
//! image, config, URL settings, network and privileges policies, labels,
//! environment, checkpoint records, usage summed by hour; see
//! [`crate::db::SpriteDump`]). It is written when those rows change (a
//! sweep compares a hash of them every replication tick), after every
//! replication of the sprite (usage as of then), and by every eviction;
//! a destroy deletes it. API tokens are kept in `meta/tokens.json` as the
//! BLAKE3 hashes the database keeps, never the secrets: every token goes
//! on working after a recovery, and reading the store gives no token.
//!
//! A recovery (`sprited recover`, or `--recover` at start) makes every
//! sprite the store keeps and the database does not know: the rows of its
//! document, its newest replicated snapshot as its volume (or, without
//! one, the volume its last eviction left), every checkpoint whose image
//! is in the store, every snapshot still kept. It comes back evicted: its
//! first request wakes it from the store, as any evicted sprite. One
//! sprite's rows load in one transaction: a crash mid-recovery leaves each
//! sprite whole or absent, and a second run completes it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cold::{checkpoint_manifest, volume_manifest};
use super::replicate::snapshot_manifest;
use super::{lock, Manager};
use crate::db::{SpriteDump, SpriteRecord, TokenRow};
use crate::error::Error;
use crate::time::now_rfc3339;

/// Where sprite `id`'s metadata document is.
pub(crate) fn meta_doc(id: &str) -> String {
    format!("meta/sprites/{id}.json")
}

const SPRITES_DOCS: &str = "meta/sprites";
const TOKENS_DOC: &str = "meta/tokens.json";
const FORMAT: u32 = 2;

/// A sprite's metadata document.
#[derive(Serialize, Deserialize)]
struct MetaDoc {
    format: u32,
    written_at: String,
    sprite: SpriteDump,
}

/// The API tokens' document.
#[derive(Serialize, Deserialize)]
struct TokensDoc {
    format: u32,
    tokens: Vec<StoredToken>,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct StoredToken {
    id: String,
    name: String,
    /// BLAKE3 of the secret, as the database keeps it.
    hash: String,
    created_at: String,
    scope: Option<String>,
}

/// What the metadata sweep remembers between rounds.
#[derive(Default)]
pub(crate) struct MetaSweep {
    /// The database's generation at the last complete round.
    generation: Option<u64>,
    /// Hash of the tokens' document as last written.
    tokens: Option<blake3::Hash>,
}

/// What a recovery brought back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverReport {
    /// Sprites brought back, by name.
    pub sprites: Vec<String>,
    /// Checkpoints brought back (their images in the store).
    pub checkpoints: usize,
    /// Checkpoints whose image never reached the store: dropped.
    pub checkpoints_lost: usize,
    /// Sprites the store keeps that could not be brought back, and why.
    pub failed: Vec<(String, String)>,
    /// API tokens brought back (as hashes).
    pub tokens: usize,
}

/// A manifest `name` of sprite `id` split into the epoch it was written
/// under and what it is (`volume`, `snapshots/<at>`, `checkpoints/<id>`):
/// `sprites/<id>/<what>` (epoch 0) or `sprites/<id>/e<epoch>/<what>`.
fn manifest_of<'a>(id: &str, name: &'a str) -> Option<(i64, &'a str)> {
    let rest = name
        .strip_prefix("sprites/")?
        .strip_prefix(id)?
        .strip_prefix('/')?;
    if let Some(after) = rest.strip_prefix('e') {
        if let Some((n, what)) = after.split_once('/') {
            if let Ok(epoch) = n.parse::<i64>() {
                return Some((epoch, what));
            }
        }
    }
    Some((0, rest))
}

fn hash_of(v: &impl Serialize) -> Result<blake3::Hash, Error> {
    let bytes = serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encoding: {e}")))?;
    Ok(blake3::hash(&bytes))
}

impl Manager {
    /// Writes the sprite's metadata document (usage as of now). Also makes
    /// sure the store keeps its base image, so a host without it can wake
    /// the sprite.
    pub(super) async fn put_meta(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let what = format!("keeping sprite {}'s metadata in the object store", rec.name);
        let Some(dump) = self.db.dump_sprite(&rec.id, true)? else {
            return Ok(());
        };
        let Some(bare) = self.db.dump_sprite(&rec.id, false)? else {
            return Ok(());
        };
        let hash = hash_of(&bare)?;
        if let Err(e) = self.keep_image(&rec.image).await {
            tracing::warn!(sprite = %rec.name, image = %rec.image, error = %e, "cannot keep the base image in the object store");
        }
        let doc = MetaDoc {
            format: FORMAT,
            written_at: now_rfc3339(),
            sprite: dump,
        };
        let bytes =
            serde_json::to_vec(&doc).map_err(|e| Error::Internal(format!("encoding: {e}")))?;
        // Not from a host whose membership ran out (see `Db::check_live`).
        self.db.check_live()?;
        self.cold
            .put_doc(&meta_doc(&rec.id), bytes)
            .await
            .map_err(Error::cold(&what))?;
        // Destroyed meanwhile: its removal may have run before this put.
        if self.db.get_by_id(&rec.id)?.is_none() {
            let _ = self.cold.delete_doc(&meta_doc(&rec.id)).await;
            return Ok(());
        }
        if let Some(slot) = self.existing_slot(&rec.id) {
            slot.replication().meta_written = Some(hash);
        }
        Ok(())
    }

    /// Writes the documents of every sprite whose rows changed since they
    /// were last written, and the tokens' document if it changed.
    async fn meta_sweep(&self) -> Result<(), Error> {
        let generation = self.db.generation()?;
        if lock(&self.meta_sweep).generation == Some(generation) {
            return Ok(());
        }
        let mut failed = None;
        for rec in self.db.mine()? {
            let Some(slot) = self.existing_slot(&rec.id) else {
                continue;
            };
            let Some(bare) = self.db.dump_sprite(&rec.id, false)? else {
                continue;
            };
            if slot.replication().meta_written == Some(hash_of(&bare)?) {
                continue;
            }
            if let Err(e) = self.put_meta(&rec).await {
                failed = Some(e);
            }
        }
        let tokens: Vec<StoredToken> = self
            .db
            .tokens()?
            .into_iter()
            .map(|t| StoredToken {
                id: t.id,
                name: t.name,
                hash: t.hash,
                created_at: t.created_at,
                scope: t.scope,
            })
            .collect();
        let doc = TokensDoc { format: 1, tokens };
        let hash = hash_of(&doc)?;
        if lock(&self.meta_sweep).tokens != Some(hash) {
            let bytes =
                serde_json::to_vec(&doc).map_err(|e| Error::Internal(format!("encoding: {e}")))?;
            match self.cold.put_doc(TOKENS_DOC, bytes).await {
                Ok(()) => lock(&self.meta_sweep).tokens = Some(hash),
                Err(e) => {
                    failed = Some(Error::cold("keeping the API tokens in the object store")(e))
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => {
                lock(&self.meta_sweep).generation = Some(generation);
                Ok(())
            }
        }
    }

    /// Keeps the metadata in the store for as long as the manager lives
    /// (every replication tick; every 10 s without replication).
    pub fn spawn_meta_sweep(self: &Arc<Self>) {
        let every = self.cfg.replicate_every;
        let tick = if every.is_zero() {
            Duration::from_secs(10)
        } else {
            (every / 3).clamp(Duration::from_millis(200), Duration::from_secs(10))
        };
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                ticks.tick().await;
                let Some(m) = me.upgrade() else { break };
                match m.meta_sweep().await {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot keep the metadata in the object store; retrying");
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// Brings back every sprite the store keeps and the database does not
    /// know (but for sprites destroyed here), and the API tokens.
    pub async fn recover_from_store(&self) -> Result<RecoverReport, Error> {
        let what = "recovering from the object store";
        let mut report = RecoverReport::default();
        let forgotten: BTreeSet<String> = self.db.forgotten()?.into_iter().collect();
        let docs = self
            .cold
            .list_docs(SPRITES_DOCS)
            .await
            .map_err(Error::cold(what))?;
        for key in docs {
            match self.recover_sprite(&key, &forgotten, &mut report).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(doc = %key, error = %e, "cannot bring this sprite back");
                    report.failed.push((key, e.to_string()));
                }
            }
        }
        match self.cold.get_doc(TOKENS_DOC).await {
            Ok(bytes) => {
                let doc: TokensDoc = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Internal(format!("{TOKENS_DOC} in the object store is corrupt: {e}"))
                })?;
                let known: BTreeSet<String> = self.db.tokens()?.into_iter().map(|t| t.id).collect();
                for t in doc.tokens.into_iter().filter(|t| !known.contains(&t.id)) {
                    self.db.insert_token(&TokenRow {
                        id: t.id,
                        name: t.name,
                        hash: t.hash,
                        created_at: t.created_at,
                        scope: t.scope,
                    })?;
                    report.tokens += 1;
                }
            }
            Err(sprite_cold::ColdError::NotFound { .. }) => {}
            Err(e) => return Err(Error::cold(what)(e)),
        }
        tracing::info!(
            sprites = report.sprites.len(),
            checkpoints = report.checkpoints,
            checkpoints_lost = report.checkpoints_lost,
            failed = report.failed.len(),
            tokens = report.tokens,
            "recovered from the object store"
        );
        Ok(report)
    }

    async fn recover_sprite(
        &self,
        key: &str,
        forgotten: &BTreeSet<String>,
        report: &mut RecoverReport,
    ) -> Result<(), Error> {
        let what = format!("recovering {key}");
        let bytes = self.cold.get_doc(key).await.map_err(Error::cold(&what))?;
        let doc: MetaDoc = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Internal(format!(
                "{key} is not a sprite's metadata as this release writes it ({e}); a start of \
                 the sprited that kept it rewrites it"
            ))
        })?;
        let mut dump = doc.sprite;
        let id = dump.id.clone();
        if key != meta_doc(&id) {
            return Err(Error::Internal(format!("{key} holds sprite {id}")));
        }
        // Both become paths and names here: only what this host makes.
        if uuid::Uuid::parse_str(&id).is_err() {
            return Err(Error::Internal(format!("{key}: {id:?} is not a sprite id")));
        }
        sprites_api::name::validate(&dump.name)
            .map_err(|e| Error::Internal(format!("{key}: {e}")))?;
        if forgotten.contains(&id) || self.db.get_by_id(&id)?.is_some() {
            return Ok(());
        }

        // Every manifest of the sprite, by the epoch it was written under
        // (see `cold::sprite_prefix`): its snapshots, newest first; the
        // newest copy of its evicted volume and of each checkpoint.
        let listed = self
            .cold
            .list_manifests(&format!("sprites/{id}/"))
            .await
            .map_err(Error::cold(&what))?;
        let mut ats: Vec<(u64, i64)> = Vec::new();
        let mut volume_epoch: Option<i64> = None;
        let mut stored: std::collections::BTreeMap<String, i64> = Default::default();
        for name in &listed {
            let Some((epoch, rest)) = manifest_of(&id, name) else {
                continue;
            };
            if let Some(at) = rest.strip_prefix("snapshots/").and_then(|a| a.parse().ok()) {
                ats.push((at, epoch));
            } else if rest == "volume" {
                volume_epoch = volume_epoch.max(Some(epoch));
            } else if let Some(ck) = rest.strip_prefix("checkpoints/") {
                let e = stored.entry(ck.to_string()).or_insert(epoch);
                *e = (*e).max(epoch);
            }
        }
        ats.sort_unstable_by(|a, b| b.cmp(a));
        ats.dedup_by_key(|(at, _)| *at);
        let cold = self.cold.clone();
        let id2 = id.clone();
        let snaps: Vec<(u64, i64, sprite_cold::Manifest)> = futures_util::stream::iter(ats)
            .map(|(at, epoch)| {
                let (cold, id) = (cold.clone(), id2.clone());
                async move {
                    let m = cold
                        .get_manifest(&snapshot_manifest(&id, at, epoch))
                        .await?;
                    Ok::<_, sprite_cold::ColdError>((at, epoch, m))
                }
            })
            .buffered(16)
            .try_collect()
            .await
            .map_err(Error::cold(&what))?;
        // Brought back held by no host: its volume under epoch 0.
        let volume = match (snaps.first(), volume_epoch) {
            (Some((_, _, m)), _) => {
                self.cold
                    .put_manifest(&volume_manifest(&id, 0), m)
                    .await
                    .map_err(Error::cold(&what))?;
                m.clone()
            }
            (None, Some(epoch)) => {
                let m = self
                    .cold
                    .get_manifest(&volume_manifest(&id, epoch))
                    .await
                    .map_err(Error::cold(&what))?;
                if epoch != 0 {
                    self.cold
                        .put_manifest(&volume_manifest(&id, 0), &m)
                        .await
                        .map_err(Error::cold(&what))?;
                }
                m
            }
            (None, None) => {
                return Err(Error::Internal(format!(
                    "sprite {} has no copy of its volume in the object store (never \
                     replicated nor evicted)",
                    dump.name
                )))
            }
        };
        let row = |v: Value| -> Result<crate::db::DumpRow, Error> {
            serde_json::from_value(v).map_err(|e| Error::Internal(e.to_string()))
        };
        let mut rows = Vec::new();
        for (at, epoch, m) in &snaps {
            rows.push(row(json!({
                "sprite_id": id, "at_ms": at, "epoch": epoch,
                "stored_bytes": m.stored_bytes(), "data_bytes": m.data_bytes(),
            }))?);
        }
        dump.add_rows("snapshots", rows);
        dump.add_rows(
            "cold_sprites",
            vec![row(json!({
                "sprite_id": id, "evicted_at": now_rfc3339(), "epoch": 0,
                "stored_bytes": volume.stored_bytes(), "data_bytes": volume.data_bytes(),
            }))?],
        );

        // Checkpoints whose image is in the store; the others are gone.
        let checkpoints = dump.tables.remove("checkpoints").unwrap_or_default();
        let mut kept = Vec::new();
        let mut cold_rows = Vec::new();
        for c in checkpoints {
            let ck = c
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Some(&epoch) = stored.get(&ck) else {
                tracing::warn!(sprite = %dump.name, checkpoint = %ck, "the checkpoint never reached the object store; it is not brought back");
                report.checkpoints_lost += 1;
                continue;
            };
            let m = self
                .cold
                .get_manifest(&checkpoint_manifest(&id, &ck, epoch))
                .await
                .map_err(Error::cold(&what))?;
            cold_rows.push(row(json!({
                "sprite_id": id, "id": ck, "epoch": epoch,
                "stored_bytes": m.stored_bytes(), "data_bytes": m.data_bytes(),
            }))?);
            kept.push(c);
        }
        let kept_ids: BTreeSet<String> = kept
            .iter()
            .filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        if let Some(state) = dump.tables.get_mut("checkpoint_state") {
            for s in state {
                let current = s.get("current").and_then(Value::as_str);
                if current.is_some_and(|c| !kept_ids.contains(c)) {
                    s.insert("current".into(), Value::Null);
                }
            }
        }
        let n = kept.len();
        dump.add_rows("checkpoints", kept);
        dump.add_rows("cold_checkpoints", cold_rows);

        self.db.load_sprite(&dump)?;
        self.slot(&id).cold.set_evicted(true);
        report.checkpoints += n;
        report.sprites.push(dump.name.clone());
        tracing::info!(sprite = %dump.name, snapshots = snaps.len(), checkpoints = n, "brought back from the object store");
        Ok(())
    }
}

/// A recovery's report, for a person.
pub fn describe(report: &RecoverReport) -> String {
    format!(
        "{} sprites brought back ({}), {} checkpoints ({} never reached the store), {} API \
         tokens; {} could not be{}",
        report.sprites.len(),
        report.sprites.join(", "),
        report.checkpoints,
        report.checkpoints_lost,
        report.tokens,
        report.failed.len(),
        report
            .failed
            .iter()
            .map(|(k, e)| format!("\n  {k}: {e}"))
            .collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::manifest_of;
    use crate::manager::cold::{checkpoint_manifest, volume_manifest};
    use crate::manager::replicate::snapshot_manifest;

    /// What a holder writes under its epoch reads back as written; epoch
    /// 0 (a database of one host's own) keeps the names of before.
    #[test]
    fn manifest_names_carry_the_epoch_they_were_written_under() {
        let id = "6f1c1e0e-0000-4000-8000-000000000001";
        assert_eq!(volume_manifest(id, 0), format!("sprites/{id}/volume"));
        assert_eq!(
            snapshot_manifest(id, 17, 0),
            format!("sprites/{id}/snapshots/17")
        );
        assert_eq!(
            checkpoint_manifest(id, "v2", 3),
            format!("sprites/{id}/e3/checkpoints/v2")
        );
        for (name, epoch, what) in [
            (volume_manifest(id, 0), 0, "volume"),
            (volume_manifest(id, 12), 12, "volume"),
            (snapshot_manifest(id, 99, 4), 4, "snapshots/99"),
            (checkpoint_manifest(id, "v0", 0), 0, "checkpoints/v0"),
            (checkpoint_manifest(id, "v1", 7), 7, "checkpoints/v1"),
        ] {
            assert_eq!(manifest_of(id, &name), Some((epoch, what)), "{name}");
        }
        assert_eq!(manifest_of(id, "sprites/other/volume"), None);
    }
}
