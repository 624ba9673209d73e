//! `sprite cp` and `sprite exec --file` against the real daemon, as a user
//! types them: both directions, directories, stdin and stdout, odd names,
//! and the errors a user meets.

mod common;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::cli::{text, Cli};
use common::Daemon;

#[test]
fn cp_both_ways_and_exec_file() {
    let d = Daemon::start();
    let cli = Cli::new(&d);
    cli.ok(&["create", "box", "--skip-console"]);
    let here = cli.cwd.path();

    // Upload into a directory named with a trailing slash (made on the
    // way); the local mode comes along.
    let script = here.join("my script.sh");
    std::fs::write(&script, "#!/bin/sh\necho from script\n").expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    cli.ok(&["cp", "my script.sh", "box:/home/sprite/bin/"]);
    assert_eq!(
        cli.ok(&["exec", "-s", "box", "--", "/home/sprite/bin/my script.sh"]),
        "from script\n"
    );

    // Download to a name, and into an existing directory.
    let hostname = cli.ok(&["exec", "-s", "box", "--", "cat", "/etc/hostname"]);
    cli.ok(&["cp", "box:/etc/hostname", "h"]);
    assert_eq!(
        std::fs::read_to_string(here.join("h")).expect("h"),
        hostname
    );
    std::fs::create_dir(here.join("into")).expect("dir");
    cli.ok(&["cp", "box:/etc/hostname", "into"]);
    assert_eq!(
        std::fs::read_to_string(here.join("into/hostname")).expect("into/hostname"),
        hostname
    );
    // A downloaded file gets the sprite file's mode.
    cli.ok(&["cp", "box:bin/my script.sh", "back.sh"]);
    let mode = std::fs::metadata(here.join("back.sh"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755 & !0o022);

    // :PATH is the sprite of -s, or of .sprite.
    cli.ok(&["cp", "-s", "box", ":/etc/hostname", "h2"]);
    cli.ok(&["use", "box"]);
    cli.ok(&["cp", "h2", ":copies/h2"]);
    assert_eq!(cli.ok(&["exec", "--", "cat", "copies/h2"]), hostname);

    // stdin to a file, a file to stdout.
    let mut child = cli
        .command(&["cp", "-", ":from-stdin.txt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"piped in\n")
        .expect("write");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(cli.ok(&["cp", ":from-stdin.txt", "-"]), "piped in\n");

    // Directories with -r, both ways; without -r they are refused.
    std::fs::create_dir_all(here.join("site/css")).expect("site");
    std::fs::write(here.join("site/index.html"), "<h1>hi</h1>\n").expect("index");
    std::fs::write(here.join("site/css/a.css"), "b{}\n").expect("css");
    let err = cli.fails(&["cp", "site", ":www"], 1);
    assert!(err.contains("is a directory (use -r)"), "{err}");
    cli.ok(&["cp", "-r", "site", ":www"]);
    assert_eq!(cli.ok(&["exec", "--", "cat", "www/css/a.css"]), "b{}\n");
    cli.ok(&["cp", "-r", ":www", "back"]);
    assert_eq!(
        std::fs::read_to_string(here.join("back/index.html")).expect("back"),
        "<h1>hi</h1>\n"
    );
    assert_eq!(
        std::fs::read_to_string(here.join("back/css/a.css")).expect("back css"),
        "b{}\n"
    );
    // Symlinks come back as symlinks.
    cli.ok(&["exec", "--", "ln", "-s", "index.html", "www/home.html"]);
    cli.ok(&["cp", "-r", ":www", "back2"]);
    let link = std::fs::read_link(here.join("back2/home.html")).expect("a symlink");
    assert_eq!(link, std::path::Path::new("index.html"));
    let err = cli.fails(&["cp", ":www", "again"], 1);
    assert!(err.contains("is a directory (use -r)"), "{err}");

    // A file of some size, byte for byte.
    let data: Vec<u8> = (0..(24u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(here.join("blob.bin"), &data).expect("blob");
    cli.ok(&["cp", "blob.bin", ":blob.bin"]);
    cli.ok(&["cp", ":blob.bin", "blob.back"]);
    assert!(std::fs::read(here.join("blob.back")).expect("back") == data);

    // A name that is not UTF-8, both ways.
    let odd = OsStr::from_bytes(b"na\xefve.txt");
    std::fs::write(here.join(odd), "odd\n").expect("odd");
    let status = cli
        .command(&[OsStr::new("cp"), odd, OsStr::new(":")])
        .status()
        .expect("cp odd");
    assert!(status.success());
    let mut remote = b":".to_vec();
    remote.extend_from_slice(odd.as_bytes());
    let status = cli
        .command(&[
            OsStr::new("cp"),
            OsStr::from_bytes(&remote),
            OsStr::new("odd.back"),
        ])
        .status()
        .expect("cp odd back");
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(here.join("odd.back")).expect("odd back"),
        "odd\n"
    );

    // Errors a user meets.
    let err = cli.fails(&["cp", "missing.txt", ":x"], 1);
    assert!(err.contains("missing.txt"), "{err}");
    let err = cli.fails(&["cp", ":/nope.txt", "x"], 1);
    assert!(err.contains("no such file or directory"), "{err}");
    assert!(!here.join("x").exists(), "no partial download");
    let err = cli.fails(&["cp", "h", "h3"], 1);
    assert!(err.contains("SPRITE:PATH"), "{err}");
    let err = cli.fails(&["cp", "h", "/etc/h"], 1);
    assert!(err.contains("SPRITE:PATH"), "{err}");
    let err = cli.fails(&["cp", "h", ":/etc/h"], 1);
    assert!(err.contains("permission denied"), "{err}");
    cli.ok(&["cp", "-u", "root", "h", ":/etc/h"]);
    let err = cli.fails(&["cp", "h", "nosuch:/tmp/h"], 1);
    assert!(err.contains("no sprite named nosuch"), "{err}");
    // Refused before the body is read: the connection breaks under a big
    // upload, and the user still learns why.
    std::fs::write(here.join("big"), vec![7u8; 32 << 20]).expect("big file");
    let err = cli.fails(&["cp", "big", "nosuch:/tmp/big"], 1);
    assert!(err.contains("no sprite named nosuch"), "{err}");
    let err = cli.fails(&["cp", "-s", "box", "box:/a", "box:/b"], 1);
    assert!(err.contains("one sprite to another"), "{err}");

    // exec --file: uploads first, relative to --dir or the home.
    std::fs::write(here.join("input.txt"), "some input\n").expect("input");
    let out = cli.ok(&[
        "exec",
        "--file",
        "input.txt:/tmp/in.txt",
        "--file",
        "my script.sh",
        "--",
        "sh",
        "-c",
        "cat /tmp/in.txt && './my script.sh'",
    ]);
    assert_eq!(out, "some input\nfrom script\n");
    let out = cli.ok(&[
        "exec",
        "--dir",
        "/tmp",
        "--file",
        "input.txt",
        "--",
        "cat",
        "input.txt",
    ]);
    assert_eq!(out, "some input\n");
    let o = cli.run(&["exec", "--file", "nope.txt:/tmp/x", "--", "true"]);
    assert_eq!(o.status.code(), Some(255), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("nope.txt"));
}

/// Issue 19: a symlink that one `cp -r` left in the local copy is never
/// written through by the next, whatever the sprite's tree says now.
#[test]
fn a_local_symlink_from_an_earlier_copy_is_not_followed() {
    let d = Daemon::start();
    let cli = Cli::new(&d);
    cli.ok(&["create", "box", "--skip-console"]);
    let here = cli.cwd.path();
    let victim = here.join("victim");
    std::fs::create_dir(&victim).expect("victim dir");
    let script = format!(
        "mkdir -p /home/sprite/t && echo a > /home/sprite/t/a && ln -s {} /home/sprite/t/link",
        victim.display()
    );
    cli.ok(&["exec", "-s", "box", "--", "sh", "-c", &script]);
    cli.ok(&["cp", "-r", "box:/home/sprite/t", "."]);
    assert!(std::fs::symlink_metadata(here.join("t/link"))
        .expect("the link came back")
        .file_type()
        .is_symlink());
    // The sprite's link becomes a directory with a file in it.
    cli.ok(&[
        "exec",
        "-s",
        "box",
        "--",
        "sh",
        "-c",
        "rm /home/sprite/t/link && mkdir /home/sprite/t/link && echo pwned > /home/sprite/t/link/f",
    ]);
    let out = cli
        .command(&["cp", "-r", "box:/home/sprite/t", "."])
        .output()
        .expect("cp");
    assert!(
        !out.status.success(),
        "the second copy went through the link"
    );
    assert!(
        text(&out.stderr).contains("symlink"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !victim.join("f").exists(),
        "a file was written through the local symlink"
    );
}
