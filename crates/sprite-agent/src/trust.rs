//! Extra CA certificates the daemon was started with (`--ca-file`), put in
//! the sprite's trust store at boot, as PID 1 (root inside): appended to the
//! system bundle that curl, git, apt, Python and OpenSSL read (Node reads
//! it through `NODE_EXTRA_CA_CERTS`, set by the daemon), and kept under
//! /usr/local/share/ca-certificates, so that Debian's
//! `update-ca-certificates` (which apt runs when it upgrades the bundle)
//! keeps them. An image without a bundle (tiny) gets none.

use std::io;
use std::path::Path;

/// Debian's (and most distributions') one-file bundle.
pub const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where `update-ca-certificates` takes local certificates from.
pub const LOCAL_DIR: &str = "/usr/local/share/ca-certificates";
/// Our file there.
const LOCAL_NAME: &str = "sprited.crt";

/// The PEM certificate blocks of `text`, each with its end line.
fn certificates(text: &str) -> Vec<&str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let stop = start + len + END.len();
        out.push(&rest[start..stop]);
        rest = &rest[stop..];
    }
    out
}

/// Adds the certificates of `extra` that `bundle` lacks to it, and writes
/// them to `local_dir`; without `extra` (none configured now), removes our
/// file from `local_dir`. Each step only where its file or folder exists.
/// Returns how many certificates were appended.
pub fn install(extra: &Path, bundle: &Path, local_dir: &Path) -> io::Result<usize> {
    let local = local_dir.join(LOCAL_NAME);
    let wanted = match std::fs::read_to_string(extra) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match std::fs::remove_file(&local) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(0),
            };
        }
        Err(e) => return Err(e),
    };
    let certs = certificates(&wanted);
    let mut added = 0;
    match std::fs::read_to_string(bundle) {
        Ok(current) => {
            let mut next = current.clone();
            for cert in &certs {
                if !current.contains(cert) {
                    if !next.is_empty() && !next.ends_with('\n') {
                        next.push('\n');
                    }
                    next.push_str(cert);
                    next.push('\n');
                    added += 1;
                }
            }
            if added > 0 {
                std::fs::write(bundle, next)?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if local_dir.is_dir() {
        let body: String = certs.iter().map(|c| format!("{c}\n")).collect();
        if std::fs::read_to_string(&local).ok().as_deref() != Some(body.as_str()) {
            std::fs::write(&local, body)?;
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
    const B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----";

    #[test]
    fn appends_what_is_missing_once_and_keeps_a_local_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = dir.path().join("extra.crt");
        let bundle = dir.path().join("bundle.crt");
        let local = dir.path().join("local");
        std::fs::create_dir(&local).expect("mkdir");
        std::fs::write(&extra, format!("# comment\n{A}\n{B}\n")).expect("write");
        std::fs::write(&bundle, A).expect("write");
        assert_eq!(install(&extra, &bundle, &local).expect("install"), 1);
        assert_eq!(install(&extra, &bundle, &local).expect("again"), 0);
        let text = std::fs::read_to_string(&bundle).expect("read");
        assert_eq!(text, format!("{A}\n{B}\n"));
        let kept = std::fs::read_to_string(local.join(LOCAL_NAME)).expect("local copy");
        assert_eq!(kept, format!("{A}\n{B}\n"));
        // Not configured any more: the local copy goes, the bundle stays.
        std::fs::remove_file(&extra).expect("rm");
        assert_eq!(install(&extra, &bundle, &local).expect("none"), 0);
        assert!(!local.join(LOCAL_NAME).exists());
        // No bundle, no local folder (tiny): nothing is made.
        std::fs::write(&extra, A).expect("write");
        let none = dir.path().join("none");
        assert_eq!(
            install(&extra, &none.join("b.crt"), &none).expect("tiny"),
            0
        );
        assert!(!none.exists());
    }
}
