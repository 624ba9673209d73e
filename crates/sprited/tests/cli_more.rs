//! `sprite checkpoint ...`, `sprite restore`, `sprite create --from`,
//! `sprite usage`, `sprite tokens` and `sprite services` against the real
//! daemon, as a user types them: the server found through
//! `SPRITES_API_URL`/`SPRITE_TOKEN`, the sprite through `-s` or `.sprite`.

mod common;

use common::cli::{text, Cli};
use common::Daemon;

/// The row of checkpoint `id` in `sprite checkpoint list` output.
fn row<'a>(list: &'a str, id: &str) -> Option<&'a str> {
    list.lines()
        .skip(1)
        .find(|l| l.split_whitespace().next() == Some(id))
}

#[test]
fn checkpoint_restore_and_fork_through_the_cli() {
    let d = Daemon::start();
    let cli = Cli::new(&d);

    assert_eq!(cli.ok(&["create", "demo", "--skip-console"]).trim(), "demo");
    cli.ok(&["use", "demo"]);
    cli.ok(&["exec", "--", "sh", "-c", "echo clean > /home/sprite/f"]);

    // create: progress on stderr, the new id alone on stdout.
    let o = cli.run(&["checkpoint", "create", "--comment", "clean"]);
    assert!(o.status.success(), "create: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "v0\n", "stderr: {}", text(&o.stderr));

    cli.ok(&["exec", "--", "rm", "/home/sprite/f"]);
    cli.ok(&["exec", "--", "sh", "-c", "echo junk > /home/sprite/g"]);

    let list = cli.ok(&["checkpoint", "list"]);
    let first = list.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("ID") && first.contains("CREATED") && first.contains("COMMENT"),
        "{list}"
    );
    let v0 = row(&list, "v0").unwrap_or_else(|| panic!("v0 is listed: {list}"));
    assert!(v0.ends_with("clean"), "{list}");
    assert!(v0.contains("(current)"), "v0 is the current one: {list}");
    assert_eq!(cli.ok(&["checkpoint", "ls", "-s", "demo"]), list);

    let info = cli.ok(&["checkpoint", "info", "v0"]);
    assert!(info.contains("ID:") && info.contains("v0"), "{info}");
    assert!(
        info.contains("Comment:") && info.contains("clean"),
        "{info}"
    );

    // restore by -s, without .sprite: the file is back, the later one gone.
    let elsewhere = Cli::new(&d);
    elsewhere.ok(&["restore", "v0", "-s", "demo"]);
    assert_eq!(cli.ok(&["exec", "--", "cat", "/home/sprite/f"]), "clean\n");
    let o = cli.run(&["exec", "--", "test", "-e", "/home/sprite/g"]);
    assert_eq!(o.status.code(), Some(1), "g was made after v0");

    // A fork starts from the checkpoint and lives on its own.
    assert_eq!(
        cli.ok(&["create", "exp", "--from", "demo:v0", "--skip-console"])
            .trim(),
        "exp"
    );
    assert_eq!(
        cli.ok(&["exec", "-s", "exp", "--", "cat", "/home/sprite/f"]),
        "clean\n"
    );
    cli.ok(&[
        "exec",
        "-s",
        "exp",
        "--",
        "sh",
        "-c",
        "echo fork > /home/sprite/f",
    ]);
    assert_eq!(cli.ok(&["exec", "--", "cat", "/home/sprite/f"]), "clean\n");

    // The checkpoint in use cannot be deleted; another one can.
    cli.ok(&["exec", "--", "sh", "-c", "echo second > /home/sprite/f"]);
    assert_eq!(
        cli.ok(&["checkpoint", "create", "--comment", "second"]),
        "v1\n"
    );
    let list = cli.ok(&["checkpoint", "list"]);
    assert!(
        row(&list, "v1").is_some_and(|r| r.contains("(current)")),
        "{list}"
    );
    assert!(
        row(&list, "v0").is_some_and(|r| !r.contains("(current)")),
        "{list}"
    );
    assert!(
        list.find("v1").unwrap_or(usize::MAX) < list.find("v0").unwrap_or(0),
        "newest first: {list}"
    );
    let err = cli.fails(&["checkpoint", "delete", "v1"], 1);
    assert!(err.contains("cannot delete checkpoint v1"), "{err}");
    cli.ok(&["checkpoint", "delete", "v0"]);
    let list = cli.ok(&["checkpoint", "list"]);
    assert!(row(&list, "v0").is_none(), "{list}");
    assert!(row(&list, "v1").is_some(), "{list}");

    // A failure the server reports in its progress stream (today a comment
    // over the limit is one) is `error: <its message>` and exit 1.
    let long = "x".repeat(5000);
    let err = cli.fails(&["checkpoint", "create", "--comment", &long], 1);
    assert!(err.contains("comment is longer than"), "{err}");
    let list = cli.ok(&["checkpoint", "list"]);
    assert_eq!(list.lines().count(), 2, "nothing was created: {list}");

    // Human errors for what does not exist, and for bad input.
    let err = cli.fails(&["checkpoint", "info", "v99"], 1);
    assert!(err.contains("no checkpoint v99 on sprite demo"), "{err}");
    let err = cli.fails(&["restore", "v0"], 1);
    assert!(err.contains("no checkpoint v0 on sprite demo"), "{err}");
    let err = cli.fails(&["checkpoint", "delete", "v0"], 1);
    assert!(err.contains("no checkpoint v0 on sprite demo"), "{err}");
    let err = cli.fails(&["checkpoint", "list", "-s", "nope"], 1);
    assert!(err.contains("no sprite named nope"), "{err}");
    let err = cli.fails(&["restore", "v1", "-s", "nope"], 1);
    assert!(err.contains("no sprite named nope"), "{err}");
    let err = cli.fails(
        &["create", "exp2", "--from", "demo:v0", "--skip-console"],
        1,
    );
    assert!(err.contains("no checkpoint v0 on sprite demo"), "{err}");
    let err = cli.fails(
        &["create", "exp2", "--from", "nope:v0", "--skip-console"],
        1,
    );
    assert!(err.contains("no sprite named nope"), "{err}");
    for bad in ["demo", "demo:", ":v1", "demo:x1"] {
        let err = cli.fails(&["create", "exp2", "--from", bad], 2);
        assert!(err.contains("--from"), "{bad}: {err}");
    }
    cli.fails(&["restore", "1"], 2);
    let list = text(&cli.run(&["list"]).stdout);
    assert!(!list.contains("exp2"), "no failed fork was created: {list}");
}

#[test]
fn usage_and_tokens_through_the_cli() {
    let d = Daemon::start_with(&["--meter-interval", "1s"]);
    let mut cli = Cli::new(&d);
    cli.ok(&["create", "acct", "--skip-console"]);
    cli.ok(&["exec", "-s", "acct", "--", "true"]);
    std::thread::sleep(std::time::Duration::from_millis(2500));

    let one = cli.ok(&["usage", "-s", "acct", "--since", "1h"]);
    assert!(one.starts_with("acct from "), "{one}");
    for want in ["RESOURCE", "cpu", "ram", "hot storage", "total"] {
        assert!(one.contains(want), "{want}: {one}");
    }
    let all = cli.ok(&["usage", "--all", "--since", "7d"]);
    assert!(all.contains("acct") && all.contains("COST USD"), "{all}");
    cli.fails(&["usage", "-s", "nope"], 1);

    let secret = cli.ok(&["tokens", "create", "--name", "laptop"]);
    let secret = secret.trim().to_string();
    assert!(secret.starts_with("spr_"), "{secret}");
    let list = cli.ok(&["tokens", "list"]);
    let id = list
        .lines()
        .find(|l| l.contains("laptop"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("laptop is listed: {list}"))
        .to_string();
    assert!(!list.contains(&secret));

    // The new token works, and fails once revoked.
    let admin = std::mem::replace(&mut cli.token, secret);
    cli.ok(&["list"]);
    let as_admin = Cli {
        home: tempfile::tempdir().expect("home"),
        cwd: tempfile::tempdir().expect("cwd"),
        url: cli.url.clone(),
        token: admin,
    };
    as_admin.ok(&["tokens", "revoke", &id]);
    let err = cli.fails(&["list"], 1);
    assert!(err.contains("token") || err.contains("401"), "{err}");
}

#[test]
fn services_through_the_cli() {
    let d = Daemon::start();
    let cli = Cli::new(&d);
    cli.ok(&["create", "svc", "--skip-console"]);
    let out = cli.ok(&[
        "services",
        "create",
        "-s",
        "svc",
        "web",
        "--watch",
        "1",
        "--env",
        "WHO=cli",
        "--",
        "sh",
        "-c",
        "echo hello $WHO; sleep 1000",
    ]);
    assert!(
        out.contains("[started]") || out.contains("started"),
        "{out}"
    );
    assert!(out.contains("hello cli"), "{out}");
    let list = cli.ok(&["services", "list", "-s", "svc"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("web"))
        .unwrap_or_else(|| panic!("web is listed: {list}"));
    assert!(row.contains("running"), "{list}");
    let logs = cli.ok(&["services", "logs", "-s", "svc", "web", "-n", "5"]);
    assert!(logs.contains("hello cli"), "{logs}");
    let stopped = cli.ok(&["services", "stop", "-s", "svc", "web", "--timeout", "2"]);
    assert!(stopped.contains("stopped"), "{stopped}");
    let err = cli.fails(&["services", "stop", "-s", "svc", "web"], 1);
    assert!(err.contains("web"), "{err}");
    cli.ok(&["services", "start", "-s", "svc", "web", "--watch", "0"]);
    cli.ok(&["services", "delete", "-s", "svc", "web"]);
    let err = cli.fails(&["services", "logs", "-s", "svc", "web"], 1);
    assert!(err.contains("no service named web"), "{err}");
}

#[test]
fn network_policy_through_the_cli() {
    let d = Daemon::start();
    let cli = Cli::new(&d);
    cli.ok(&["create", "pol", "--skip-console"]);
    assert_eq!(
        cli.ok(&["policy", "show", "-s", "pol"]),
        "no rules: open egress\n"
    );
    let set = cli.ok(&[
        "policy",
        "set",
        "-s",
        "pol",
        "--include-defaults",
        "--allow",
        "example.com",
        "--deny",
        "*",
    ]);
    assert!(set.contains("example.com"), "{set}");
    let shown = cli.ok(&["policy", "show", "-s", "pol"]);
    assert!(
        shown.contains("include") && shown.contains("deny"),
        "{shown}"
    );
    cli.ok(&["policy", "clear", "-s", "pol"]);
    assert_eq!(
        cli.ok(&["policy", "show", "-s", "pol"]),
        "no rules: open egress\n"
    );
    cli.fails(&["policy", "show", "-s", "nope"], 1);
}

#[test]
fn privileges_policy_through_the_cli() {
    let d = Daemon::start();
    let cli = Cli::new(&d);
    cli.ok(&["create", "privs", "--skip-console"]);
    let show = ["policy", "privileges", "show", "-s", "privs"];
    assert_eq!(cli.ok(&show), "default privileges\n");
    let set = cli.ok(&[
        "policy",
        "privileges",
        "set",
        "-s",
        "privs",
        "--add",
        "net_raw",
        "--drop",
        "CAP_CHOWN",
    ]);
    assert!(
        set.contains("CAP_NET_RAW") && set.contains("CAP_CHOWN") && set.contains("next start"),
        "{set}"
    );
    assert!(cli.ok(&show).contains("drop"));
    let err = cli.fails(
        &[
            "policy",
            "privileges",
            "set",
            "-s",
            "privs",
            "--add",
            "CAP_SYS_ADMIN",
        ],
        1,
    );
    assert!(err.contains("cannot be granted"), "{err}");
    cli.ok(&["policy", "privileges", "clear", "-s", "privs"]);
    assert_eq!(cli.ok(&show), "default privileges\n");
}
