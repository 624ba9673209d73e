//! Service definitions on the sprite's own filesystem: one JSON file per
//! service under `<state>/services/`, so they survive hibernation and agent
//! restarts and roll back with checkpoints.
//!
//! A file is replaced atomically (temporary, fsync, rename, fsync of the
//! directory): a crash leaves the old definition or the new one, never half
//! of either. Files are root's and mode 0600 (the environment may hold
//! secrets); the directory is 0755.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sprites_api::service::{validate_name, ServiceSpec};

/// Mode of the definitions directory and the logs directory.
pub const DIR_MODE: u32 = 0o755;
/// Mode of a definition file.
const FILE_MODE: u32 = 0o600;
const SUFFIX: &str = ".json";
/// Prefix of temporaries (never a valid service name: names start with a
/// letter or digit).
const TEMP_PREFIX: &str = ".";

/// What is kept of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    #[serde(flatten)]
    pub spec: ServiceSpec,
    /// Set by `stop`, cleared by `start`/`put`/`restart`: a stopped service
    /// is not started at boot.
    #[serde(default)]
    pub stopped: bool,
}

/// The definitions directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Use `dir`, creating it (0755) if needed.
    pub fn open(dir: PathBuf) -> io::Result<Store> {
        ensure_dir(&dir)?;
        Ok(Store { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{SUFFIX}"))
    }

    /// Every readable definition, sorted by name, and a note for each file
    /// that was skipped. Leftover temporaries are removed.
    pub fn load_all(&self) -> (Vec<Record>, Vec<String>) {
        let mut records = Vec::new();
        let mut notes = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                notes.push(format!("{}: {e}", self.dir.display()));
                return (records, notes);
            }
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if file_name.starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(name) = file_name.strip_suffix(SUFFIX) else {
                continue;
            };
            match read_record(&entry.path(), name) {
                Ok(r) => records.push(r),
                Err(why) => notes.push(format!("skipping {}: {why}", entry.path().display())),
            }
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        (records, notes)
    }

    /// Write `record` atomically.
    pub fn save(&self, record: &Record) -> io::Result<()> {
        let body = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        let path = self.path(&record.name);
        let tmp = self.dir.join(format!(
            "{TEMP_PREFIX}{}{SUFFIX}.{}.tmp",
            record.name,
            std::process::id()
        ));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        sync_dir(&self.dir)
    }

    /// Remove a definition; a missing file is not an error.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path(name)) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn read_record(path: &Path, name: &str) -> Result<Record, String> {
    validate_name(name)?;
    let body = fs::read(path).map_err(|e| e.to_string())?;
    let record: Record = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if record.name != name {
        return Err(format!("it names service {:?}, not {name:?}", record.name));
    }
    Ok(record)
}

/// Create `dir` and its parents if missing and give it [`DIR_MODE`].
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

/// Make a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn temp_dir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "sprite-agent-store-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        p
    }

    fn record(name: &str) -> Record {
        Record {
            name: name.into(),
            spec: ServiceSpec {
                cmd: "sleep".into(),
                args: vec!["100".into()],
                needs: vec!["db".into()],
                http_port: Some(8080),
                env: BTreeMap::from([("K".to_string(), "V".to_string())]),
                dir: Some("/tmp".into()),
            },
            stopped: false,
        }
    }

    #[test]
    fn save_load_remove() {
        let dir = temp_dir("rt");
        let sdir = dir.join("services");
        let store = Store::open(sdir.clone()).expect("open");
        let mode = fs::metadata(&sdir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, DIR_MODE);
        let mut web = record("web");
        store.save(&web).expect("save");
        web.stopped = true;
        store.save(&web).expect("save again");
        store.save(&record("api")).expect("save api");
        let file_mode = fs::metadata(sdir.join("web.json"))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(file_mode & 0o777, FILE_MODE);

        // Junk next to them: skipped with a note, temporaries removed.
        fs::write(sdir.join("broken.json"), b"{nope").expect("junk");
        fs::write(sdir.join("other.json"), br#"{"name":"x","cmd":"a"}"#).expect("junk");
        fs::write(sdir.join(".web.json.1.tmp"), b"half").expect("tmp");
        fs::write(sdir.join("README"), b"hi").expect("other file");

        let (records, notes) = store.load_all();
        assert_eq!(records, vec![record("api"), web.clone()]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(!sdir.join(".web.json.1.tmp").exists());

        store.remove("web").expect("remove");
        store.remove("web").expect("remove twice");
        let (records, _) = store.load_all();
        assert_eq!(
            records.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["api"]
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_reads_like_the_api() {
        let json = serde_json::to_value(record("web")).expect("json");
        assert_eq!(json["cmd"], "sleep");
        assert_eq!(json["http_port"], 8080);
        assert_eq!(json["stopped"], false);
        let back: Record = serde_json::from_str(r#"{"name":"w","cmd":"x"}"#).expect("minimal");
        assert!(!back.stopped && back.spec.args.is_empty());
    }
}
