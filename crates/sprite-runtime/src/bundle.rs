//! Writing an OCI bundle's `config.json`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Result, RuntimeError};

/// Writes `config.json` into `bundle_dir` (created 0700), atomically:
/// runc never reads a half-written file.
pub fn write_config(bundle_dir: &Path, spec: &Spec) -> Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(bundle_dir)
        .map_err(|e| RuntimeError::io("mkdir", bundle_dir, e))?;
    let path = bundle_dir.join("config.json");
    let tmp = bundle_dir.join(".config.json.tmp");
    let json = serde_json::to_vec_pretty(spec).map_err(|source| RuntimeError::Json {
        what: format!("serialize {}", path.display()),
        source,
    })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| RuntimeError::io("create", &tmp, e))?;
    file.write_all(&json)
        .map_err(|e| RuntimeError::io("write", &tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| RuntimeError::io("rename", &path, e))?;
    Ok(path)
}
