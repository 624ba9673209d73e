//! The Rust SDK's filesystem calls against the real daemon: every call,
//! errors with their errno codes, and odd names (1 GiB streams: see
//! `sdk_fs_stream.rs`).

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::Daemon;
use sprites_client::{Client, CreateSpriteRequest, FileKind, WriteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_filesystem_end_to_end() {
    let d = Daemon::start();
    let client = Client::new(&d.url, d.token.clone()).expect("client");
    client
        .create_sprite(&CreateSpriteRequest {
            name: "sdkfs".into(),
            ..Default::default()
        })
        .await
        .expect("create sprite");
    let sprite = client.sprite("sdkfs");
    let fs = sprite.fs();

    let w = fs
        .write("app/config.json", "{\"a\":1}")
        .await
        .expect("write");
    assert_eq!(
        (w.path.as_str(), w.size, w.mode.as_str()),
        ("/home/sprite/app/config.json", 7, "0644")
    );
    assert_eq!(
        &fs.read("app/config.json").await.expect("read")[..],
        b"{\"a\":1}"
    );

    // A working directory, a mode, a stream with its length and mode.
    let app = sprite.fs().working_dir("app");
    app.write_from(
        "run.sh",
        &b"#!/bin/sh\necho ok\n"[..],
        &WriteOptions::mode(0o755),
    )
    .await
    .expect("write_from");
    let s = app.read_stream("run.sh").await.expect("stream");
    assert_eq!((s.len(), s.mode()), (Some(18), Some(0o755)));
    let out = sprite
        .command("/home/sprite/app/run.sh")
        .output()
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"ok\n");

    // Directories, listing, stat, exists.
    fs.create_dir_all("app/data/cache").await.expect("mkdir -p");
    fs.create_dir_all("app/data/cache")
        .await
        .expect("mkdir -p twice");
    let e = fs
        .create_dir("app/data", None, false)
        .await
        .expect_err("exists");
    assert_eq!((e.status(), e.code()), (Some(409), Some("EEXIST")));
    let names: Vec<String> = app
        .list(".")
        .await
        .expect("list")
        .entries
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["config.json", "data", "run.sh"]);
    let all = fs.list_recursive("app").await.expect("list -R");
    assert_eq!(all.count, 4);
    let json = fs
        .list_matching("app", Some("*.json"), true)
        .await
        .expect("glob");
    assert_eq!(json.entries.len(), 1);
    let st = fs.stat("app/data").await.expect("stat");
    assert_eq!((st.kind, st.is_dir), (FileKind::Directory, true));
    assert!(fs.exists("app/run.sh").await.expect("exists"));
    assert!(!fs.exists("app/nope").await.expect("exists"));

    // Rename, copy, chmod, chown (root's), remove.
    fs.rename("app/config.json", "app/settings.json")
        .await
        .expect("rename");
    let c = fs.copy("app", "app2").await.expect("copy tree");
    assert_eq!(c.count, 5);
    fs.chmod("app2/run.sh", 0o700, false).await.expect("chmod");
    assert_eq!(fs.stat("app2/run.sh").await.expect("stat").mode, "0700");
    let e = fs
        .chown("app2", Some("root"), None, true)
        .await
        .expect_err("not root");
    assert_eq!(e.code(), Some("EPERM"));
    fs.clone()
        .as_root()
        .chown("/home/sprite/app2", Some("root"), Some("root"), true)
        .await
        .expect("chown as root");
    let out = sprite
        .command("stat")
        .args(["-c", "%U", "/home/sprite/app2/run.sh"])
        .output()
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"root\n");
    let e = fs.remove("app").await.expect_err("not empty");
    assert_eq!((e.status(), e.code()), (Some(409), Some("ENOTEMPTY")));
    let del = fs.remove_all("app").await.expect("rm -r");
    assert_eq!(del.count, 5);
    let e = fs.read("app/settings.json").await.expect_err("gone");
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.code(), Some("ENOENT"));
    let e = fs
        .write("/etc/passwd", "x")
        .await
        .expect_err("not the sprite user's");
    assert_eq!((e.status(), e.code()), (Some(403), Some("EACCES")));

    // Names that are not UTF-8 go through as bytes, both ways.
    let odd = Path::new(OsStr::from_bytes(b"caf\xe9 menu.txt"));
    fs.write(odd, "latin-1 name").await.expect("write odd name");
    let listed = fs
        .list_matching(".", Some("caf*"), false)
        .await
        .expect("list");
    let entry = &listed.entries[0];
    assert_eq!(entry.raw_name().as_bytes(), b"caf\xe9 menu.txt");
    assert_eq!(entry.name, "caf\u{fffd} menu.txt");
    let raw = entry.raw_path();
    assert_eq!(
        &fs.read(Path::new(OsStr::from_bytes(raw.as_bytes())))
            .await
            .expect("read back")[..],
        b"latin-1 name"
    );
}
