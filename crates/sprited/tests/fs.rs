//! The filesystem API through the real daemon and agent: every call, the
//! caller's permissions, paths that try to leave the sprite, read-only
//! places, odd names, and a 1 GiB file streamed both ways with the
//! daemon's memory flat.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Api, Daemon};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use sprites_api::fs::percent_encode;
use sprites_test_support::rss_kib;

/// Filesystem calls on one sprite.
struct Fs<'a> {
    api: &'a Api,
    sprite: &'a str,
}

/// `k=v&...` with every value percent-encoded as raw bytes.
fn query(pairs: &[(&str, &[u8])]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Fs<'_> {
    fn url(&self, call: &str, q: &str) -> String {
        format!("/v1/sprites/{}/fs/{call}?{q}", self.sprite)
    }

    async fn send(
        &self,
        m: Method,
        call: &str,
        q: &str,
        body: Option<reqwest::Body>,
    ) -> (u16, Bytes) {
        let mut req = self.api.req(m, &self.url(call, q));
        if let Some(b) = body {
            req = req.body(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.bytes().await.expect("body"))
    }

    async fn json(
        &self,
        m: Method,
        call: &str,
        q: &str,
        body: Option<reqwest::Body>,
    ) -> (u16, Value) {
        let (status, b) = self.send(m, call, q, body).await;
        let v = serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("{call}?{q}: {status} not JSON ({e}): {b:?}"));
        (status, v)
    }

    async fn write(&self, path: &[u8], data: &[u8]) -> (u16, Value) {
        let q = query(&[("path", path)]);
        self.json(Method::PUT, "write", &q, Some(data.to_vec().into()))
            .await
    }

    async fn write_q(&self, q: &str, data: &[u8]) -> (u16, Value) {
        self.json(Method::PUT, "write", q, Some(data.to_vec().into()))
            .await
    }

    async fn read(&self, path: &[u8]) -> (u16, Bytes) {
        self.send(Method::GET, "read", &query(&[("path", path)]), None)
            .await
    }

    async fn read_ok(&self, path: &[u8]) -> Bytes {
        let (status, b) = self.read(path).await;
        assert_eq!(status, 200, "read {}: {b:?}", String::from_utf8_lossy(path));
        b
    }

    async fn list(&self, q: &str) -> (u16, Value) {
        self.json(Method::GET, "list", q, None).await
    }

    async fn delete(&self, q: &str) -> (u16, Value) {
        self.json(Method::DELETE, "delete", q, None).await
    }

    async fn post(&self, call: &str, body: Value) -> (u16, Value) {
        let (status, b) = {
            let r = self
                .api
                .req(Method::POST, &self.url(call, ""))
                .json(&body)
                .send()
                .await
                .expect("request");
            let s = r.status().as_u16();
            (s, r.bytes().await.expect("body"))
        };
        (status, serde_json::from_slice(&b).expect("JSON answer"))
    }
}

/// Assert an fs error: status, errno code, and the path it names.
fn assert_err(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
    assert!(
        got.1["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        got.1
    );
}

fn names(list: &Value) -> Vec<String> {
    list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_as_the_sprite_user() {
    let d = Daemon::start();
    let api = d.client();
    api.create("fs").await;
    let fs = Fs {
        api: &api,
        sprite: "fs",
    };

    // Write: relative to the home by default, owned by `sprite`, 0644.
    let (s, w) = fs.write(b"notes/today.txt", b"hello\n").await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(w["path"], "/home/sprite/notes/today.txt");
    assert_eq!(
        (w["size"].as_u64(), w["mode"].as_str()),
        (Some(6), Some("0644"))
    );
    assert_eq!(
        &fs.read_ok(b"/home/sprite/notes/today.txt").await[..],
        b"hello\n"
    );
    let owner = api
        .sh(
            "fs",
            "stat -c '%U %G %a' /home/sprite/notes/today.txt /home/sprite/notes",
        )
        .await;
    assert_eq!(owner, "sprite sprite 644\nsprite sprite 755\n");

    // workingDir, an explicit mode, replacing keeps the old mode unless told.
    let q = query(&[
        ("path", b"run.sh"),
        ("workingDir", b"/home/sprite/notes"),
        ("mode", b"0755"),
    ]);
    let (s, w) = fs.write_q(&q, b"#!/bin/sh\necho ran\n").await;
    assert_eq!((s, w["mode"].as_str()), (200, Some("0755")), "{w}");
    assert_eq!(api.sh("fs", "/home/sprite/notes/run.sh").await, "ran\n");
    let (s, w) = fs.write(b"notes/run.sh", b"#!/bin/sh\necho again\n").await;
    assert_eq!((s, w["mode"].as_str()), (200, Some("0755")), "{w}");
    // Relative workingDir: from the home.
    let q = query(&[("path", b"today.txt"), ("workingDir", b"notes")]);
    let (s, b) = fs.send(Method::GET, "read", &q, None).await;
    assert_eq!((s, &b[..]), (200, &b"hello\n"[..]));

    // The read answer says how long the file is and its mode.
    let r = api
        .req(
            Method::GET,
            &fs.url("read", &query(&[("path", b"notes/run.sh")])),
        )
        .send()
        .await
        .expect("read");
    assert_eq!(r.headers()["content-length"], "21");
    assert_eq!(r.headers()["x-sprite-file-mode"], "0755");
    assert_eq!(r.headers()["content-type"], "application/octet-stream");

    // mkdirParents=false makes only the file's own directory (mkdir, not
    // mkdir -p): what the SDKs' mkdir(parents=False) needs.
    let q = query(&[("path", b"a/b/c.txt"), ("mkdirParents", b"false")]);
    assert_err(&fs.write_q(&q, b"x").await, 404, "ENOENT");
    let q = query(&[("path", b"a/.keep"), ("mkdirParents", b"false")]);
    assert_eq!(fs.write_q(&q, b"").await.0, 200);
    let q = query(&[("path", b"a/b/c.txt"), ("mkdirParents", b"true")]);
    assert_eq!(fs.write_q(&q, b"deep").await.0, 200);

    // List: a directory's entries, sorted; a file lists itself.
    let (s, l) = fs.list(&query(&[("path", b"/home/sprite/notes")])).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(names(&l), ["run.sh", "today.txt"]);
    assert_eq!(l["count"], 2);
    assert_eq!(l["path"], "/home/sprite/notes");
    let e = &l["entries"][1];
    assert_eq!(e["path"], "/home/sprite/notes/today.txt");
    assert_eq!(
        (e["type"].as_str(), e["isDir"].as_bool()),
        (Some("file"), Some(false))
    );
    assert_eq!(
        (e["size"].as_u64(), e["mode"].as_str()),
        (Some(6), Some("0644"))
    );
    assert!(e["modTime"].as_str().expect("modTime").ends_with('Z'));
    let (_, l) = fs.list(&query(&[("path", b"notes/today.txt")])).await;
    assert_eq!(names(&l), ["today.txt"]);
    // Recursive: names relative to the listed directory; a glob on names.
    let (_, l) = fs
        .list(&query(&[("path", b"/home/sprite"), ("recursive", b"true")]))
        .await;
    assert_eq!(
        names(&l),
        [
            "a",
            "a/.keep",
            "a/b",
            "a/b/c.txt",
            "notes",
            "notes/run.sh",
            "notes/today.txt"
        ]
    );
    let (_, l) = fs
        .list(&query(&[
            ("path", b"/home/sprite"),
            ("recursive", b"true"),
            ("pattern", b"*.txt"),
        ]))
        .await;
    assert_eq!(names(&l), ["a/b/c.txt", "notes/today.txt"]);
    // Stat (extension): the path's own entry.
    let (s, st) = fs
        .json(Method::GET, "stat", &query(&[("path", b"notes")]), None)
        .await;
    assert_eq!(
        (s, st["isDir"].as_bool(), st["name"].as_str()),
        (200, Some(true), Some("notes"))
    );

    // Rename and copy (files and trees), chmod.
    let (s, r) = fs
        .post("rename", json!({"source": "notes/today.txt", "dest": "notes/yesterday.txt", "workingDir": "/home/sprite"}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["dest"], "/home/sprite/notes/yesterday.txt");
    assert_err(
        &fs.read(b"notes/today.txt").await.into_json(),
        404,
        "ENOENT",
    );
    let (s, c) = fs
        .post(
            "copy",
            json!({"source": "notes", "dest": "notes-copy", "recursive": true}),
        )
        .await;
    assert_eq!((s, c["count"].as_u64()), (200, Some(3)), "{c}");
    assert_eq!(
        &fs.read_ok(b"notes-copy/yesterday.txt").await[..],
        b"hello\n"
    );
    assert_eq!(
        api.sh("fs", "stat -c %a notes-copy/run.sh").await,
        "755\n",
        "a copy keeps the mode"
    );
    let (s, c) = fs
        .post(
            "copy",
            json!({"source": "notes/run.sh", "dest": "run-copy.sh"}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_err(
        &fs.post(
            "copy",
            json!({"source": "notes", "dest": "x", "recursive": false}),
        )
        .await,
        400,
        "EISDIR",
    );
    let (s, m) = fs
        .post(
            "chmod",
            json!({"path": "notes-copy", "mode": "0700", "recursive": true}),
        )
        .await;
    assert_eq!((s, m["count"].as_u64()), (200, Some(3)), "{m}");
    assert_eq!(
        api.sh("fs", "stat -c %a notes-copy notes-copy/run.sh")
            .await,
        "700\n700\n"
    );

    // Delete: a file, an empty directory, not a full one unless recursive.
    let (s, del) = fs.delete(&query(&[("path", b"run-copy.sh")])).await;
    assert_eq!((s, del["count"].as_u64()), (200, Some(1)), "{del}");
    assert_err(
        &fs.delete(&query(&[("path", b"notes-copy")])).await,
        409,
        "ENOTEMPTY",
    );
    let (s, del) = fs
        .delete(&query(&[("path", b"notes-copy"), ("recursive", b"true")]))
        .await;
    assert_eq!(s, 200, "{del}");
    assert_eq!(
        del["deleted"],
        json!([
            "/home/sprite/notes-copy/run.sh",
            "/home/sprite/notes-copy/yesterday.txt",
            "/home/sprite/notes-copy"
        ])
    );
    assert_eq!(api.sh("fs", "ls /home/sprite").await, "a\nnotes\n");

    // The sprite user's permissions apply; root is an explicit choice.
    assert_err(&fs.write(b"/etc/motd", b"x").await, 403, "EACCES");
    assert_err(&fs.write(b"/root/x", b"x").await, 403, "EACCES");
    let (s, w) = fs
        .write_q(
            &query(&[("path", b"/etc/motd"), ("user", b"root")]),
            b"hi\n",
        )
        .await;
    assert_eq!(s, 200, "{w}");
    let (s, w) = fs
        .write_q(
            &query(&[("path", b"/etc/owned"), ("asRoot", b"true")]),
            b"x",
        )
        .await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(
        api.sh("fs", "stat -c %U /etc/motd /etc/owned").await,
        "root\nroot\n"
    );
    // Root replacing the sprite user's file keeps it theirs.
    let (s, _) = fs
        .write_q(
            &query(&[("path", b"notes/run.sh"), ("user", b"0")]),
            b"#!/bin/sh\n",
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(api.sh("fs", "stat -c %U notes/run.sh").await, "sprite\n");
    // chown is root's.
    assert_err(
        &fs.post("chown", json!({"path": "notes/run.sh", "uid": 0}))
            .await,
        403,
        "EPERM",
    );
    let (s, o) = fs
        .post(
            "chown",
            json!({"path": "/etc/owned", "uid": "sprite", "gid": 1000, "asRoot": true}),
        )
        .await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(
        api.sh("fs", "stat -c %U:%G /etc/owned").await,
        "sprite:sprite\n"
    );
    let bad_user = fs
        .write_q(&query(&[("path", b"x"), ("user", b"nobody-here")]), b"x")
        .await;
    assert_err(&bad_user, 400, "EINVAL");
}

trait IntoJson {
    fn into_json(self) -> (u16, Value);
}

impl IntoJson for (u16, Bytes) {
    fn into_json(self) -> (u16, Value) {
        let v = serde_json::from_slice(&self.1).expect("JSON error body");
        (self.0, v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_or_stays_inside() {
    let d = Daemon::start();
    let api = d.client();
    api.create("bad").await;
    let fs = Fs {
        api: &api,
        sprite: "bad",
    };
    let id = api.id_of("bad").await;

    // `..` stops at the sprite's root; symlinks to "outside" point into the
    // sprite itself, and host paths do not exist in there.
    let inside_passwd = fs.read_ok(b"../../../../../../../../etc/passwd").await;
    assert!(
        String::from_utf8_lossy(&inside_passwd).contains("sprite:x:1000"),
        "the sprite's own /etc/passwd"
    );
    // A file on the host, beside the daemon's own data.
    let host_token = d.data_dir.join("host-secret.txt");
    std::fs::write(&host_token, "host only").expect("host file");
    let host_sock = d.data_dir.join("sprites").join(&id).join("agent.sock");
    let script = format!(
        "ln -s / rootlink && ln -s ../../../../../../.. up && ln -s {} token && ln -s {} sock",
        host_token.display(),
        host_sock.display()
    );
    api.sh("bad", &script).await;
    assert_eq!(fs.read_ok(b"rootlink/etc/passwd").await, inside_passwd);
    assert_eq!(fs.read_ok(b"up/etc/passwd").await, inside_passwd);
    assert_err(&fs.read(b"token").await.into_json(), 404, "ENOENT");
    assert_err(
        &fs.read(host_token.to_str().expect("utf-8").as_bytes())
            .await
            .into_json(),
        404,
        "ENOENT",
    );
    assert_err(&fs.write(b"sock", b"x").await, 404, "ENOENT");
    assert!(host_token.is_file(), "the host's files are untouched");
    assert!(
        std::fs::symlink_metadata(&host_sock).is_ok_and(|m| !m.is_file()),
        "the agent socket is still a socket"
    );
    let (s, l) = fs.list(&query(&[("path", b"up")])).await;
    assert_eq!(s, 200);
    assert!(names(&l).contains(&".sprite".to_string()), "{l}");
    // The agent's own connection and other processes are not reachable.
    assert_err(&fs.read(b"/proc/1/mem").await.into_json(), 403, "EACCES");
    let environ = fs.read(b"/proc/1/environ").await;
    if common::isolation() == "gvisor" {
        // The Sentry's procfs lets any process read another's environment
        // (0444, as gVisor 2022 has it); the agent's holds only what every
        // command of the sprite is given anyway.
        let text = String::from_utf8_lossy(&environ.1).into_owned();
        assert_eq!(environ.0, 200, "{text}");
        assert!(text.contains("SPRITE_EXEC_ENV="), "{text}");
    } else {
        assert_err(&environ.into_json(), 403, "EACCES");
    }

    // Read-only places: a checkpoint view (even for root), /proc, /sys.
    let cp = api.checkpoint("bad", None).await;
    let view = format!("/.sprite/checkpoints/{cp}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs.list(&query(&[("path", view.as_bytes())])).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "checkpoint view {view} never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_view = format!("{view}/home/sprite/new.txt");
    for user in [&b"sprite"[..], b"root"] {
        let got = fs
            .write_q(
                &query(&[("path", in_view.as_bytes()), ("user", user)]),
                b"x",
            )
            .await;
        assert_err(&got, 403, "EROFS");
    }
    let got = fs
        .delete(&query(&[
            ("path", format!("{view}/etc/passwd").as_bytes()),
            ("asRoot", b"true"),
        ]))
        .await;
    assert_err(&got, 403, "EROFS");
    for path in [
        &b"/proc/version"[..],
        b"/proc/sys/kernel/hostname",
        b"/sys/kernel/new",
    ] {
        let got = fs
            .write_q(&query(&[("path", path), ("user", b"root")]), b"x")
            .await;
        // gVisor's procfs lets root open /proc/version for writing and
        // refuses the write itself, with EIO.
        let sentry_refusal =
            common::isolation() == "gvisor" && got.0 == 500 && got.1["code"] == "EIO";
        assert!(
            got.0 == 403 || got.0 == 404 || sentry_refusal,
            "{}: {}",
            String::from_utf8_lossy(path),
            got.1
        );
    }
    assert!(
        String::from_utf8_lossy(&fs.read_ok(b"/proc/version").await).contains("Linux"),
        "/proc/version is as it was"
    );
    // /proc files read whole although their size says 0.
    let status = fs.read_ok(b"/proc/self/status").await;
    assert!(
        String::from_utf8_lossy(&status).contains("Uid:\t1000"),
        "the sprite user reads"
    );

    // Missing things, wrong kinds.
    assert_err(&fs.read(b"nope.txt").await.into_json(), 404, "ENOENT");
    assert_err(
        &fs.delete(&query(&[("path", b"nope.txt")])).await,
        404,
        "ENOENT",
    );
    assert_err(&fs.list(&query(&[("path", b"/nope")])).await, 404, "ENOENT");
    assert_err(
        &fs.post("rename", json!({"source": "nope", "dest": "x"}))
            .await,
        404,
        "ENOENT",
    );
    assert_err(&fs.read(b"/home/sprite").await.into_json(), 400, "EISDIR");
    assert_err(&fs.write(b"/home/sprite", b"x").await, 400, "EISDIR");
    api.sh("bad", "mkdir -p dir/sub && echo x > file.txt").await;
    assert_err(&fs.write(b"dir", b"over a directory").await, 400, "EISDIR");
    assert_err(&fs.write(b"file.txt/child", b"x").await, 400, "ENOTDIR");
    assert_err(
        &fs.post("rename", json!({"source": "file.txt", "dest": "dir"}))
            .await,
        400,
        "EISDIR",
    );
    assert_err(
        &fs.post(
            "copy",
            json!({"source": "dir", "dest": "dir/sub/again", "recursive": true}),
        )
        .await,
        400,
        "EINVAL",
    );
    assert_err(
        &fs.delete(&query(&[
            ("path", b"/"),
            ("recursive", b"true"),
            ("asRoot", b"true"),
        ]))
        .await,
        403,
        "EPERM",
    );
    assert_eq!(
        api.sh("bad", "ls /home/sprite/file.txt").await,
        "/home/sprite/file.txt\n"
    );

    // Malformed requests.
    assert_err(&fs.write_q("", b"x").await, 400, "EINVAL");
    assert_err(
        &fs.write_q(&query(&[("path", b"x"), ("mode", b"0999")]), b"x")
            .await,
        400,
        "EINVAL",
    );
    assert_err(&fs.read(b"a\0b").await.into_json(), 400, "EINVAL");
    let (s, _) = fs.post("chmod", json!({"path": "file.txt"})).await;
    assert_eq!(s, 400);
    let (s, e) = fs
        .json(Method::GET, "read", &query(&[("path", b"x")]), None)
        .await;
    assert_eq!(s, 404, "{e}");
    let r = api
        .req(Method::GET, "/v1/sprites/no-such-sprite/fs/read?path=x")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);

    // Spaces and bytes that are not UTF-8: percent-encoded in queries,
    // shown replaced with the exact bytes beside, usable again.
    let odd: &[u8] = b"my file \xff\xfe.bin";
    let (s, w) = fs.write(odd, b"odd bytes").await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(w["path"], "/home/sprite/my file \u{fffd}\u{fffd}.bin");
    assert_eq!(
        sprites_api::fs::PathBytes::from_base64(w["pathBase64"].as_str().expect("base64"))
            .expect("decode")
            .as_bytes(),
        b"/home/sprite/my file \xff\xfe.bin"
    );
    assert_eq!(&fs.read_ok(odd).await[..], b"odd bytes");
    let (_, l) = fs
        .list(&query(&[("path", b"."), ("pattern", b"my file*")]))
        .await;
    let e = &l["entries"][0];
    assert_eq!(e["name"], "my file \u{fffd}\u{fffd}.bin");
    let raw =
        sprites_api::fs::PathBytes::from_base64(e["nameBase64"].as_str().expect("nameBase64"))
            .expect("decode");
    assert_eq!(raw.as_bytes(), odd);
    assert_eq!(
        api.sh(
            "bad",
            "for f in my*; do printf %s \"$f\"; done | od -An -tx1 | tr -d ' \\n'"
        )
        .await,
        "6d792066696c6520fffe2e62696e",
        "the name on disk has the raw bytes"
    );
    // JSON bodies take {"base64": ...} for such names.
    let (s, r) = fs
        .post(
            "rename",
            json!({"source": {"base64": "bXkgZmlsZSD//i5iaW4="}, "dest": "plain name.bin"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(&fs.read_ok(b"plain name.bin").await[..], b"odd bytes");
    // A name that is valid UTF-8 but not ASCII needs nothing special.
    assert_eq!(fs.write("résumé ✓.txt".as_bytes(), b"ok").await.0, 200);
    let (_, l) = fs
        .list(&query(&[("path", b"."), ("pattern", "r*".as_bytes())]))
        .await;
    assert_eq!(names(&l), ["rootlink", "résumé ✓.txt"]);
    assert!(l["entries"][0].get("nameBase64").is_none());
}

/// A deterministic 1 MiB chunk numbered `i` (its first bytes are `i`).
fn chunk(i: u64, base: &[u8]) -> Bytes {
    let mut c = base.to_vec();
    c[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(c)
}

fn base_chunk() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sample the daemon's RSS until `stop` is set; the peak in KiB.
fn sample_rss(
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.max(rss_kib(pid))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_streams_both_ways_with_flat_daemon_memory() {
    const CHUNKS: u64 = 1024;
    // The daemon's memory is measured while the API streams: no
    // replication of the 1 GiB written beside it (its own buffers,
    // 16 chunks in flight, are not what this measures).
    let d = Daemon::start_with(&["--replicate-every", "0"]);
    let api = d.client();
    api.create("big").await;
    let fs = Fs {
        api: &api,
        sprite: "big",
    };
    let pid = d.pid().expect("daemon pid");
    // Warm the daemon's allocator and connection paths on a small file.
    assert_eq!(fs.write(b"warm", &vec![7u8; 4 << 20]).await.0, 200);
    assert_eq!(fs.read_ok(b"warm").await.len(), 4 << 20);
    let before = rss_kib(pid);

    let base = std::sync::Arc::new(base_chunk());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());
    let b = base.clone();
    let body =
        futures_util::stream::iter(0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk(i, &b)));
    let started = Instant::now();
    let (s, w) = fs
        .json(
            Method::PUT,
            "write",
            &query(&[("path", b"big.bin")]),
            Some(reqwest::Body::wrap_stream(body)),
        )
        .await;
    let write_time = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let write_peak = sampler.join().expect("sampler");
    assert_eq!(s, 200, "{w}");
    assert_eq!(w["size"].as_u64(), Some(CHUNKS << 20));
    assert_eq!(
        api.sh("big", "wc -c < big.bin").await.trim(),
        (CHUNKS << 20).to_string()
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());
    let started = Instant::now();
    let r = api
        .req(
            Method::GET,
            &fs.url("read", &query(&[("path", b"big.bin")])),
        )
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(CHUNKS << 20));
    let mut stream = r.bytes_stream();
    let mut offset: u64 = 0;
    let mut pending = Vec::new();
    while let Some(part) = stream.next().await {
        pending.extend_from_slice(&part.expect("body"));
        while pending.len() >= 1 << 20 {
            let want = chunk(offset >> 20, &base);
            assert!(
                pending[..1 << 20] == want[..],
                "chunk {} differs",
                offset >> 20
            );
            pending.drain(..1 << 20);
            offset += 1 << 20;
        }
    }
    let read_time = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let read_peak = sampler.join().expect("sampler");
    assert!(
        pending.is_empty() && offset == CHUNKS << 20,
        "read {offset} bytes"
    );
    let after = rss_kib(pid);
    eprintln!(
        "1 GiB: write {write_time:?}, read {read_time:?}; daemon RSS {before} KiB before, \
         peak {write_peak} KiB writing, {read_peak} KiB reading, {after} KiB after"
    );
    for (what, peak) in [("writing", write_peak), ("reading", read_peak)] {
        assert!(
            peak < before + 48 * 1024,
            "daemon RSS grew from {before} KiB to {peak} KiB while {what} 1 GiB"
        );
    }

    // An upload that breaks off leaves the old file as it was, and no
    // temporary file behind.
    assert_eq!(fs.write(b"keep.txt", b"old content").await.0, 200);
    let b = base.clone();
    let failing = futures_util::stream::iter(0..64u64).map(move |i| {
        if i == 40 {
            Err(std::io::Error::other("client gives up"))
        } else {
            Ok(chunk(i, &b))
        }
    });
    let res = api
        .req(
            Method::PUT,
            &fs.url("write", &query(&[("path", b"keep.txt")])),
        )
        .body(reqwest::Body::wrap_stream(failing))
        .send()
        .await;
    assert!(res.is_err() || !res.as_ref().is_ok_and(|r| r.status().is_success()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, l) = fs.list(&query(&[("path", b".")])).await;
        let left: Vec<String> = names(&l)
            .into_iter()
            .filter(|n| n.contains("sprite-upload"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "temporary files left: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(&fs.read_ok(b"keep.txt").await[..], b"old content");
}
