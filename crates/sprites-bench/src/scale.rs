//! `scale`: many running sprites on one host (`--sprites`, 500 by
//! default). They are created 8 at a time, each answering an exec, while
//! a client lists sprites every 100 ms; then, all running, what the host
//! and the daemon spend on them, an exec in each, and the list's latency
//! at rest; then the daemon is restarted with short idle timers (it adopts
//! them all), they go warm and are woken by an exec each, go cold and are
//! woken again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};

use crate::egress::{allocated_kib, settle};
use crate::{cpu_ticks, create, delete, exec_true, ms, start_daemon_with, Daemon, Row};

/// Creates, execs and deletes in flight at once.
const AT_ONCE: usize = 8;

/// Lists sprites (one page) every 100 ms until `stop`; the latencies.
fn lister(url: String, token: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<f64>> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let ok = http
                .get(format!("{url}/v1/sprites"))
                .bearer_auth(&token)
                .send()
                .await
                .map(|r| r.status().is_success());
            if let Ok(true) = ok {
                samples.push(ms(t.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        samples
    })
}

/// `(running, warm, cold)` as the list's counts say.
async fn counts(http: &reqwest::Client, d: &Daemon) -> anyhow::Result<(u64, u64, u64)> {
    let v: serde_json::Value = http
        .get(format!("{}/v1/sprites?max_results=1", d.url))
        .bearer_auth(&d.token)
        .send()
        .await?
        .json()
        .await?;
    let c = &v["org"];
    let n = |k: &str| c[k].as_u64().context("counts");
    Ok((n("running")?, n("warm")?, n("cold")?))
}

/// Waits until `pick` of the counts reaches `want` (at most `within`).
async fn wait_counts(
    http: &reqwest::Client,
    d: &Daemon,
    what: &str,
    want: u64,
    within: Duration,
    pick: impl Fn((u64, u64, u64)) -> u64,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        let c = counts(http, d).await?;
        if pick(c) >= want {
            return Ok(t.elapsed());
        }
        if t.elapsed() > within {
            anyhow::bail!(
                "only {} of {want} sprites {what} after {within:?}: {c:?}",
                pick(c)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An exec in each sprite, `AT_ONCE` at a time: each one's latency.
async fn exec_each(d: &Daemon, names: &[String]) -> anyhow::Result<Vec<f64>> {
    futures_util::stream::iter(names.iter().map(|name| async move {
        let t = Instant::now();
        exec_true(d, name).await?;
        Ok::<f64, anyhow::Error>(ms(t.elapsed()))
    }))
    .buffer_unordered(AT_ONCE)
    .try_collect()
    .await
}

/// The list's p99 and worst latency `when`, as a note.
fn tail_note(when: &str, samples: &[f64]) -> String {
    let mut l = samples.to_vec();
    format!(
        "scale: GET /v1/sprites {when}: p99 {:.1} ms, max {:.1} ms ({} requests)",
        crate::pct(&mut l, 0.99),
        crate::pct(&mut l, 1.0),
        l.len()
    )
}

pub(crate) async fn run(n: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut d = start_daemon_with(&["--idle-warm", "1h", "--idle-cold", "2h"])?;
    create(&http, &d, "warmup").await?;
    exec_true(&d, "warmup").await?;
    settle().await;
    let mem0 = allocated_kib()?;
    let names: Vec<String> = (0..n).map(|i| format!("s{i:04}")).collect();
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    // Create them all, 8 at a time, each answering an exec; list meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let listing = lister(d.url.clone(), d.token.clone(), stop.clone());
    let per_create = Arc::new(Mutex::new(Vec::new()));
    let t = Instant::now();
    futures_util::stream::iter(names.iter().map(|name| {
        let (http, d, per_create) = (&http, &d, per_create.clone());
        async move {
            let t = Instant::now();
            create(http, d, name).await?;
            exec_true(d, name).await?;
            per_create
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ms(t.elapsed()));
            Ok::<(), anyhow::Error>(())
        }
    }))
    .buffer_unordered(AT_ONCE)
    .try_collect::<()>()
    .await?;
    let create_wall = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let list_while_creating = listing.await?;
    notes.push(tail_note("while creating", &list_while_creating));
    let creates = std::mem::take(&mut *per_create.lock().unwrap_or_else(|p| p.into_inner()));
    notes.push(format!(
        "scale: {n} sprites created and answering an exec in {:.1} s ({:.1} per second, {AT_ONCE} at a time)",
        create_wall.as_secs_f64(),
        n as f64 / create_wall.as_secs_f64()
    ));
    rows.push(Row {
        case: "scale: create → first exec, 8 at a time, up to N running",
        ours: creates,
        base: Vec::new(),
        target: "reported",
    });
    rows.push(Row {
        case: "scale: GET /v1/sprites while N are created",
        ours: list_while_creating,
        base: Vec::new(),
        target: "p99 < 50 ms",
    });

    // All running: memory, the daemon's RSS and CPU at rest, the list, an
    // exec in each.
    let (running, _, _) = counts(&http, &d).await?;
    settle().await;
    crate::egress::quiet(d.pid()).await?;
    let mem1 = allocated_kib()?;
    let cpu0 = cpu_ticks(d.pid())?;
    let stop = Arc::new(AtomicBool::new(false));
    let listing = lister(d.url.clone(), d.token.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let list_at_rest = listing.await?;
    notes.push(tail_note("with all running, at rest", &list_at_rest));
    let cpu = (cpu_ticks(d.pid())? - cpu0) as f64 / 100.0 / 10.0 * 100.0;
    notes.push(format!(
        "scale: {running} running (+ warmup): host memory allocated {:.2} MiB per sprite (the sprite's own and the host's for it), {:.1} GiB in all; daemon RSS {:.0} MiB; daemon CPU at rest {cpu:.1}% of one core (10 s, listing every 100 ms)",
        (mem1 as f64 - mem0 as f64) / n as f64 / 1024.0,
        (mem1 as f64 - mem0 as f64) / 1024.0 / 1024.0,
        sprites_test_support::rss_kib(d.pid()) as f64 / 1024.0,
    ));
    rows.push(Row {
        case: "scale: GET /v1/sprites with N running, at rest",
        ours: list_at_rest,
        base: Vec::new(),
        target: "p99 < 50 ms",
    });
    rows.push(Row {
        case: "scale: exec in each of N running sprites, 8 at a time",
        ours: exec_each(&d, &names).await?,
        base: Vec::new(),
        target: "each answers",
    });

    // Restart with short timers: every sprite is adopted, goes warm, wakes.
    for (flag, value) in [("--idle-warm", "5s"), ("--idle-cold", "40s")] {
        if let Some(i) = d.args.iter().position(|a| a == flag) {
            if let Some(v) = d.args.get_mut(i + 1) {
                *v = value.into();
            }
        }
    }
    let t = Instant::now();
    d.restart()?;
    notes.push(format!(
        "scale: daemon SIGKILLed and restarted with {n} running sprites: answering in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    let all = n as u64 + 1;
    let went = wait_counts(&http, &d, "warm", all, Duration::from_secs(120), |c| c.1).await?;
    notes.push(format!(
        "scale: all {all} warm {:.1} s after the restart (idle-warm 5 s)",
        went.as_secs_f64()
    ));
    rows.push(Row {
        case: "scale: warm → exec, each of N, 8 at a time",
        ours: exec_each(&d, &names).await?,
        base: Vec::new(),
        target: "each answers",
    });
    let went = wait_counts(&http, &d, "cold", all, Duration::from_secs(300), |c| c.2).await?;
    notes.push(format!(
        "scale: all {all} cold {:.1} s after the wakes (idle-warm 5 s, idle-cold 40 s)",
        went.as_secs_f64()
    ));
    let t = Instant::now();
    rows.push(Row {
        case: "scale: cold → exec, each of N, 8 at a time",
        ours: exec_each(&d, &names).await?,
        base: Vec::new(),
        target: "each answers",
    });
    notes.push(format!(
        "scale: {n} cold sprites woken by an exec each in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    futures_util::stream::iter(names.iter().map(|name| {
        let (http, d) = (&http, &d);
        async move { delete(http, d, name).await }
    }))
    .buffer_unordered(AT_ONCE)
    .try_collect::<()>()
    .await?;
    delete(&http, &d, "warmup").await?;
    println!("sprites: {n}");
    crate::print(&mut rows);
    for note in notes {
        println!("{note}");
    }
    Ok(())
}
