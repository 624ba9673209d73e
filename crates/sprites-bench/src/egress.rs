//! `egress`: the two datapaths side by side, each a daemon of its own in
//! the same run: the kernel's (a veth pair per sprite, the default) against
//! pasta (a process per sprite) as the baseline: create → first exec, 20
//! concurrent creates → first exec (wall time), and the host memory each
//! running idle sprite costs, with the PSS of the helper processes outside
//! it.

use std::time::{Duration, Instant};

use crate::{alternate, create, delete, exec_true, made_ahead, ms, start_daemon_with, Daemon, Row};

/// Sprites created at once in the concurrency row, and held running in the
/// memory note.
const MANY: usize = 20;

/// Memory the host has allocated to anything but its page cache, in KiB:
/// anonymous and shared memory, slab, kernel stacks, page tables, vmalloc
/// (`/proc/meminfo`). Every process's and kernel object's memory is in it,
/// and no file cache; `MemFree`/`MemAvailable` moved here by tens of MiB
/// between two readings with nothing started, so they cannot tell 1 MiB
/// per sprite.
pub(crate) fn allocated_kib() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/meminfo"))
    };
    let mut total = 0;
    for name in [
        "AnonPages",
        "Shmem",
        "Slab",
        "KernelStack",
        "PageTables",
        "VmallocUsed",
    ] {
        total += field(name)?;
    }
    Ok(total)
}

/// How many processes on the host run `sprite-agent` (one per running
/// sprite, of any daemon).
fn agents() -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "sprite-agent")
        })
        .count()
}

/// Waits until sprites deleted before are gone (a delete is answered
/// before its sandbox's teardown ends) and the count holds for 2 s.
/// Waits (up to a minute) until daemon `pid` spends under 5% of a core
/// over a second: what a start leaves to do in the background (the base
/// image's first upload to the object store, ...) done before what is
/// measured "at rest".
pub(crate) async fn quiet(pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let before = crate::cpu_ticks(pid)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if crate::cpu_ticks(pid)? - before < 5 {
            break;
        }
    }
    Ok(())
}

pub(crate) async fn settle() {
    let mut last = agents();
    let mut same_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while same_since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = agents();
        if now != last {
            last = now;
            same_since = Instant::now();
        }
    }
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

    let (ours, base) = alternate(http, &kernel, &pasta, runs, "egress").await?;
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

    // The same burst on a host that keeps MANY sandboxes made ahead (each
    // round once they are all made again), against one that keeps none.
    let ahead = start_daemon_with(&["--idle-warm", "1h", "--start-pool", &MANY.to_string()])?;
    let anew = start_daemon_with(&["--idle-warm", "1h", "--start-pool", "0"])?;
    for d in [&ahead, &anew] {
        create(http, d, "warmup-burst").await?;
        exec_true(d, "warmup-burst").await?;
    }
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..runs.clamp(1, 3) {
        for (d, samples, tag) in [(&ahead, &mut ours, "a"), (&anew, &mut base, "n")] {
            if std::ptr::eq(d, &ahead) {
                made_ahead(http, d, MANY).await?;
            }
            let prefix = format!("burst-{tag}{round}");
            samples.push(ms(many_at_once(http, d, &prefix, MANY).await?));
            for i in 0..MANY {
                delete(http, d, &format!("{prefix}-{i}")).await?;
            }
        }
    }
    rows.push(Row {
        case:
            "20 concurrent creates → first exec, wall, --start-pool 20 made (base: --start-pool 0)",
        ours,
        base,
        target: "≤ 500 ms",
    });
    drop((ahead, anew));

    // Host memory per running idle sprite, MANY on each datapath.
    // (Deleted sprites' teardown finishes first: it frees memory too.)
    for (d, label) in [(&kernel, "kernel"), (&pasta, "pasta"), (&kernel, "kernel")] {
        settle().await;
        let before = allocated_kib()?;
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!(
                "before {label}: {before} kB, pastas {:?}, agents {}",
                pasta_pss_kib(d),
                agents()
            );
        }
        let prefix = format!("mem-{label}-{}", notes.len());
        many_at_once(http, d, &prefix, MANY).await?;
        settle().await;
        let after = allocated_kib()?;
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!(
                "after {label}: {after} kB, pastas {:?}, agents {}",
                pasta_pss_kib(d),
                agents()
            );
        }
        let (pss, helpers) = pasta_pss_kib(d);
        notes.push(format!(
            "egress case, {label} datapath: host memory allocated per running idle sprite, its own and the host's for it (anon + shmem + slab + stacks + page tables + vmalloc, delta / {MANY}): {:.1} MiB; helper processes outside the sprites: {helpers}, PSS {:.1} MiB each",
            (after as f64 - before as f64) / MANY as f64 / 1024.0,
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
