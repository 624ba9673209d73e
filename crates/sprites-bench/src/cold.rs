//! `cold`: the cold tier. A 10 GiB volume holding 1 GiB evicted to object
//! storage and woken by an exec, against a wake of the same sprite from
//! local disk (cold, not evicted) in the same run; and the bytes stored for
//! 20 sprites made from one image with small changes each, against one.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::{create, delete, exec_true, ms, sh, start_daemon_with, wait_status, Daemon, Row};

async fn evict(
    http: &reqwest::Client,
    d: &Daemon,
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    let r = http
        .post(format!("{}/v1/sprites/{name}/evict", d.url))
        .bearer_auth(&d.token)
        .send()
        .await?;
    if r.status() != 200 {
        bail!("evict {name}: {} {}", r.status(), r.text().await?);
    }
    Ok(r.json().await?)
}

/// Bytes of every file under `dir` (what the store holds).
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

pub async fn cases(
    http: &reqwest::Client,
    runs: usize,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    // 20 sprites from one image with a small change each: once a few small
    // files (its name, a config), once also 64 KiB of random bytes of its own.
    for (kind, change) in [
        ("small files", "seq 1 400 > /home/sprite/config"),
        (
            "small files + 64 KiB random",
            "seq 1 400 > /home/sprite/config; head -c 65536 /dev/urandom > /home/sprite/own",
        ),
    ] {
        // A daemon (and object store) of its own for each kind.
        let d = start_daemon_with(&[])?;
        let objects = d.data.join("objects");
        for i in 0..20 {
            let name = format!("many-{i}");
            create(http, &d, &name).await?;
            sh(
                http,
                &d,
                &name,
                &format!("echo {name} > /home/sprite/name; {change}; sync"),
            )
            .await?;
        }
        let first = evict(http, &d, "many-0").await?;
        let one = bytes_under(&objects.join("chunks"));
        let one_volume = first["stored_bytes"].as_u64().unwrap_or(0);
        let mut volumes = one_volume;
        for i in 1..20 {
            let r = evict(http, &d, &format!("many-{i}")).await?;
            volumes += r["bytes_sent"].as_u64().unwrap_or(0);
        }
        let twenty = bytes_under(&objects.join("chunks"));
        notes.push(format!(
            "object storage, 20 sprites from one image (`tiny`), change each: {kind}: \
             1 sprite {:.2} MiB (its volume {:.2} MiB, the rest its base image), \
             20 sprites {:.2} MiB = {:.2}× one (target < 2×; without dedup 20 × one = {:.2} MiB); \
             their volumes alone: 20 take {:.2} MiB, one {:.2} MiB",
            mib(one),
            mib(one_volume),
            mib(twenty),
            twenty as f64 / one as f64,
            mib(one * 20),
            mib(volumes),
            mib(one_volume),
        ));
    }

    // A 10 GiB volume holding 1 GiB of random (incompressible) data.
    let d = start_daemon_with(&["--idle-warm", "500ms", "--idle-cold", "500ms"])?;
    let name = "bigcold";
    let r = http
        .post(format!("{}/v1/sprites", d.url))
        .bearer_auth(&d.token)
        .json(&serde_json::json!({"name": name, "config": {"storage_gb": 10}}))
        .send()
        .await?;
    if r.status() != 201 {
        bail!("create {name}: {} {}", r.status(), r.text().await?);
    }
    sh(
        http,
        &d,
        name,
        "head -c 1073741824 /dev/urandom > /home/sprite/data; md5sum /home/sprite/data > /home/sprite/data.md5; sync",
    )
    .await?;
    // Fails (and so the bench) unless every byte came back.
    let check = "cd /home/sprite && md5sum -c -s data.md5";
    let (mut evicts, mut wakes, mut base) = (Vec::new(), Vec::new(), Vec::new());
    let (mut reads_obj, mut reads_local) = (Vec::new(), Vec::new());
    for _ in 0..runs.min(5) {
        // Baseline: cold on local disk (stopped, volume unmounted).
        wait_status(http, &d, name, "cold").await?;
        let t = Instant::now();
        exec_true(&d, name).await?;
        base.push(ms(t.elapsed()));
        let t = Instant::now();
        sh(http, &d, name, check).await.context("data check")?;
        reads_local.push(ms(t.elapsed()));

        let t = Instant::now();
        evict(http, &d, name).await?;
        evicts.push(ms(t.elapsed()));
        let t = Instant::now();
        exec_true(&d, name).await?;
        wakes.push(ms(t.elapsed()));
        let t = Instant::now();
        sh(http, &d, name, check)
            .await
            .context("data check after a wake from object storage")?;
        reads_obj.push(ms(t.elapsed()));
    }
    rows.push(Row {
        case: "evicted (object store) → first exec returns, 10 GiB volume holding 1 GiB",
        ours: wakes,
        base: base.clone(),
        target: "< 1 s; baseline = the same sprite cold on local disk",
    });
    rows.push(Row {
        case: "then reading all 1 GiB (md5sum) after that wake",
        ours: reads_obj,
        base: reads_local,
        target: "— ; baseline = after a local cold wake",
    });
    rows.push(Row {
        case: "evict (stop + upload) of that sprite, data unchanged since the last",
        ours: evicts,
        base,
        target: "— ; baseline = local cold wake",
    });
    delete(http, &d, name).await.context("delete")?;
    Ok(())
}
