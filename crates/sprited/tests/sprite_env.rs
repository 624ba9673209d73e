//! `sprite-env` inside a real sprite against the real daemon: the agent
//! binary mounted at `/.sprite/bin/sprite-env`, found on `PATH`, talking to
//! `/.sprite/api.sock`.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Output};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_from_inside_the_sprite() {
    let d = Daemon::start();
    let api = d.client();
    api.create("inside").await;
    api.sh("inside", "echo one > /home/sprite/f; sync").await;

    // On PATH (a link in /usr/local/bin, for login shells too), and the
    // name alone makes the agent binary the CLI.
    assert_eq!(
        api.sh(
            "inside",
            "command -v sprite-env; readlink /usr/local/bin/sprite-env"
        )
        .await,
        "/usr/local/bin/sprite-env\n/.sprite/bin/sprite-env\n"
    );
    let help = api.exec("inside", &["sprite-env", "--help"]).await;
    assert_eq!(help.code, Some(0), "{}", stderr(&help));
    assert!(help.out().contains("checkpoints"), "{}", help.out());

    // Create: the progress lines, then the daemon's closing message.
    let out = api
        .exec(
            "inside",
            &["sprite-env", "checkpoints", "create", "--comment", "x"],
        )
        .await;
    assert_eq!(out.code, Some(0), "{} / {}", out.out(), stderr(&out));
    assert!(out.out().contains("Checkpoint v0 created"), "{}", out.out());

    // The daemon's own API sees what the sprite made.
    let list = api.get_json("/v1/sprites/inside/checkpoints").await;
    assert_eq!(list[0]["id"], "v0");
    assert_eq!(list[0]["comment"], "x");

    // List: a table with the current one marked, and JSON.
    let out = api
        .exec("inside", &["sprite-env", "checkpoints", "list"])
        .await;
    assert_eq!(out.code, Some(0), "{}", stderr(&out));
    let table = out.out();
    let mut lines = table.lines();
    assert_eq!(
        lines
            .next()
            .map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["ID", "CREATED", "COMMENT"]),
        "{table}"
    );
    let row: Vec<&str> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!((row[0], row[1], row[3]), ("*", "v0", "x"), "{table}");
    let out = api
        .exec("inside", &["sprite-env", "checkpoints", "list", "--json"])
        .await;
    let json: serde_json::Value = serde_json::from_str(&out.out()).expect("JSON list");
    assert_eq!(json[0]["id"], "v0");
    assert_eq!(json[0]["is_current"], true);
    // Any user of the sprite may use its socket.
    let out = api
        .exec_with(
            "inside",
            &["sh", "-c", "id -un; sprite-env checkpoints list --json"],
            "user=sprite",
            &[],
        )
        .await;
    assert_eq!(out.code, Some(0), "{}", stderr(&out));
    assert!(out.out().starts_with("sprite\n["), "{}", out.out());

    // Unknown ids and bad ones.
    let out = api
        .exec("inside", &["sprite-env", "checkpoints", "info", "v9"])
        .await;
    assert_eq!(out.code, Some(1));
    assert_eq!(stderr(&out), "sprite-env: no checkpoint v9\n");
    let out = api
        .exec("inside", &["sprite-env", "checkpoints", "restore", "nine"])
        .await;
    assert_eq!(out.code, Some(2), "{}", stderr(&out));

    // Restore from inside: the command dies with its sprite, the daemon
    // finishes the restore anyway.
    api.sh("inside", "echo two > /home/sprite/f; sync").await;
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        api.exec(
            "inside",
            &[
                "sh",
                "-c",
                "sprite-env checkpoints restore v0; echo survived",
            ],
        ),
    )
    .await
    .expect("the restoring command did not end");
    assert!(
        !out.out().contains("survived"),
        "the caller outlived the restore: {} / {}",
        out.out(),
        stderr(&out)
    );
    eprintln!(
        "restore from inside: exit {:?} after {:?}, printed {:?}",
        out.code,
        started.elapsed(),
        out.out()
    );
    api.eventually("inside", "cat /home/sprite/f", "one\n")
        .await;
    let after = api
        .exec("inside", &["sprite-env", "checkpoints", "info", "v0"])
        .await;
    assert_eq!(after.code, Some(0), "{}", stderr(&after));
    assert!(
        after.out().starts_with("id:      v0 (current)\n"),
        "{}",
        after.out()
    );
}
