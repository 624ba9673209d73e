//! A real S3-compatible server for the cold-tier tests: moto in server mode
//! (installed from PyPI by tests/s3/setup.sh), on a free loopback port,
//! stopped by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::port::free_port;
use crate::ready::{http_answer, wait_ready};

/// How long moto may take to start (a Python server: about a second here).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A header moto puts on every answer.
const MOTO_HEADER: &str = "x-amzn-requestid";

pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// moto's stdout and stderr, shown when it fails to start.
    log: tempfile::NamedTempFile,
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("SPRITED_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/s3/.venv/bin/moto_server");
    assert!(
        p.exists(),
        "the S3 tests need moto's server: run tests/s3/setup.sh (scripts/test.sh does), \
         or set SPRITED_MOTO_SERVER; not found at {}",
        p.display()
    );
    p
}

impl Moto {
    /// Starts moto and makes `bucket` in it: ready once moto itself answers
    /// that request.
    pub fn start(bucket: &str) -> Moto {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("a file for moto's log");
        let out = log.reopen().expect("moto's log");
        let err = log.reopen().expect("moto's log");
        let child = Command::new(binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting moto_server");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        let addr = format!("127.0.0.1:{port}");
        let made = wait_ready(&mut moto.child, START_TIMEOUT, || {
            let put = format!("PUT /{bucket}");
            match http_answer(&addr, &put, &[], MOTO_HEADER)?.status {
                200 => Ok(()),
                status => Err(format!("{put} answered {status}")),
            }
        });
        if let Err(e) = made {
            let log = std::fs::read_to_string(moto.log.path()).unwrap_or_default();
            panic!("moto_server on {addr}: {e}; its log:\n{log}");
        }
        moto
    }

    /// Keys in `bucket` (as the S3 ListObjects API lists them, first 1000).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.keys_under(bucket, "")
    }

    /// Keys in `bucket` that start with `prefix` (first 1000).
    pub fn keys_under(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = Command::new("curl")
            .args([
                "-sfG",
                &format!("{}/{bucket}", self.endpoint),
                "--data-urlencode",
                "list-type=2",
                "--data-urlencode",
                &format!("prefix={prefix}"),
            ])
            .output()
            .expect("curl");
        let xml = String::from_utf8_lossy(&out.stdout).into_owned();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// The environment a client (the daemon, `object_store`) needs to use
    /// this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Freezes the server (SIGSTOP): connections open, nothing answers.
    pub fn pause(&self) {
        // SAFETY: kill(2) on our own child's PID; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        // SAFETY: as in pause.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
