//! The filesystem API with a 1 GiB file: written and read through
//! `fs/write` and `fs/read`, against the same bytes through `cat` in an
//! HTTP exec (the way to move files without a files API), with a local `cp`
//! of 1 GiB on the host as the floor, and the daemon's RSS while it moves.

use std::time::Instant;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use sprites_test_support::rss_kib;

use super::{create, delete, ms, Daemon, Row};

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 1024;
const SIZE: u64 = (CHUNK * CHUNKS) as u64;

/// 1 GiB as a request body, never held whole.
fn body() -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![0x5au8; CHUNK]);
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    reqwest::Body::wrap_stream(stream)
}

/// Read an answer to its end; the bytes seen.
async fn drain(r: reqwest::Response) -> anyhow::Result<u64> {
    let mut n = 0u64;
    let mut s = r.bytes_stream();
    while let Some(c) = s.next().await {
        n += c?.len() as u64;
    }
    Ok(n)
}

fn exec_url(d: &Daemon, name: &str, script: &str, stdin: bool) -> String {
    let mut url = format!("{}/v1/sprites/{name}/exec?cmd=sh&cmd=-c", d.url);
    url.push_str("&cmd=");
    url.push_str(&sprites_api::fs::percent_encode(script.as_bytes()));
    if stdin {
        url.push_str("&stdin=true");
    }
    url
}

pub async fn cases(
    http: &reqwest::Client,
    d: &Daemon,
    runs: usize,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let name = "files";
    create(http, d, name).await?;
    let pid = d.child.id();
    let rss_before = rss_kib(pid);
    let mut rss_peak = rss_before;
    let runs = runs.clamp(1, 5);
    let (mut w_ours, mut w_base, mut r_ours, mut r_base) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t = Instant::now();
        let r = http
            .put(format!("{}/v1/sprites/{name}/fs/write?path=big.bin", d.url))
            .bearer_auth(&d.token)
            .body(body())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("fs/write: {} {}", r.status(), r.text().await?);
        }
        r.bytes().await?;
        w_ours.push(ms(t.elapsed()));
        rss_peak = rss_peak.max(rss_kib(pid));

        let t = Instant::now();
        let r = http
            .post(exec_url(d, name, "cat > /home/sprite/via-exec.bin", true))
            .bearer_auth(&d.token)
            .body(body())
            .send()
            .await?;
        let framed = r.bytes().await?;
        if framed.get(framed.len().saturating_sub(2)..) != Some(&[3u8, 0][..]) {
            bail!(
                "exec cat > file failed: {:?}",
                String::from_utf8_lossy(&framed)
            );
        }
        w_base.push(ms(t.elapsed()));

        let t = Instant::now();
        let r = http
            .get(format!("{}/v1/sprites/{name}/fs/read?path=big.bin", d.url))
            .bearer_auth(&d.token)
            .send()
            .await?;
        let n = drain(r).await?;
        if n != SIZE {
            bail!("fs/read gave {n} bytes");
        }
        r_ours.push(ms(t.elapsed()));
        rss_peak = rss_peak.max(rss_kib(pid));

        let t = Instant::now();
        let r = http
            .post(exec_url(d, name, "cat /home/sprite/big.bin", false))
            .bearer_auth(&d.token)
            .send()
            .await?;
        // Framed: 1 byte per output chunk and 2 for the exit.
        let n = drain(r).await?;
        if n < SIZE {
            bail!("exec cat gave {n} bytes");
        }
        r_base.push(ms(t.elapsed()));
    }
    let local = local_copy_ms(&d.data).context("local cp")?;
    let mib_s = |v: &[f64]| {
        let mut v = v.to_vec();
        let p50 = super::pct(&mut v, 0.5);
        1024.0 / (p50 / 1000.0)
    };
    notes.push(format!(
        "\n1 GiB through the filesystem API: write {:.0} MiB/s, read {:.0} MiB/s (p50); \
         through cat in an HTTP exec: write {:.0} MiB/s, read {:.0} MiB/s; \
         local cp of 1 GiB on the host (page cache, same disk): {:.0} ms = {:.0} MiB/s. \
         Daemon RSS {:.1} MiB before, peak {:.1} MiB during the transfers.",
        mib_s(&w_ours),
        mib_s(&r_ours),
        mib_s(&w_base),
        mib_s(&r_base),
        local,
        1024.0 / (local / 1000.0),
        rss_before as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
    ));
    rows.push(Row {
        case: "fs/write 1 GiB",
        ours: w_ours,
        base: w_base,
        target: "≤ 1× cat through exec, flat daemon RSS; baseline = HTTP exec `cat > file` with the bytes as stdin",
    });
    rows.push(Row {
        case: "fs/read 1 GiB",
        ours: r_ours,
        base: r_base,
        target: "≤ 1× cat through exec, flat daemon RSS; baseline = HTTP exec `cat file`",
    });
    delete(http, d, name).await?;
    Ok(())
}

/// `cp` of a 1 GiB file on the host, beside the daemon's data.
fn local_copy_ms(data: &std::path::Path) -> anyhow::Result<f64> {
    let dir = data.with_extension("cp");
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("src");
    let dst = dir.join("dst");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&src)?;
        let chunk = vec![0x5au8; CHUNK];
        for _ in 0..CHUNKS {
            f.write_all(&chunk)?;
        }
    }
    let t = Instant::now();
    let ok = std::process::Command::new("cp")
        .arg(&src)
        .arg(&dst)
        .status()?
        .success();
    let took = ms(t.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    if !ok {
        bail!("cp failed");
    }
    // Not synced, as the API's writes are not.
    Ok(took)
}
