//! `sprited purge`: stop every sprite of a data dir, unmount everything
//! and delete it.

use anyhow::Context;
use sprite_runtime::{Driver, Runc};

use crate::config::Config;

/// Stops every sandbox the data dir knows of (and its egress), thaws and
/// unmounts every volume, removes the data dir and the parent cgroups.
pub fn purge(cfg: &Config) -> anyhow::Result<()> {
    let dirs = cfg.layout();
    let (runc, gvisor, _) = crate::driver(cfg)?;
    if !dirs.root().exists() {
        remove_parent_cgroups(&runc);
        return Ok(());
    }
    let cgroups = runc.cgroup_dirs("probe");
    let driver = sprite_runtime::ByIsolation {
        container: std::sync::Arc::new(runc),
        gvisor: gvisor.map(|(g, _)| g),
    };
    // Every sandbox runc or runsc knows of, and every sprite dir: a sandbox
    // whose sprite dir is gone (an interrupted create) must not be left
    // running.
    let mut ids = std::collections::BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(dirs.runsc_state()) {
        ids.extend(entries.flatten().filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".state")?.split_once("_sandbox:")?.0;
            Some(id.to_string())
        }));
    }
    for sub in [dirs.runc_state(), dirs.sprites_dir()] {
        if let Ok(entries) = std::fs::read_dir(sub) {
            ids.extend(
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    // A volume left frozen (a daemon killed mid-checkpoint) holds its
    // writers unkillable: thaw before stopping anything.
    sprite_store::thaw_all(dirs.root()).context("thawing volumes")?;
    for id in ids {
        // stop ends with the container and its egress removed.
        if let Err(err) = driver.stop(&id, std::time::Duration::ZERO) {
            tracing::warn!(sprite = %id, error = %err, "cannot stop the sandbox");
        }
    }
    remove_parents(cgroups);
    sprite_store::unmount_all(dirs.root()).context("unmounting")?;
    std::fs::remove_dir_all(dirs.root())
        .with_context(|| format!("removing {}", dirs.root().display()))?;
    Ok(())
}

/// The parent cgroups (`sprited/`) go once no daemon uses them: rmdir of a
/// cgroup that still has children fails, which is what we want.
fn remove_parent_cgroups(driver: &Runc) {
    remove_parents(driver.cgroup_dirs("probe"));
}

/// Removes the parents of a sandbox's cgroup dirs (`dirs`).
fn remove_parents(dirs: Result<Vec<std::path::PathBuf>, sprite_runtime::RuntimeError>) {
    // Not while another daemon is making a sandbox's cgroup below them.
    let Ok(_lock) = sprite_runtime::cgroup::ParentLock::exclusive() else {
        return;
    };
    if let Ok(dirs) = dirs {
        for parent in dirs.iter().filter_map(|d| d.parent()) {
            let _ = std::fs::remove_dir(parent);
        }
    }
}
