//! `egress`: the two datapaths side by side, each a daemon of its own in
//! the same run: the kernel's (a veth pair per sprite, the default) against
//! pasta (a process per sprite) as the baseline: create → first exec, 20
//! concurrent creates → first exec (wall time), and the host memory each
//! running idle sprite costs, with the PSS of the helper processes outside
//! it.

use std::time::{Duration, Instant};

use crate::{create, delete, exec_true, ms, start_daemon_with, Daemon, Row};

/// Sprites created at once in the concurrency row, and held running in the
/// memory note.
const MANY: usize = 20;

/// `MemAvailable` of the host, in KiB.
fn mem_available_kib() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no MemAvailable in /proc/meminfo"))
}

/// PSS (KiB) of the pasta processes serving daemon `d`'s sprites (their
/// command lines name its data dir), and how many there are.
fn pasta_pss_kib(d: &Daemon) -> (u64, usize) {
    let needle = d.data.display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    let mut total = 0;
    let mut count = 0;
    for pid in procs.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if !cmd.starts_with("pasta") || !cmd.contains(&needle) {
            continue;
        }
        let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("Pss:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        total += pss;
        count += 1;
    }
    (total, count)
}

/// Creates `n` sprites at once and waits for each one's first exec; the
/// wall time of the whole.
async fn many_at_once(
    http: &reqwest::Client,
    d: &Daemon,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let each = (0..n).map(|i| async move {
        let name = format!("{prefix}-{i}");
        create(http, d, &name).await?;
        exec_true(d, &name).await
    });
    for done in futures_util::future::join_all(each).await {
        done?;
    }
    Ok(t.elapsed())
}

pub(crate) async fn cases(
    http: &reqwest::Client,
    runs: usize,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let kernel = start_daemon_with(&["--idle-warm", "1h", "--egress", "kernel"])?;
    let pasta = start_daemon_with(&["--idle-warm", "1h", "--egress", "pasta"])?;
    for d in [&kernel, &pasta] {
        create(http, d, "warmup-egress").await?;
        exec_true(d, "warmup-egress").await?;
    }

    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 0..runs {
        for (d, samples) in [(&kernel, &mut ours), (&pasta, &mut base)] {
            let name = format!("egress-{i}");
            let t = Instant::now();
            create(http, d, &name).await?;
            exec_true(d, &name).await?;
            samples.push(ms(t.elapsed()));
            delete(http, d, &name).await?;
        }
    }
    rows.push(Row {
        case: "create → first exec, egress on (kernel datapath; base: pasta)",
        ours,
        base,
        target: "p50 ≤ 15 ms, p95 ≤ 25 ms",
    });

    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..runs.clamp(1, 3) {
        for (d, samples, tag) in [(&kernel, &mut ours, "k"), (&pasta, &mut base, "p")] {
            let prefix = format!("many-{tag}{round}");
            samples.push(ms(many_at_once(http, d, &prefix, MANY).await?));
            for i in 0..MANY {
                delete(http, d, &format!("{prefix}-{i}")).await?;
            }
        }
    }
    rows.push(Row {
        case: "20 concurrent creates → first exec, wall (kernel datapath; base: pasta)",
        ours,
        base,
        target: "≤ 500 ms",
    });

    // Host memory per running idle sprite, MANY on each datapath.
    for (d, label) in [(&kernel, "kernel"), (&pasta, "pasta")] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = mem_available_kib()?;
        let prefix = format!("mem-{label}");
        many_at_once(http, d, &prefix, MANY).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = mem_available_kib()?;
        let (pss, helpers) = pasta_pss_kib(d);
        notes.push(format!(
            "egress case, {label} datapath: host memory per running idle sprite (MemAvailable drop / {MANY}): {:.1} MiB; helper processes outside the sprites: {helpers}, PSS {:.1} MiB each",
            before.saturating_sub(after) as f64 / MANY as f64 / 1024.0,
            if helpers == 0 { 0.0 } else { pss as f64 / helpers as f64 / 1024.0 }
        ));
        for i in 0..MANY {
            delete(http, d, &format!("{prefix}-{i}")).await?;
        }
    }
    for d in [&kernel, &pasta] {
        delete(http, d, "warmup-egress").await?;
    }
    Ok(())
}
