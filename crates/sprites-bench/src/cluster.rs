//! `cluster`: three hosts sharing a PostgreSQL database (issue 16), every
//! one serving, each sprite held by one. Against the holder itself, in
//! the same run: an exec round trip and a `GET` of a sprite through
//! another host (forwarded); that host's requests per second (8 clients,
//! 3 s) against the holder's; creates through one host, spread over the
//! three; and the time from the holder's death (daemon and sandboxes gone)
//! to its sprite answering an exec through another host, with
//! `--host-timeout 3s`.

use std::time::{Duration, Instant};

use anyhow::bail;
use sprites_test_support::postgres::Postgres;

use crate::{create, exec_true, ms, sh, start_daemon_env, Daemon, Row};

/// How long a host may go without renewing before it is taken over here.
const HOST_TIMEOUT: &str = "3s";

/// The host holding sprite `name`, as `d` shows it.
async fn host_of(http: &reqwest::Client, d: &Daemon, name: &str) -> anyhow::Result<String> {
    let v = crate::sprite_json(http, d, name).await?;
    Ok(v["host"].as_str().unwrap_or_default().to_string())
}

async fn get(http: &reqwest::Client, d: &Daemon, path: &str) -> anyhow::Result<()> {
    let r = http
        .get(format!("{}{path}", d.url))
        .bearer_auth(&d.token)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("GET {path}: {}", r.status());
    }
    r.bytes().await?;
    Ok(())
}

/// Requests per second of `GET path` from 8 clients for 3 s.
async fn rate(http: &reqwest::Client, d: &Daemon, path: &str) -> anyhow::Result<f64> {
    let until = Instant::now() + Duration::from_secs(3);
    let t = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (http, url, token, path) = (
            http.clone(),
            d.url.clone(),
            d.token.clone(),
            path.to_string(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let r = http
                    .get(format!("{url}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("GET {path}: {}", r.status());
                }
                r.bytes().await?;
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        }));
    }
    let mut total = 0;
    for c in clients {
        total += c.await??;
    }
    Ok(total as f64 / t.elapsed().as_secs_f64())
}

pub async fn cases(
    http: &reqwest::Client,
    runs: usize,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let pg = Postgres::start();
    let url = pg.create_database("bench");
    let objects = tempfile::Builder::new()
        .prefix("sprited-bench-objects-")
        .tempdir_in("/var/tmp")?;
    let store = format!("file://{}", objects.path().display());
    let env = vec![("SPRITED_DATABASE".to_string(), url)];
    let flags = |host: &'static str| {
        vec![
            "--host-id",
            host,
            "--host-timeout",
            HOST_TIMEOUT,
            "--replicate-every",
            "1s",
        ]
    };
    let start = |host: &'static str| {
        let mut f = flags(host);
        f.extend(["--object-store", store.as_str()]);
        // The same token for all (one secret per cluster: the bench gives
        // every daemon it starts the same).
        start_daemon_env(&f, &env)
    };
    // `serving` holds the sprite measured (made before the others start);
    // `other` is another host, through which requests are forwarded.
    let serving = start("h1")?;
    create(http, &serving, "cl").await?;
    exec_true(&serving, "cl").await?;
    let other = start("h2")?;
    let third = start("h3")?;
    exec_true(&other, "cl").await?;

    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        exec_true(&other, "cl").await?;
        ours.push(ms(t.elapsed()));
        let t = Instant::now();
        exec_true(&serving, "cl").await?;
        base.push(ms(t.elapsed()));
    }
    rows.push(Row {
        case: "exec round trip through another host (base: on the sprite's host)",
        ours,
        base,
        target: "the forwarding adds < 2 ms",
    });
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        get(http, &other, "/v1/sprites/cl").await?;
        ours.push(ms(t.elapsed()));
        let t = Instant::now();
        get(http, &serving, "/v1/sprites/cl").await?;
        base.push(ms(t.elapsed()));
    }
    rows.push(Row {
        case: "GET /v1/sprites/{name} through another host (base: the sprite's host)",
        ours,
        base,
        target: "",
    });
    // The metadata on PostgreSQL against SQLite (a daemon of its own).
    let lite = crate::start_daemon()?;
    create(http, &lite, "cl").await?;
    exec_true(&lite, "cl").await?;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        get(http, &serving, "/v1/sprites/cl").await?;
        ours.push(ms(t.elapsed()));
        let t = Instant::now();
        get(http, &lite, "/v1/sprites/cl").await?;
        base.push(ms(t.elapsed()));
    }
    rows.push(Row {
        case: "GET /v1/sprites/{name}, metadata on PostgreSQL (base: SQLite)",
        ours,
        base,
        target: "",
    });
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 0..runs.min(10) {
        for (d, samples) in [(&serving, &mut ours), (&lite, &mut base)] {
            let name = format!("cl-new-{i}");
            let t = Instant::now();
            create(http, d, &name).await?;
            exec_true(d, &name).await?;
            samples.push(ms(t.elapsed()));
            crate::delete(http, d, &name).await?;
        }
    }
    rows.push(Row {
        case: "create → first exec, metadata on PostgreSQL (base: SQLite)",
        ours,
        base,
        target: "",
    });
    drop(lite);

    // Creates through one host, placed over the three.
    let mut placed = std::collections::BTreeMap::<String, usize>::new();
    let mut took = Vec::new();
    for i in 0..12 {
        let name = format!("cl-spread-{i}");
        let t = Instant::now();
        create(http, &other, &name).await?;
        exec_true(&other, &name).await?;
        took.push(ms(t.elapsed()));
        *placed
            .entry(host_of(http, &other, &name).await?)
            .or_default() += 1;
    }
    for i in 0..12 {
        crate::delete(http, &other, &format!("cl-spread-{i}")).await?;
    }
    took.sort_by(f64::total_cmp);
    notes.push(format!(
        "cluster: 12 creates → first exec through h2, placed over three hosts (h1 holding one \
         sprite already): {placed:?}; p50 {:.1} ms",
        took[took.len() / 2]
    ));
    drop(third);
    let through = rate(http, &other, "/v1/sprites/cl").await?;
    let direct = rate(http, &serving, "/v1/sprites/cl").await?;
    notes.push(format!(
        "cluster: GET /v1/sprites/cl, 8 clients for 3 s: {through:.0} req/s through another host, \
         {direct:.0} req/s on the sprite's host"
    ));

    // The serving host dies with a replicated write.
    sh(http, &serving, "cl", "echo kept > /home/sprite/f; sync").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = Instant::now();
    drop(serving);
    let killed = t.elapsed();
    let t = Instant::now();
    let deadline = t + Duration::from_secs(120);
    loop {
        if exec_true(&other, "cl").await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the sprite did not answer on another host within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered = t.elapsed();
    sh(http, &other, "cl", "grep -qx kept /home/sprite/f").await?;
    notes.push(format!(
        "cluster: the sprite's host killed (daemon, sandboxes and data dir: {} ms) → the sprite \
         answers an exec through another host after {} ms (--host-timeout {HOST_TIMEOUT}: its \
         heartbeat runs out, then the next request claims the sprite and wakes it from its \
         last replication)",
        ms(killed) as u64,
        ms(answered) as u64
    ));
    Ok(())
}
