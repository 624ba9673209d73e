//! Filesystem calls through the real agent binary on this host, at the
//! frame protocol: the worker runs as the user asked for (the kernel says
//! no where that user may not go), streams a file both ways in frames of
//! at most 1 MiB, and a connection that ends mid-upload leaves the old file.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{Agent, Conn, TempDir};
use sprites_api::agent::{Request, JSON, MAX_FRAME, STDIN, STDIN_EOF, STDOUT};
use sprites_api::fs::{FsCall, FsReply, FsRequest, MkdirParents, PathBytes};

/// The uid of `nobody` on any Linux.
const NOBODY: &str = "65534";

fn fs_request(agent: &Agent, user: Option<&str>, call: FsCall) -> Conn {
    agent.request(&Request::Fs(FsRequest {
        user: user.map(String::from),
        working_dir: Some(PathBytes::from("/")),
        call,
    }))
}

fn reply(c: &mut Conn) -> FsReply {
    match c.frame() {
        Some((JSON, json)) => serde_json::from_slice(&json).expect("an fs reply"),
        other => panic!("expected a JSON reply, got {other:?}"),
    }
}

fn write_call(path: &std::path::Path) -> FsCall {
    FsCall::Write {
        path: PathBytes::from(path.to_str().expect("utf-8 temp path")),
        mode: None,
        mkdir_parents: MkdirParents::All,
    }
}

#[test]
fn the_worker_is_the_user_asked_for() {
    let agent = Agent::start();
    let dir = TempDir::new("fs-user");
    let open = dir.path().join("open");
    std::fs::create_dir(&open).expect("dir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");

    // Root's directory: nobody may not create files there.
    let mut c = fs_request(&agent, Some(NOBODY), write_call(&dir.path().join("x")));
    match reply(&mut c) {
        FsReply::Error { code, .. } => assert_eq!(code, "EACCES"),
        other => panic!("nobody wrote into root's directory: {other:?}"),
    }
    // A world-writable one: the file is nobody's.
    let target = open.join("mine");
    let mut c = fs_request(&agent, Some(NOBODY), write_call(&target));
    assert!(matches!(reply(&mut c), FsReply::Opened { .. }));
    c.send_frame(STDIN, b"hello");
    c.send_frame(STDIN_EOF, b"");
    match reply(&mut c) {
        FsReply::Done { size, mode, .. } => assert_eq!((size, mode), (5, 0o644)),
        other => panic!("{other:?}"),
    }
    let meta = std::fs::metadata(&target).expect("written");
    assert_eq!(meta.uid(), 65534);
    assert_eq!(std::fs::read(&target).expect("read"), b"hello");

    // Reading what only root may read.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "root only").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let read = FsCall::Read {
        path: PathBytes::from(secret.to_str().expect("utf-8")),
        range: None,
    };
    let mut c = fs_request(&agent, Some(NOBODY), read.clone());
    assert!(matches!(reply(&mut c), FsReply::Error { code, .. } if code == "EACCES"));
    let mut c = fs_request(&agent, Some("root"), read);
    assert!(matches!(
        reply(&mut c),
        FsReply::Opened { size: Some(9), .. }
    ));
    assert_eq!(c.frame(), Some((STDOUT, b"root only".to_vec())));
    assert!(matches!(reply(&mut c), FsReply::Done { size: 9, .. }));

    // An unknown user is refused before anything runs.
    let mut c = fs_request(&agent, Some("no-such-user"), write_call(&target));
    assert!(matches!(reply(&mut c), FsReply::Error { code, .. } if code == "EINVAL"));
}

#[test]
fn files_stream_in_bounded_frames_and_broken_uploads_change_nothing() {
    let agent = Agent::start();
    let dir = TempDir::new("fs-stream");
    let target = dir.path().join("data.bin");

    // 5 MiB and a bit up, in odd frame sizes.
    let data: Vec<u8> = (0..(5 * MAX_FRAME + 123))
        .map(|i| (i % 251) as u8)
        .collect();
    let mut c = fs_request(&agent, None, write_call(&target));
    assert!(matches!(reply(&mut c), FsReply::Opened { .. }));
    for chunk in data.chunks(300_000) {
        c.send_frame(STDIN, chunk);
    }
    c.send_frame(STDIN_EOF, b"");
    assert!(matches!(reply(&mut c), FsReply::Done { size, .. } if size == data.len() as u64));

    // Back: the length first, then frames of at most 1 MiB.
    let mut c = fs_request(
        &agent,
        None,
        FsCall::Read {
            path: PathBytes::from(target.to_str().expect("utf-8")),
            range: None,
        },
    );
    assert!(
        matches!(reply(&mut c), FsReply::Opened { size: Some(n), .. } if n == data.len() as u64)
    );
    assert!(read_to_done(&mut c) == data);

    // Byte ranges: across a frame boundary, open-ended, past the end, and
    // one that ends before it starts.
    let path = PathBytes::from(target.to_str().expect("utf-8"));
    let ranged = |start: u64, end: Option<u64>| FsCall::Read {
        path: path.clone(),
        range: Some(sprites_api::fs::ByteRange { start, end }),
    };
    let (a, b) = (MAX_FRAME as u64 - 5, MAX_FRAME as u64 + 7);
    let mut c = fs_request(&agent, None, ranged(a, Some(b)));
    assert!(matches!(
        reply(&mut c),
        FsReply::Opened { size: Some(12), .. }
    ));
    assert!(read_to_done(&mut c) == data[a as usize..b as usize]);
    let tail = data.len() as u64 - 3;
    let mut c = fs_request(&agent, None, ranged(tail, None));
    assert!(matches!(
        reply(&mut c),
        FsReply::Opened { size: Some(3), .. }
    ));
    assert!(read_to_done(&mut c) == data[tail as usize..]);
    let mut c = fs_request(
        &agent,
        None,
        ranged(data.len() as u64 + 10, Some(data.len() as u64 + 20)),
    );
    assert!(matches!(
        reply(&mut c),
        FsReply::Opened { size: Some(0), .. }
    ));
    assert!(read_to_done(&mut c).is_empty());
    let mut c = fs_request(&agent, None, ranged(9, Some(3)));
    assert!(matches!(reply(&mut c), FsReply::Error { code, .. } if code == "EINVAL"));

    // The connection ends before STDIN_EOF: the old file stays, and the
    // temporary file goes.
    let mut c = fs_request(&agent, None, write_call(&target));
    assert!(matches!(reply(&mut c), FsReply::Opened { .. }));
    c.send_frame(STDIN, b"half of a new file");
    drop(c);
    let clean = common::eventually(std::time::Duration::from_secs(10), || {
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        (names == ["data.bin"]).then_some(())
    });
    assert!(clean.is_some(), "a temporary file was left behind");
    assert!(std::fs::read(&target).expect("old file") == data);
}

/// A watch whose reader does not keep up holds the worker in its write
/// and lets the kernel drop what does not fit: the reader is told, and
/// nothing grows in between.
#[test]
fn a_watch_nobody_reads_loses_changes_and_says_so() {
    let agent = Agent::start();
    let dir = TempDir::new("fs-watch");
    let path = PathBytes::from(dir.path().to_str().expect("utf-8 temp path"));
    let mut c = fs_request(
        &agent,
        Some("root"),
        FsCall::Watch {
            paths: vec![path.clone()],
            recursive: false,
        },
    );
    assert_eq!(reply(&mut c), FsReply::Watching { paths: vec![path] });
    // More new names than the socket's buffer and the kernel's queue
    // (fs.inotify.max_queued_events) hold together, none of them read yet.
    let queue: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    for i in 0..queue + 20_000 {
        std::fs::File::create(dir.path().join(i.to_string())).expect("create");
    }
    let mut changes = 0usize;
    loop {
        match reply(&mut c) {
            FsReply::Changed { .. } => changes += 1,
            FsReply::Overflow { message } => {
                assert!(message.contains("lost"), "{message}");
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(changes <= queue + 20_000, "no overflow was told");
    }
    assert!(
        changes < queue + 20_000,
        "every change came through: {changes}"
    );
}

/// The `STDOUT` frames of a read up to its `Done`.
fn read_to_done(c: &mut Conn) -> Vec<u8> {
    let mut back = Vec::new();
    loop {
        match c.frame() {
            Some((STDOUT, d)) => {
                assert!(d.len() <= MAX_FRAME);
                back.extend_from_slice(&d);
            }
            Some((JSON, j)) => {
                let r: FsReply = serde_json::from_slice(&j).expect("reply");
                assert!(matches!(r, FsReply::Done { .. }), "{r:?}");
                return back;
            }
            other => panic!("{other:?}"),
        }
    }
}
