//! `replication`: continuous replication (issue 15). A writer appending
//! random data at 1 and 10 MiB/s for 30 s, with replication every 5 s
//! against the same writer with replication off, in the same run: the
//! daemon's CPU, the bytes sent per byte written, and how old the newest
//! snapshot gets (the achieved RPO). A restore of a checkpoint whose
//! image is only in the object store, against one from local disk. And a
//! whole host lost (data dir deleted) with 20 replicated sprites: the time
//! `sprited recover` takes, and until each answers an exec, against the
//! same 20 sprites evicted on their intact host, woken in turn.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use crate::{
    create, daemon_cpu, delete, exec_true, kill_within, metric, ms, sh, spawn_daemon,
    start_daemon_with, Daemon, Row,
};

const WINDOW: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn get_json(
    http: &reqwest::Client,
    d: &Daemon,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let r = http
        .get(format!("{}{path}", d.url))
        .bearer_auth(&d.token)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("GET {path}: {} {}", r.status(), r.text().await?);
    }
    Ok(r.json().await?)
}

/// The newest snapshot's time (unix ms), if any.
async fn newest(http: &reqwest::Client, d: &Daemon, name: &str) -> anyhow::Result<Option<u64>> {
    let list = get_json(http, d, &format!("/v1/sprites/{name}/snapshots")).await?;
    Ok(list[0]["id"].as_str().and_then(|s| s.parse().ok()))
}

struct WriterRun {
    cpu_pct: f64,
    written: u64,
    sent: f64,
    /// Ages of the newest snapshot, sampled while writing (ms).
    ages: Vec<f64>,
}

/// The writer at `mib_per_s` for [`WINDOW`] on a daemon replicating every
/// `every` (`0`: off).
async fn writer_run(
    http: &reqwest::Client,
    mib_per_s: u64,
    every: &str,
) -> anyhow::Result<WriterRun> {
    let d = start_daemon_with(&["--replicate-every", every, "--idle-warm", "1h"])?;
    let name = "writer";
    create(http, &d, name).await?;
    let on = every != "0";
    if on {
        let deadline = Instant::now() + Duration::from_secs(60);
        while newest(http, &d, name).await?.is_none() {
            if Instant::now() > deadline {
                bail!("no first snapshot");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let sent0 = metric(http, &d, "sprited_replication_bytes_total").await?;
    let secs = WINDOW.as_secs();
    // Paced by a second's sleep after each write (the rate reported is
    // what was written).
    let script = format!(
        "for i in $(seq 1 {secs}); do head -c {} /dev/urandom >> /home/sprite/w; \
         sync /home/sprite/w; sleep 1; done",
        mib_per_s << 20
    );
    let writer = {
        let (http, url, token) = (http.clone(), d.url.clone(), d.token.clone());
        tokio::spawn(async move { crate::sh_at(&http, &url, &token, name, &script).await })
    };
    let sampler = async {
        let mut ages = Vec::new();
        let end = Instant::now() + WINDOW;
        while Instant::now() < end {
            if on {
                if let Some(t) = newest(http, &d, name).await? {
                    ages.push(now_ms().saturating_sub(t) as f64);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::Ok(ages)
    };
    let (cpu, ages) = tokio::join!(daemon_cpu(d.child.id(), WINDOW), sampler);
    let (cpu_pct, ages) = (cpu?, ages?);
    match writer.await.context("writer task")? {
        Ok((0, _)) => {}
        Ok((code, out)) => bail!("the writer failed ({code}): {out}"),
        Err(e) => bail!("the writer: {e}"),
    }
    if on {
        // Its last writes too.
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    let written = get_json(
        http,
        &d,
        &format!("/v1/sprites/{name}/fs/stat?path=/home/sprite/w"),
    )
    .await?["size"]
        .as_u64()
        .context("size written")?;
    let sent = metric(http, &d, "sprited_replication_bytes_total").await? - sent0;
    delete(http, &d, name).await?;
    Ok(WriterRun {
        cpu_pct,
        written,
        sent,
        ages,
    })
}

/// A restore's time to its `complete` line.
async fn restore(http: &reqwest::Client, d: &Daemon, name: &str, ck: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let body = http
        .post(format!(
            "{}/v1/sprites/{name}/checkpoints/{ck}/restore",
            d.url
        ))
        .bearer_auth(&d.token)
        .send()
        .await?
        .text()
        .await?;
    if !body.contains("\"complete\"") {
        bail!("restore {ck}: {body}");
    }
    Ok(ms(t.elapsed()))
}

pub async fn cases(
    http: &reqwest::Client,
    runs: usize,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    for rate in [1u64, 10] {
        let on = writer_run(http, rate, "5s").await?;
        let off = writer_run(http, rate, "0").await?;
        let mut ages = on.ages.clone();
        let p50 = crate::pct(&mut ages, 0.5) / 1e3;
        let max = ages.iter().copied().fold(0.0, f64::max) / 1e3;
        notes.push(format!(
            "replication every 5 s, writer of {rate} MiB each second (random data, fsynced) for {} s: \
             daemon CPU {:.1} % of one core (same writer, replication off: {:.1} %; replication {:.1} %, target ≤ 5 % at 10 MiB/s); \
             {:.2} bytes sent per byte written ({:.1} MiB written); newest snapshot's age while writing p50 {p50:.1} s, max {max:.1} s (RPO; bound: 5 s + tick + upload)",
            WINDOW.as_secs(),
            on.cpu_pct,
            off.cpu_pct,
            on.cpu_pct - off.cpu_pct,
            on.sent / on.written.max(1) as f64,
            on.written as f64 / 1048576.0,
        ));
    }

    // A checkpoint restored from local disk, then with its local image gone
    // (fetched from the store first).
    let d = start_daemon_with(&[])?;
    let name = "durable";
    create(http, &d, name).await?;
    sh(
        http,
        &d,
        name,
        "head -c 67108864 /dev/urandom > /home/sprite/data; sync",
    )
    .await?;
    let r = http
        .post(format!("{}/v1/sprites/{name}/checkpoint", d.url))
        .bearer_auth(&d.token)
        .send()
        .await?
        .text()
        .await?;
    if !r.contains("\"complete\"") {
        bail!("checkpoint: {r}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = get_json(http, &d, &format!("/v1/sprites/{name}")).await?;
        if s["storage"]["checkpoints_in_object_store"] == 1 {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            let image = d
                .data
                .join("pool/sprites")
                .join(&id)
                .join("checkpoints/v0.img");
            let (mut local, mut stored) = (Vec::new(), Vec::new());
            for _ in 0..runs.min(5) {
                local.push(restore(http, &d, name, "v0").await?);
                std::fs::remove_file(&image).context("removing the local image")?;
                stored.push(restore(http, &d, name, "v0").await?);
            }
            rows.push(Row {
                case: "restore of a checkpoint (64 MiB of data) whose image is only in the object store",
                ours: stored,
                base: local,
                target: "— ; baseline = the same restore from local disk",
            });
            break;
        }
        if Instant::now() > deadline {
            bail!("the checkpoint never reached the store: {s}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    delete(http, &d, name).await?;
    drop(d);
    recover_case(http, rows, notes).await
}

/// Sprites of the host-loss case.
const FLEET: usize = 20;

/// Each sprite's first exec, in turn (ms each), after a start.
async fn first_execs(d: &Daemon) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for i in 0..FLEET {
        let t = Instant::now();
        exec_true(d, &format!("fleet-{i}")).await?;
        times.push(ms(t.elapsed()));
    }
    Ok(times)
}

/// 20 sprites with 8 MiB each, replicated; the host lost and recovered.
async fn recover_case(
    http: &reqwest::Client,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let store = tempfile::Builder::new()
        .prefix("sprited-bench-store-")
        .tempdir_in("/var/tmp")?;
    let url = format!("file://{}", store.path().display());
    let mut d = start_daemon_with(&[
        "--object-store",
        &url,
        "--replicate-every",
        "2s",
        "--idle-warm",
        "1h",
    ])?;
    let written = now_ms();
    for i in 0..FLEET {
        let name = format!("fleet-{i}");
        create(http, &d, &name).await?;
        sh(
            http,
            &d,
            &name,
            "head -c 8388608 /dev/urandom > /home/sprite/data; sync",
        )
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..FLEET {
        let name = format!("fleet-{i}");
        while newest(http, &d, &name).await?.is_none_or(|at| at < written) {
            if Instant::now() > deadline {
                bail!("{name} was never replicated");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Give the metadata sweep one more tick.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Baseline: the same sprites evicted on their intact host (what a
    // recovered sprite is: its volume in the store), woken in turn.
    for i in 0..FLEET {
        let r = http
            .post(format!("{}/v1/sprites/fleet-{i}/evict", d.url))
            .bearer_auth(&d.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("evict fleet-{i}: {}", r.status());
        }
    }
    let intact = first_execs(&d).await?;

    // The host lost: daemon and sandboxes killed, the data dir deleted.
    if let Err(stuck) = kill_within(&mut d.child, Duration::from_secs(30)) {
        bail!("the daemon did not exit: {stuck}");
    }
    let purged = std::process::Command::new(&d.bin)
        .args(["purge", "--data-dir"])
        .arg(&d.data)
        .status()?;
    if !purged.success() || d.data.exists() {
        bail!("purge failed");
    }
    let t = Instant::now();
    let out = std::process::Command::new(&d.bin)
        .args(&d.args)
        .arg("recover")
        .env("SPRITED_TOKEN", &d.token)
        .output()?;
    let recover_ms = ms(t.elapsed());
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !said.contains(&format!("{FLEET} sprites brought back")) {
        bail!(
            "sprited recover: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let t = Instant::now();
    d.child = spawn_daemon(&d.bin, &d.data, &d.args, &d.env, &d.token)?;
    d.wait_ready()?;
    let start_ms = ms(t.elapsed());
    let t = Instant::now();
    let recovered = first_execs(&d).await?;
    let all_ms = ms(t.elapsed());
    for i in 0..FLEET {
        sh(
            http,
            &d,
            &format!("fleet-{i}"),
            "test \"$(wc -c < /home/sprite/data)\" = 8388608",
        )
        .await
        .with_context(|| format!("fleet-{i} came back without its data"))?;
    }
    notes.push(format!(
        "host lost with {FLEET} sprites (8 MiB written each, replicated; data dir deleted):          `sprited recover` {:.1} s (image fetched from the store included), daemon start {:.1} s,          then all {FLEET} answering an exec {:.1} s (each woken from the store in turn);          {:.1} s from the command to the last sprite answering",
        recover_ms / 1e3,
        start_ms / 1e3,
        all_ms / 1e3,
        (recover_ms + start_ms + all_ms) / 1e3,
    ));
    rows.push(Row {
        case: "first exec of each of 20 sprites recovered from the store alone",
        ours: recovered,
        base: intact,
        target: "— ; baseline = the same sprites evicted on their intact host",
    });
    Ok(())
}
