//! `urls`: a sprite URL vs a direct loopback connection to the very same
//! server (wrk run from inside the sprite's network namespace, so the
//! server, its cgroup and its CPU limit are the same both ways), rounds
//! alternating between the two; for a server that closes every connection
//! (busybox httpd) and one that keeps them alive (python3's http.server on
//! HTTP/1.1). Then the first request to a cold and to a warm sprite, whose
//! server is a service with an `http_port`, vs the same request to it
//! running.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::{cpu_ticks, create_json, delete, ms, sh, start_daemon_with, wait_status, Daemon, Row};

/// Seconds of each wrk run.
const WRK_SECONDS: u32 = 3;

/// One wrk run: requests/s, p50 latency (ms), requests completed.
struct Wrk {
    rps: f64,
    p50: f64,
    requests: u64,
}

fn parse_wrk(text: &str) -> anyhow::Result<Wrk> {
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok());
    let p50 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("50%"))
        .and_then(|v| parse_ms(v.trim()));
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    let errors = text.lines().any(|l| l.contains("Non-2xx or 3xx responses"));
    match (rps, p50, requests) {
        (Some(rps), Some(p50), Some(requests)) if !errors => Ok(Wrk { rps, p50, requests }),
        _ => bail!("wrk failed or saw errors:\n{text}"),
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

/// `wrk` against `url`, optionally from inside the network namespace of
/// process `netns_of` and with a `Host` header.
fn wrk(url: &str, host: Option<&str>, netns_of: Option<u32>) -> anyhow::Result<Wrk> {
    let mut c = match netns_of {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{pid}/ns/net")).arg("wrk");
            c
        }
        None => Command::new("wrk"),
    };
    c.args(["-t1", "-c8", &format!("-d{WRK_SECONDS}s"), "--latency"]);
    if let Some(h) = host {
        c.args(["-H", &format!("Host: {h}")]);
    }
    let out = c
        .arg(url)
        .output()
        .context("running wrk (scripts/deps.sh installs it) and nsenter")?;
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The host pid of a running sprite's init, from its state file.
fn init_pid(d: &Daemon, id: &str) -> anyhow::Result<u32> {
    // The container driver's state file (runc's or sprited's own
    // starter's: runc's CLI reads only the first).
    let path = d.data.join("runc").join(id).join("state.json");
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    v["init_process_pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .context("the state has no pid")
}

async fn make_public(http: &reqwest::Client, d: &Daemon, name: &str) -> anyhow::Result<()> {
    http.put(format!("{}/v1/sprites/{name}", d.url))
        .bearer_auth(&d.token)
        .json(&serde_json::json!({"url_settings": {"auth": "public"}}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// python3's http.server as one would run it behind a proxy: HTTP/1.1 (the
/// module's command line speaks 1.0 and closes every connection) with
/// Nagle's algorithm off (it writes a response's head and body separately).
const PY_SERVER: &str = r#"import functools, http.server
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), functools.partial(H, directory="/tmp/srv")).serve_forever()
"#;

/// A server inside a sprite, measured through the URL and directly.
struct Server {
    label: &'static str,
    sprite: &'static str,
    image: &'static str,
    start: String,
}

/// Medians of alternating rounds: (direct, URL, daemon CPU µs per URL request).
async fn measure(
    http: &reqwest::Client,
    d: &Daemon,
    s: &Server,
    rounds: usize,
) -> anyhow::Result<(Wrk, Wrk, f64)> {
    eprintln!("urls: {} (image {})", s.label, s.image);
    create_json(
        http,
        d,
        serde_json::json!({"name": s.sprite, "image": s.image}),
    )
    .await?;
    make_public(http, d, s.sprite).await?;
    sh(http, d, s.sprite, &s.start).await?;
    let pid = init_pid(d, &crate::sprite_id(http, d, s.sprite).await?)?;
    let daemon_port = d.url.rsplit(':').next().unwrap_or("80");
    let host = format!("{}.sprites.localhost:{daemon_port}", s.sprite);
    let direct_url = "http://127.0.0.1:8080/";
    let url = format!("{}/", d.url);
    // Warm-up: the server's first answers, the daemon's pool.
    wrk(direct_url, None, Some(pid))?;
    wrk(&url, Some(&host), None)?;
    let (mut b_rps, mut b_p50, mut o_rps, mut o_p50, mut cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs on a warmer machine.
        for direct in [round % 2 == 0, round % 2 != 0] {
            if direct {
                let w = wrk(direct_url, None, Some(pid))?;
                b_rps.push(w.rps);
                b_p50.push(w.p50);
            } else {
                let t0 = cpu_ticks(d.child.id())?;
                let w = wrk(&url, Some(&host), None)?;
                let ticks = cpu_ticks(d.child.id())? - t0;
                // 100 ticks per second.
                cpu.push(ticks as f64 * 10_000.0 / w.requests.max(1) as f64);
                o_rps.push(w.rps);
                o_p50.push(w.p50);
            }
        }
    }
    delete(http, d, s.sprite).await?;
    let direct = Wrk {
        rps: median(&mut b_rps),
        p50: median(&mut b_p50),
        requests: 0,
    };
    let ours = Wrk {
        rps: median(&mut o_rps),
        p50: median(&mut o_p50),
        requests: 0,
    };
    Ok((direct, ours, median(&mut cpu)))
}

pub async fn urls_case(
    http: &reqwest::Client,
    d: &Daemon,
    runs: usize,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let rounds = runs.clamp(1, 5);
    let servers = [
        Server {
            label: "busybox httpd (closes every connection)",
            sprite: "urlbench-busybox",
            image: "tiny",
            start: "mkdir -p /tmp/srv && echo ok > /tmp/srv/index.html; \
                    setsid busybox httpd -f -p 8080 -h /tmp/srv >/dev/null 2>&1 </dev/null & sleep 0.3"
                .into(),
        },
        Server {
            label: "python3 http.server (HTTP/1.1, keep-alive)",
            sprite: "urlbench-python",
            image: "standard",
            start: format!(
                "mkdir -p /tmp/srv && echo ok > /tmp/srv/index.html && cat > /tmp/srv.py <<'EOF'\n{PY_SERVER}EOF\n\
                 setsid python3 /tmp/srv.py >/dev/null 2>&1 </dev/null & \
                 for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8080))' 2>/dev/null && break; sleep 0.1; done"
            ),
        },
    ];
    notes.push(format!(
        "\n| URL vs direct (wrk -t1 -c8 -d{WRK_SECONDS}s, 3-byte page, median of {rounds} alternating rounds; \
         direct = wrk in the sprite's network namespace, same server) | direct | URL | ratio | p50 direct | p50 URL | added p50 | daemon CPU per URL request | target |"
    ));
    notes.push("|---|---|---|---|---|---|---|---|---|".into());
    for s in &servers {
        let (b, o, cpu) = measure(http, d, s, rounds).await?;
        notes.push(format!(
            "| {} | {:.0} req/s | {:.0} req/s | {:.0} % | {:.2} ms | {:.2} ms | {:+.2} ms | {cpu:.0} µs | ≥ 80 %, < 1 ms added p50 |",
            s.label,
            b.rps,
            o.rps,
            100.0 * o.rps / b.rps,
            b.p50,
            o.p50,
            o.p50 - b.p50,
        ));
    }
    wake_cases(http, runs, rows).await
}

/// One GET through the sprite's URL on a fresh connection; its time in ms.
async fn timed_get(url: &str, host: &str) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let t = Instant::now();
    let r = client.get(url).header("host", host).send().await?;
    let status = r.status();
    let body = r.text().await?;
    let took = ms(t.elapsed());
    if status != 200 || body != "ok\n" {
        bail!("URL request: {status} {body}");
    }
    Ok(took)
}

/// The first request to a cold and to a warm sprite vs the same request to
/// it running; its server is a service with an `http_port`, which comes
/// back when the sprite is woken from cold.
async fn wake_cases(
    http: &reqwest::Client,
    runs: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let d = start_daemon_with(&["--idle-warm", "500ms", "--idle-cold", "500ms"])?;
    let name = "urlwake";
    create_json(http, &d, serde_json::json!({"name": name})).await?;
    make_public(http, &d, name).await?;
    sh(
        http,
        &d,
        name,
        "mkdir -p /home/sprite/www && echo ok > /home/sprite/www/index.html",
    )
    .await?;
    http.put(format!("{}/v1/sprites/{name}/services/web", d.url))
        .bearer_auth(&d.token)
        .json(&serde_json::json!({
            "cmd": "busybox",
            "args": ["httpd", "-f", "-p", "8080", "-h", "/home/sprite/www"],
            "http_port": 8080
        }))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let daemon_port = d.url.rsplit(':').next().unwrap_or("80");
    let host = format!("{name}.sprites.localhost:{daemon_port}");
    let url = format!("{}/", d.url);
    let (mut cold, mut warm, mut running) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs.min(20) {
        wait_status(http, &d, name, "cold").await?;
        cold.push(timed_get(&url, &host).await?);
        running.push(timed_get(&url, &host).await?);
        wait_status(http, &d, name, "warm").await?;
        warm.push(timed_get(&url, &host).await?);
        running.push(timed_get(&url, &host).await?);
    }
    delete(http, &d, name).await?;
    rows.push(Row {
        case: "URL request to a cold sprite (its server a service)",
        ours: cold,
        base: running.clone(),
        target: "cold → first exec's < 100 ms plus the server's start; baseline = the same request, sprite running",
    });
    rows.push(Row {
        case: "URL request to a warm sprite",
        ours: warm,
        base: running,
        target: "< 10 ms, aim < 3 ms; baseline = the same request, sprite running",
    });
    Ok(())
}
