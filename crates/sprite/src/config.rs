//! `~/.sprites/config.json`: the server and token saved by `sprite login`,
//! and how flags and environment override them.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// Where `sprited` listens unless told otherwise.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7070";

/// The saved login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub url: String,
    pub token: String,
}

/// The server and token a command talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub token: String,
}

pub fn config_dir(home: &Path) -> PathBuf {
    home.join(".sprites")
}

pub fn config_path(home: &Path) -> PathBuf {
    config_dir(home).join("config.json")
}

/// The saved login, if there is one.
pub fn load(home: &Path) -> Result<Option<Config>> {
    let path = config_path(home);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid config file", path.display()))?;
    Ok(Some(config))
}

/// Save the login: the directory 0700, the file 0600, replaced atomically.
pub fn save(home: &Path, config: &Config) -> Result<PathBuf> {
    let dir = config_dir(home);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(&dir, Permissions::from_mode(0o700))
        .with_context(|| format!("securing {}", dir.display()))?;

    let path = config_path(home);
    let tmp = dir.join(".config.json.tmp");
    let json = serde_json::to_vec_pretty(config).context("encoding the config")?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    // A leftover temporary file keeps its old mode through open().
    file.set_permissions(Permissions::from_mode(0o600))
        .with_context(|| format!("securing {}", tmp.display()))?;
    file.write_all(&json)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Pick the server and token: flags and environment first, then the saved
/// login. The saved token is only sent to the server it was saved for.
pub fn resolve(
    api_url: Option<&str>,
    token: Option<&str>,
    saved: Option<&Config>,
) -> Result<Endpoint> {
    let api_url = api_url.map(str::trim).filter(|u| !u.is_empty());
    let token = token.map(str::trim).filter(|t| !t.is_empty());
    let url = api_url
        .map(str::to_string)
        .or_else(|| saved.map(|c| c.url.clone()))
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    if let Some(token) = token {
        return Ok(Endpoint {
            url,
            token: token.to_string(),
        });
    }
    match saved {
        Some(saved) if same_url(&saved.url, &url) => Ok(Endpoint {
            url,
            token: saved.token.clone(),
        }),
        Some(_) => bail!("not logged in to {url}: run `sprite login {url}` or set SPRITE_TOKEN"),
        None => bail!("not logged in: run `sprite login` or set SPRITE_TOKEN"),
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    fn saved(url: &str) -> Config {
        Config {
            url: url.into(),
            token: "saved-token".into(),
        }
    }

    #[test]
    fn saves_and_loads_with_private_permissions() {
        let home = TestDir::new();
        assert_eq!(load(home.path()).expect("load"), None);

        let config = saved("http://127.0.0.1:7070");
        let path = save(home.path(), &config).expect("save");
        assert_eq!(path, home.path().join(".sprites/config.json"));
        assert_eq!(load(home.path()).expect("load"), Some(config.clone()));

        let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&home.path().join(".sprites")), 0o700);

        // Saving again replaces it, and tightens a directory someone opened up.
        fs::set_permissions(home.path().join(".sprites"), Permissions::from_mode(0o755))
            .expect("chmod");
        let other = Config {
            url: "http://10.0.0.1:1".into(),
            token: "t2".into(),
        };
        save(home.path(), &other).expect("save again");
        assert_eq!(load(home.path()).expect("load"), Some(other));
        assert_eq!(mode(&home.path().join(".sprites")), 0o700);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_broken_config_file_is_reported() {
        let home = TestDir::new();
        fs::create_dir_all(home.path().join(".sprites")).expect("mkdir");
        fs::write(config_path(home.path()), "{").expect("write");
        let err = load(home.path()).expect_err("broken");
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn flags_win_over_the_saved_login() {
        let file = saved("http://a:1");
        let ep = resolve(Some("http://b:2"), Some("flag-token"), Some(&file)).expect("ok");
        assert_eq!(ep.url, "http://b:2");
        assert_eq!(ep.token, "flag-token");
    }

    #[test]
    fn the_saved_login_fills_in() {
        let file = saved("http://a:1/");
        let ep = resolve(None, None, Some(&file)).expect("ok");
        assert_eq!(
            (ep.url.as_str(), ep.token.as_str()),
            ("http://a:1/", "saved-token")
        );
        // Same server spelled without the slash: the saved token applies.
        let ep = resolve(Some("http://a:1"), None, Some(&file)).expect("ok");
        assert_eq!(ep.token, "saved-token");
        // A token given alone goes to the saved server.
        let ep = resolve(None, Some("t"), Some(&file)).expect("ok");
        assert_eq!((ep.url.as_str(), ep.token.as_str()), ("http://a:1/", "t"));
    }

    #[test]
    fn the_saved_token_never_goes_to_another_server() {
        let file = saved("http://a:1");
        let err = resolve(Some("http://evil:1"), None, Some(&file)).expect_err("refused");
        assert!(
            err.to_string().contains("not logged in to http://evil:1"),
            "{err}"
        );
    }

    #[test]
    fn without_any_login_the_default_server_needs_a_token() {
        let err = resolve(None, None, None).expect_err("no token");
        assert!(err.to_string().contains("sprite login"), "{err}");
        let ep = resolve(None, Some(" t "), None).expect("ok");
        assert_eq!((ep.url.as_str(), ep.token.as_str()), (DEFAULT_API_URL, "t"));
        assert!(resolve(Some(""), Some(""), None).is_err());
    }
}
