//! Replicas: the base of continuous replication. A replication clones the
//! sprite's volume as it is on disk at that instant (FICLONE, no freeze,
//! no stop: what a power cut would have left, which ext4's journal makes
//! whole on the next mount), sends the chunks that changed since the last
//! one, and keeps the clone as the next one's base. What changed is read
//! from the two files' extents ([`crate::changed_chunks`]), never from
//! their bytes, so an idle sprite costs one FIEMAP.
//!
//! The base is named by the time of the snapshot it was sent as
//! (`replica-<unix ms>.img`): whoever records snapshots names the one to
//! compare with, and a crash between keeping a new base and recording its
//! snapshot leaves two files, the unrecorded one removed by the next round.

use std::fs::File;
use std::path::PathBuf;

use crate::checkpoint::publish;
use crate::error::{IoContext, Result};
use crate::reflink;
use crate::store::Store;
use crate::validate_name;

const TMP: &str = ".replica.tmp";

impl Store {
    /// The kept base of the snapshot taken at `at` (unix ms).
    pub fn replica_path(&self, id: &str, at: u64) -> PathBuf {
        self.layout
            .pool_sprite_dir(id)
            .join(format!("replica-{at}.img"))
    }

    /// Clones the sprite's volume as it is on disk now into a new file
    /// (fsynced: a base must be what it says after a crash) and answers
    /// its path; [`Store::keep_replica`] keeps it once sent.
    pub fn clone_for_replica(&self, id: &str) -> Result<PathBuf> {
        validate_name(id)?;
        let src = self.layout.volume_image(id);
        let tmp = self.layout.pool_sprite_dir(id).join(TMP);
        let _ = std::fs::remove_file(&tmp);
        let src_file = File::open(&src).ctx("open", &src)?;
        let result = (|| {
            let dst = reflink::new_file(&tmp)?;
            reflink::clone_file(&src_file, &dst).ctx("FICLONE", &tmp)?;
            dst.sync_all().ctx("fsync", &tmp)
        })();
        match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Keeps a sent clone as the base of the snapshot taken at `at`.
    pub fn keep_replica(&self, id: &str, clone: &std::path::Path, at: u64) -> Result<()> {
        validate_name(id)?;
        publish(clone, &self.replica_path(id, at), true)
    }

    /// Removes every base but the one of `keep` (and any unsent clone).
    pub fn drop_replicas_except(&self, id: &str, keep: Option<u64>) -> Result<()> {
        validate_name(id)?;
        let dir = self.layout.pool_sprite_dir(id);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx("read", &dir),
        };
        let keep = keep.map(|at| format!("replica-{at}.img"));
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_base = name.starts_with("replica-") && name.ends_with(".img");
            if (is_base && keep.as_deref() != Some(&name)) || name == TMP {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).ctx("remove", &path),
                }
            }
        }
        Ok(())
    }

    /// Chunks of the volume (as on disk now) that may differ from the
    /// base of the snapshot taken at `at`; `None` when that base is gone.
    pub fn volume_changes(&self, id: &str, at: u64, chunk: u64) -> Result<Option<Vec<u64>>> {
        validate_name(id)?;
        let base = self.replica_path(id, at);
        if !base.exists() {
            return Ok(None);
        }
        crate::changed_chunks(&base, &self.layout.volume_image(id), chunk).map(Some)
    }

    /// Chunks of a fresh clone that differ from the base of `at`; `None`
    /// when that base is gone.
    pub fn clone_changes(
        &self,
        id: &str,
        at: u64,
        clone: &std::path::Path,
        chunk: u64,
    ) -> Result<Option<Vec<u64>>> {
        validate_name(id)?;
        let base = self.replica_path(id, at);
        if !base.exists() {
            return Ok(None);
        }
        crate::changed_chunks(&base, clone, chunk).map(Some)
    }
}
