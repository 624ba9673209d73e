//! The `.sprite` file: which sprite a directory (and its subdirectories)
//! works with, as `sprite use` records it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = ".sprite";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpriteFile {
    #[serde(default)]
    pub organization: String,
    pub sprite: String,
}

/// The nearest `.sprite` file in `start` or one of its parents.
pub fn find(start: &Path) -> Result<Option<(PathBuf, SpriteFile)>> {
    for dir in start.ancestors() {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            continue;
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let file: SpriteFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid .sprite file (want {{\"organization\": ..., \"sprite\": ...}})",
                path.display()
            )
        })?;
        return Ok(Some((path, file)));
    }
    Ok(None)
}

/// Write `dir/.sprite`.
pub fn write(dir: &Path, file: &SpriteFile) -> Result<PathBuf> {
    let path = dir.join(FILE_NAME);
    let mut json = serde_json::to_string_pretty(file).context("encoding .sprite")?;
    json.push('\n');
    fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The sprite a command acts on: `-s NAME`, else the nearest `.sprite`.
pub fn resolve_name(flag: Option<&str>, cwd: &Path) -> Result<String> {
    if let Some(name) = flag.map(str::trim).filter(|n| !n.is_empty()) {
        return Ok(name.to_string());
    }
    match find(cwd)? {
        Some((_, file)) if !file.sprite.trim().is_empty() => Ok(file.sprite.trim().to_string()),
        _ => Err(anyhow!(
            "no sprite selected: pass -s NAME or run `sprite use NAME`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    fn file(name: &str) -> SpriteFile {
        SpriteFile {
            organization: "acme".into(),
            sprite: name.into(),
        }
    }

    #[test]
    fn the_flag_wins() {
        let dir = TestDir::new();
        write(dir.path(), &file("from-file")).expect("write");
        assert_eq!(
            resolve_name(Some("flagged"), dir.path()).expect("name"),
            "flagged"
        );
    }

    #[test]
    fn the_nearest_file_of_a_parent_is_found() {
        let dir = TestDir::new();
        let deep = dir.path().join("a/b/c");
        fs::create_dir_all(&deep).expect("mkdir");
        write(dir.path(), &file("top")).expect("write");
        assert_eq!(resolve_name(None, &deep).expect("name"), "top");

        write(&dir.path().join("a"), &file("nearer")).expect("write");
        let (path, found) = find(&deep).expect("find").expect("some");
        assert_eq!(path, dir.path().join("a/.sprite"));
        assert_eq!(found, file("nearer"));
    }

    #[test]
    fn without_a_file_the_error_says_what_to_do() {
        let dir = TestDir::new();
        // A directory named .sprite is not a selection.
        fs::create_dir(dir.path().join(".sprite")).expect("mkdir");
        let err = resolve_name(None, dir.path());
        // A parent of the temp dir could hold a .sprite; only check the text
        // when nothing was found.
        if let Err(err) = err {
            assert_eq!(
                err.to_string(),
                "no sprite selected: pass -s NAME or run `sprite use NAME`"
            );
        }
    }

    #[test]
    fn a_broken_file_is_reported_with_its_path() {
        let dir = TestDir::new();
        fs::write(dir.path().join(".sprite"), "demo").expect("write");
        let err = resolve_name(None, dir.path()).expect_err("broken");
        assert!(err.to_string().contains(".sprite is not a valid"), "{err}");
    }

    #[test]
    fn the_organization_may_be_missing() {
        let dir = TestDir::new();
        fs::write(dir.path().join(".sprite"), r#"{"sprite":"solo"}"#).expect("write");
        let (_, found) = find(dir.path()).expect("find").expect("some");
        assert_eq!(found.organization, "");
        assert_eq!(found.sprite, "solo");
    }
}
