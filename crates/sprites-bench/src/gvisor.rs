//! `gvisor`: the same operations on a `gvisor` sprite and on a `container`
//! one of the same daemon, in the same run, and bare runsc (run + exec of
//! the same image, no daemon) as the gVisor baseline: create → first exec,
//! exec round trip, checkpoint, warm and cold wake, URL requests, and the
//! host memory each running sprite costs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::{
    create_json, delete, exec_true, ms, ndjson, sh, start_daemon_with, wait_status, Daemon, Row,
};

const LEVELS: [&str; 2] = ["gvisor", "container"];

async fn create_at(
    http: &reqwest::Client,
    d: &Daemon,
    name: &str,
    level: &str,
) -> anyhow::Result<()> {
    create_json(
        http,
        d,
        serde_json::json!({"name": name, "config": {"isolation": level}}),
    )
    .await
}

fn runsc(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new("runsc")
        .arg("--root")
        .arg(root)
        .args(["--platform=ptrace", "--network=none"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("runsc {args:?} failed");
    }
    Ok(())
}

/// `MemAvailable` of the host, in KiB.
fn mem_available_kib() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no MemAvailable in /proc/meminfo"))
}

pub(crate) async fn cases(
    http: &reqwest::Client,
    runs: usize,
    bundle: &str,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let d = start_daemon_with(&["--idle-warm", "1h"])?;
    for level in LEVELS {
        let name = format!("warm-{level}");
        create_at(http, &d, &name, level).await?;
        exec_true(&d, &name).await?;
    }
    let root = tempfile::Builder::new()
        .prefix("runsc-bench-")
        .tempdir_in("/var/tmp")?;
    let state = root.path().join("state");

    // Create → first exec.
    let (mut gv, mut ct, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        for (level, samples) in [("gvisor", &mut gv), ("container", &mut ct)] {
            let name = format!("c-{level}-{i}");
            let t = Instant::now();
            create_at(http, &d, &name, level).await?;
            exec_true(&d, &name).await?;
            samples.push(ms(t.elapsed()));
            delete(http, &d, &name).await?;
        }
        let id = format!("bare-{i}");
        let t = Instant::now();
        runsc(&state, &["run", "--detach", "--bundle", bundle, &id])?;
        runsc(&state, &["exec", &id, "true"])?;
        bare.push(ms(t.elapsed()));
        runsc(&state, &["delete", "--force", &id])?;
    }
    rows.push(Row {
        case: "gvisor: create → first exec (base: bare runsc run + exec)",
        ours: gv.clone(),
        base: bare,
        target: "≤ 1.5× bare runsc",
    });
    rows.push(Row {
        case: "gvisor: create → first exec (base: container)",
        ours: gv,
        base: ct,
        target: "reported",
    });

    // Exec round trip.
    let id = "bare-exec";
    runsc(&state, &["run", "--detach", "--bundle", bundle, id])?;
    let (mut gv, mut ct, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        for (level, samples) in [("gvisor", &mut gv), ("container", &mut ct)] {
            let t = Instant::now();
            exec_true(&d, &format!("warm-{level}")).await?;
            samples.push(ms(t.elapsed()));
        }
        let t = Instant::now();
        runsc(&state, &["exec", id, "true"])?;
        bare.push(ms(t.elapsed()));
    }
    runsc(&state, &["delete", "--force", id])?;
    rows.push(Row {
        case: "gvisor: exec round trip (base: bare runsc exec)",
        ours: gv.clone(),
        base: bare,
        target: "≤ bare runsc exec",
    });
    rows.push(Row {
        case: "gvisor: exec round trip (base: container)",
        ours: gv,
        base: ct,
        target: "reported",
    });

    // Checkpoint of a running sprite with a little written.
    let (mut gv, mut ct) = (Vec::new(), Vec::new());
    for i in 0..runs.min(20) {
        for (level, samples) in [("gvisor", &mut gv), ("container", &mut ct)] {
            let name = format!("warm-{level}");
            sh(http, &d, &name, &format!("echo {i} > /home/sprite/n")).await?;
            let t = Instant::now();
            ndjson(http, &d, &format!("/v1/sprites/{name}/checkpoint")).await?;
            samples.push(ms(t.elapsed()));
        }
    }
    rows.push(Row {
        case: "gvisor: checkpoint (base: container)",
        ours: gv,
        base: ct,
        target: "≤ 1.2× container",
    });

    // URL requests: a busybox httpd in each, one request at a time.
    let port = d.url.rsplit(':').next().unwrap_or("0").to_string();
    for level in LEVELS {
        sh(
            http,
            &d,
            &format!("warm-{level}"),
            "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && \
             setsid busybox httpd -f -p 8080 -h /tmp/www >/dev/null 2>&1 </dev/null & sleep 0.3",
        )
        .await?;
    }
    let mut per = Vec::new();
    for level in LEVELS {
        let mut samples = Vec::new();
        let host = format!("warm-{level}.sprites.localhost:{port}");
        let started = Instant::now();
        for _ in 0..runs * 10 {
            let t = Instant::now();
            let r = http
                .get(format!("{}/index.html", d.url))
                .header("host", &host)
                .bearer_auth(&d.token)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("{host}: {}", r.status());
            }
            r.bytes().await?;
            samples.push(ms(t.elapsed()));
        }
        let rps = samples.len() as f64 / started.elapsed().as_secs_f64();
        notes.push(format!(
            "gvisor case: {level} sprite URL, one request at a time: {rps:.0} requests/s"
        ));
        per.push(samples);
    }
    let ct = per.pop().unwrap_or_default();
    let gv = per.pop().unwrap_or_default();
    rows.push(Row {
        case: "gvisor: URL request, busybox httpd (base: container)",
        ours: gv,
        base: ct,
        target: "reported",
    });

    // Host memory per running idle sprite, 5 of each level.
    for level in LEVELS {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = mem_available_kib()?;
        for i in 0..5 {
            let name = format!("m-{level}-{i}");
            create_at(http, &d, &name, level).await?;
            exec_true(&d, &name).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = mem_available_kib()?;
        notes.push(format!(
            "gvisor case: host memory per running idle {level} sprite (MemAvailable drop / 5): {:.1} MiB",
            before.saturating_sub(after) as f64 / 5.0 / 1024.0
        ));
        for i in 0..5 {
            delete(http, &d, &format!("m-{level}-{i}")).await?;
        }
    }
    for level in LEVELS {
        delete(http, &d, &format!("warm-{level}")).await?;
    }
    drop(d);

    // Warm and cold wakes, on a daemon that idles quickly.
    let d = start_daemon_with(&["--idle-warm", "500ms", "--idle-cold", "1500ms"])?;
    for level in LEVELS {
        create_at(http, &d, &format!("life-{level}"), level).await?;
    }
    for (want, case) in [
        ("warm", "gvisor: warm → first exec (base: container)"),
        ("cold", "gvisor: cold → first exec (base: container)"),
    ] {
        let (mut gv, mut ct) = (Vec::new(), Vec::new());
        for _ in 0..runs.min(10) {
            for (level, samples) in [("gvisor", &mut gv), ("container", &mut ct)] {
                let name = format!("life-{level}");
                exec_true(&d, &name).await?;
                wait_status(http, &d, &name, want).await?;
                let t = Instant::now();
                exec_true(&d, &name).await?;
                samples.push(ms(t.elapsed()));
            }
        }
        rows.push(Row {
            case,
            ours: gv,
            base: ct,
            target: "reported",
        });
    }
    for level in LEVELS {
        delete(http, &d, &format!("life-{level}")).await?;
    }
    Ok(())
}
