//! What the host gives every sprite: `--sprite-env` variables and
//! `--ca-file` certificates reach execs and services (a sprite's own
//! environment wins), values stay out of the log, bad flags stop the daemon
//! at startup with a clear error. And the default user may make top-level
//! folders, but not move what root owns there.

mod common;

use std::process::Command;

use common::Daemon;
use reqwest::Method;
use serde_json::json;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

#[test]
fn bad_flags_stop_the_daemon_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--sprite-env", "1BAD=http://user:secret@proxy:3128"],
            "--sprite-env \"1BAD\": not a variable name",
        ),
        (&["--sprite-env", "NOVALUE"], "no '='"),
        (&["--ca-file", "NOT_PEM"], "no PEM certificate"),
    ];
    for (args, want) in cases {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("NOT_PEM", &not_pem.display().to_string()))
            .collect();
        let out = Command::new(common::BIN)
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:1"])
            .output()
            .expect("run sprited");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must be refused");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("secret"), "a value in the error: {stderr}");
        assert!(!dir.path().join("data").exists(), "refused before any work");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_variables_and_certificates_reach_every_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("corp.crt");
    std::fs::write(&ca, CERT).expect("write");
    let d = Daemon::start_with(&[
        "--sprite-env",
        "HTTPS_PROXY=http://user:secret@127.0.0.1:9",
        "--sprite-env",
        "GREETING=from-host",
        "--ca-file",
        &ca.display().to_string(),
    ]);
    let api = d.client();
    let r = api
        .req(Method::POST, "/v1/sprites")
        .json(&json!({"name": "he", "environment": {"GREETING": "own"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);

    let o = api
        .sh(
            "he",
            "echo $HTTPS_PROXY $GREETING; echo $PATH; echo $SSL_CERT_FILE; cat $NODE_EXTRA_CA_CERTS",
        )
        .await;
    assert_eq!(
        o,
        format!(
            "http://user:secret@127.0.0.1:9 own\n\
             /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.sprite/bin\n\
             /etc/ssl/certs/ca-certificates.crt\n{CERT}"
        )
    );
    // A service is a process of the sprite too.
    let r = api
        .req(Method::PUT, "/v1/sprites/he/services/envsvc?duration=1s")
        .json(&json!({"cmd": "sh", "args": ["-c", "echo proxy=$HTTPS_PROXY; sleep 100"]}))
        .send()
        .await
        .expect("service");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("events");
    assert!(
        text.contains("proxy=http://user:secret@127.0.0.1:9"),
        "{text}"
    );
    assert!(
        !d.log().contains("secret"),
        "a variable's value in the log:\n{}",
        d.log()
    );

    // Top-level folders: made by the default user; what root owns there
    // stays where it is.
    let o = api
        .sh("he", "mkdir -p /workspace/a && stat -c %U /workspace")
        .await;
    assert_eq!(o, "sprite\n");
    let o = api.exec("he", &["sh", "-c", "mv /etc /etc2"]).await;
    assert_ne!(o.code, Some(0), "moved /etc: {o:?}");
    api.delete("he").await;
}
