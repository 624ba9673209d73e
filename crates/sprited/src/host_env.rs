//! What the host gives every sprite, whatever its owner asked for: extra CA
//! certificates (`--ca-file`, for networks whose TLS is re-signed by a
//! company proxy) and environment variables (`--sprite-env`, e.g. proxy
//! settings). Checked once at startup; the values never reach a log line
//! (a proxy URL may carry a password).

use std::path::{Path, PathBuf};

use sprites_api::agent::{EXEC_ENV_VAR, EXTRA_CA_FILE};

/// The bundle the agent adds the certificates to, inside the sprite.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Variables through which the usual clients find a CA bundle when they do
/// not read the system's (pip and requests bring their own; Node reads its
/// built-in list plus `NODE_EXTRA_CA_CERTS`).
const BUNDLE_VARS: [&str; 4] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
];

/// Names the daemon itself gives the agent: not for `--sprite-env`.
const RESERVED: [&str; 3] = [EXEC_ENV_VAR, "SPRITE_AGENT_FD", "SPRITE_NAME"];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostEnv {
    /// The PEM certificates of every `--ca-file`, one after the other.
    pub ca_pem: String,
    /// `--sprite-env` pairs, in order (a later one wins).
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HostEnvError {
    #[error("--ca-file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error(
        "--sprite-env {given:?}: {why} (KEY=VALUE, KEY of letters, digits and _, not starting with a digit)"
    )]
    Var { given: String, why: &'static str },
}

impl HostEnv {
    /// Reads and checks the flags' values.
    pub fn from_flags(ca_files: &[PathBuf], vars: &[String]) -> Result<HostEnv, HostEnvError> {
        let mut ca_pem = String::new();
        for path in ca_files {
            ca_pem.push_str(&read_ca_file(path)?);
        }
        let vars = vars
            .iter()
            .map(|v| parse_var(v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HostEnv { ca_pem, vars })
    }

    /// The environment every command of a sprite starts with, as the agent
    /// takes it ([`EXEC_ENV_VAR`]): the image's PATH, the CA variables,
    /// then `--sprite-env` (which may override both).
    pub fn exec_env(&self, image_path: &str) -> Vec<String> {
        let mut env = vec![format!("PATH={image_path}")];
        if !self.ca_pem.is_empty() {
            env.extend(BUNDLE_VARS.iter().map(|k| format!("{k}={SYSTEM_BUNDLE}")));
            env.push(format!("NODE_EXTRA_CA_CERTS={EXTRA_CA_FILE}"));
        }
        env.extend(self.vars.iter().map(|(k, v)| format!("{k}={v}")));
        env
    }

    /// The agent's own variable carrying [`HostEnv::exec_env`].
    pub fn agent_var(&self, image_path: &str) -> String {
        let list =
            serde_json::to_string(&self.exec_env(image_path)).unwrap_or_else(|_| "[]".into());
        format!("{EXEC_ENV_VAR}={list}")
    }

    /// The names only, for the startup log.
    pub fn var_names(&self) -> Vec<&str> {
        self.vars.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// Puts the certificates where the agent looks for them at boot (the
    /// sprite's run folder, bound read-only at `/.sprite/run`), or removes
    /// a file left from a start with other flags.
    pub fn write_ca_file(&self, run_dir: &Path) -> std::io::Result<()> {
        let name = Path::new(EXTRA_CA_FILE)
            .file_name()
            .unwrap_or_else(|| std::ffi::OsStr::new("ca-certificates.crt"));
        let path = run_dir.join(name);
        if self.ca_pem.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        crate::files::replace_if_changed(&path, self.ca_pem.as_bytes(), 0o644)
    }
}

/// The PEM certificate blocks of a file, which must have at least one.
fn read_ca_file(path: &Path) -> Result<String, HostEnvError> {
    let err = |message: String| HostEnvError::CaFile {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            return Err(err("a certificate has no END line".into()));
        };
        let stop = start + len + END.len();
        out.push_str(&rest[start..stop]);
        out.push('\n');
        rest = &rest[stop..];
    }
    if out.is_empty() {
        return Err(err(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        ));
    }
    Ok(out)
}

fn parse_var(given: &str) -> Result<(String, String), HostEnvError> {
    let bad = |why| HostEnvError::Var {
        // The value may be a secret: only the key goes into the message.
        given: given.split('=').next().unwrap_or("").to_string(),
        why,
    };
    let Some((key, value)) = given.split_once('=') else {
        return Err(bad("no '='"));
    };
    if !sprites_api::name::is_env_var(key) {
        return Err(bad("not a variable name"));
    }
    if RESERVED.contains(&key) {
        return Err(bad("set by sprited itself"));
    }
    if value.contains('\0') {
        return Err(bad("the value has a NUL byte"));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";

    #[test]
    fn vars_are_checked_and_values_stay_out_of_errors() {
        let ok = HostEnv::from_flags(
            &[],
            &["HTTPS_PROXY=http://u:secret@p:3128".into(), "_x1=".into()],
        )
        .expect("valid");
        assert_eq!(ok.var_names(), ["HTTPS_PROXY", "_x1"]);
        for bad in ["NOEQUALS", "1X=a", "A-B=c", "=v", "SPRITE_EXEC_ENV=x"] {
            let e = HostEnv::from_flags(&[], &[bad.into()]).expect_err(bad);
            assert!(matches!(e, HostEnvError::Var { .. }), "{bad}: {e}");
        }
        let e = HostEnv::from_flags(&[], &["BAD-KEY=http://u:secret@p".into()]).expect_err("bad");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn ca_files_need_a_certificate_and_set_the_bundle_variables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.crt");
        std::fs::write(&good, format!("subject=x\n{CERT}\n")).expect("write");
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "not a certificate").expect("write");
        let e = HostEnv::from_flags(&[empty], &[]).expect_err("no cert");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = HostEnv::from_flags(&[dir.path().join("missing")], &[]).expect_err("missing");
        assert!(matches!(e, HostEnvError::CaFile { .. }), "{e}");

        let h = HostEnv::from_flags(&[good.clone(), good], &["PIP_CERT=/mine".into()]).expect("ok");
        assert_eq!(h.ca_pem, format!("{CERT}\n{CERT}\n"));
        let env = h.exec_env("/p");
        assert_eq!(env[0], "PATH=/p");
        assert!(env.contains(&format!("NODE_EXTRA_CA_CERTS={EXTRA_CA_FILE}")));
        // --sprite-env comes last, so the agent lets it win.
        assert_eq!(env.last().map(String::as_str), Some("PIP_CERT=/mine"));
        h.write_ca_file(dir.path()).expect("write");
        let kept = std::fs::read_to_string(dir.path().join("ca-certificates.crt")).expect("read");
        assert_eq!(kept, h.ca_pem);
        HostEnv::default()
            .write_ca_file(dir.path())
            .expect("remove");
        assert!(!dir.path().join("ca-certificates.crt").exists());
        assert_eq!(HostEnv::default().exec_env("/p"), ["PATH=/p"]);
    }
}
