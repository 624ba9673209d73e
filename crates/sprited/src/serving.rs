//! Which host serves a shared metadata database (`--database postgres://`):
//! one at a time, under the lease of `db::hosts`. A host that finds the
//! lease held waits as a standby and takes over when the holder stops
//! renewing it (`--host-timeout`); the sprites then come back here from
//! their replicated state in the object store, as after a lost disk. A
//! host that learns another took its lease stops its sandboxes and exits,
//! writing nothing more: its writes are fenced by the lease's epoch.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::db::hosts::{Lease, Taken};
use crate::db::{Db, DbError};

/// This host's id: `--host-id`, else the one kept in the data dir (made
/// at first start), so a restart is the same host.
pub fn host_id(given: Option<&str>, file: &Path) -> anyhow::Result<String> {
    if let Some(id) = given {
        return Ok(id.to_string());
    }
    match std::fs::read_to_string(file) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = crate::layout::temp_beside(file);
    std::fs::write(&tmp, &id).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
    Ok(id)
}

/// Takes the serving lease, waiting as a standby while another host
/// holds it. Database errors are retried (the server may be starting).
pub async fn take(
    db: &Arc<Db>,
    host_id: &str,
    advertise: &str,
    ttl: Duration,
) -> anyhow::Result<Lease> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let mut said: Option<String> = None;
    loop {
        let (d, h, a) = (db.clone(), host_id.to_string(), advertise.to_string());
        let taken = tokio::task::spawn_blocking(move || d.take_serving(&h, &a, ttl_ms)).await?;
        match taken {
            Ok(Taken::Yes(lease)) => {
                tracing::info!(
                    host = host_id,
                    epoch = lease.epoch,
                    "this host serves the database"
                );
                return Ok(lease);
            }
            Ok(Taken::HeldBy {
                host_id: holder,
                advertise: at,
                expires_in_ms,
            }) => {
                if said.as_deref() != Some(&holder) {
                    tracing::info!(
                        serving = %holder,
                        at = %at,
                        lease_left_ms = expires_in_ms,
                        "standby: another host serves this database; taking over if it stops renewing its lease"
                    );
                    said = Some(holder);
                }
            }
            Err(e @ DbError::Unavailable(_)) => {
                tracing::warn!(error = %e, "the database cannot be reached; trying again");
            }
            Err(e) => return Err(e).context("taking the serving lease"),
        }
        tokio::time::sleep(Duration::from_millis(500).min(ttl / 3)).await;
    }
}

/// What the renewal found.
enum Renewed {
    Yes,
    /// Another host holds it now.
    Lost,
    /// Not known (the database cannot be reached): tried again.
    Unknown(DbError),
}

fn renew(db: &Db, lease: &Lease, ttl_ms: i64) -> Renewed {
    match db.renew_serving(lease, ttl_ms) {
        Ok(true) => Renewed::Yes,
        Ok(false) => Renewed::Lost,
        Err(e) => Renewed::Unknown(e),
    }
}

/// Renews the lease every third of `ttl`. When it is lost: every sandbox
/// of this host is stopped and the process exits (status 75, EX_TEMPFAIL:
/// a supervisor that starts it again gets a standby).
pub fn spawn_renewal(manager: Arc<crate::manager::Manager>, lease: Lease, ttl: Duration) {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (db, l) = (manager.db.clone(), lease.clone());
            let renewed = tokio::task::spawn_blocking(move || renew(&db, &l, ttl_ms)).await;
            match renewed {
                Ok(Renewed::Yes) => {}
                Ok(Renewed::Unknown(e)) => {
                    tracing::warn!(error = %e, "cannot renew the serving lease; trying again");
                }
                Ok(Renewed::Lost) | Err(_) => {
                    tracing::error!(
                        host = %lease.host_id,
                        epoch = lease.epoch,
                        "another host took this host's serving lease: stopping every sandbox here and exiting, writing nothing more"
                    );
                    manager.stop_every_sandbox().await;
                    std::process::exit(75);
                }
            }
        }
    });
}

/// Gives the lease up at a clean stop, so a standby takes over at once.
pub async fn release(db: Arc<Db>, lease: Lease) {
    let released = tokio::task::spawn_blocking(move || db.release_serving(&lease)).await;
    match released {
        Ok(Ok(())) => tracing::info!("serving lease given up"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot give the serving lease up; it runs out"),
        Err(e) => tracing::warn!(error = %e, "cannot give the serving lease up; it runs out"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_host_id_is_kept_across_starts() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("host.id");
        let a = super::host_id(None, &file).expect("made");
        assert_eq!(super::host_id(None, &file).expect("again"), a);
        assert_eq!(super::host_id(Some("h1"), &file).expect("given"), "h1");
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    }
}
