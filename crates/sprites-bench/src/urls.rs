//! `urls`: a sprite URL vs a direct loopback connection to the same server
//! (busybox httpd, same small page, same wrk run), and a request to a
//! sprite woken from cold by its URL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{create, delete, sh, Daemon};

/// wrk's requests/s and p50 latency (ms) against `url` (with `host`).
fn wrk(url: &str, host: Option<&str>) -> anyhow::Result<(f64, f64)> {
    let mut c = Command::new("wrk");
    c.args(["-t1", "-c8", "-d5s", "--latency"]);
    if let Some(h) = host {
        c.args(["-H", &format!("Host: {h}")]);
    }
    let out = c
        .arg(url)
        .output()
        .context("running wrk (scripts/deps.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok());
    let p50 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("50%"))
        .and_then(|v| parse_ms(v.trim()));
    match (rps, p50) {
        (Some(r), Some(p)) => Ok((r, p)),
        _ => bail!("cannot read wrk's output:\n{text}"),
    }
}

fn parse_ms(v: &str) -> Option<f64> {
    if let Some(us) = v.strip_suffix("us") {
        return us.parse::<f64>().ok().map(|x| x / 1000.0);
    }
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.parse().ok();
    }
    v.strip_suffix('s')
        .and_then(|s| s.parse::<f64>().ok())
        .map(|x| x * 1000.0)
}

pub async fn urls_case(
    http: &reqwest::Client,
    d: &Daemon,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let name = "urlbench";
    create(http, d, name).await?;
    http.put(format!("{}/v1/sprites/{name}", d.url))
        .bearer_auth(&d.token)
        .json(&serde_json::json!({"url_settings": {"auth": "public"}}))
        .send()
        .await?
        .error_for_status()?;
    sh(
        http,
        d,
        name,
        "mkdir -p /tmp/srv && echo ok > /tmp/srv/index.html; \
         setsid busybox httpd -f -p 8080 -h /tmp/srv >/dev/null 2>&1 </dev/null & sleep 0.3",
    )
    .await?;
    // The same server on the host's loopback, same page.
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("index.html"), "ok\n")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut direct = Command::new("busybox")
        .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("busybox httpd")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let daemon_port = d.url.rsplit(':').next().unwrap_or("80");
    let host = format!("{name}.sprites.localhost:{daemon_port}");
    let base = wrk(&format!("http://127.0.0.1:{port}/"), None);
    let ours = wrk(&format!("{}/", d.url), Some(&host));
    let _ = direct.kill();
    let _ = direct.wait();
    let ((b_rps, b_p50), (o_rps, o_p50)) = (base?, ours?);
    notes.push(
        "\n| URL (wrk -t1 -c8 -d5s, busybox httpd, 3-byte page) | requests/s | p50 | target |"
            .into(),
    );
    notes.push("|---|---|---|---|".into());
    notes.push(format!(
        "| direct loopback | {b_rps:.0} | {b_p50:.2} ms | |"
    ));
    notes.push(format!(
        "| sprite URL | {o_rps:.0} ({:.0} % of direct) | {o_p50:.2} ms (+{:.2} ms) | ≥ 80 %, < 1 ms added p50 |",
        100.0 * o_rps / b_rps,
        o_p50 - b_p50
    ));

    // One request on its own (the cold-wake latency is printed by the
    // `urls_wake_warm_and_cold_sprites` test, which has short idle timers).
    let t = Instant::now();
    let r = http
        .get(format!("{}/", d.url))
        .header("host", &host)
        .send()
        .await?;
    let _ = r.bytes().await?;
    notes.push(format!(
        "single URL request on a running sprite: {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0
    ));
    delete(http, d, name).await?;
    Ok(())
}
