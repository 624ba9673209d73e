//! A real S3-compatible server for the cold-tier tests: moto in server mode
//! (installed from PyPI by tests/s3/setup.sh), on a free loopback port,
//! stopped by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub endpoint: String,
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
    /// Starts moto and makes `bucket` in it.
    pub fn start(bucket: &str) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !moto.curl(&["-X", "PUT", &format!("/{bucket}")]) {
            assert!(Instant::now() < deadline, "moto_server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn curl(&self, args: &[&str]) -> bool {
        let mut a: Vec<String> = vec!["-sf".into(), "-o".into(), "/dev/null".into()];
        for x in args {
            a.push(if x.starts_with('/') {
                format!("{}{x}", self.endpoint)
            } else {
                x.to_string()
            });
        }
        Command::new("curl")
            .args(&a)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Keys in `bucket` (as the S3 ListObjects API lists them, first 1000).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}/{bucket}?list-type=2", self.endpoint)])
            .output()
            .expect("curl");
        let xml = String::from_utf8_lossy(&out.stdout).into_owned();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// The environment a daemon needs to use this server.
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
