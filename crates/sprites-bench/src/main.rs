//! Benchmarks: sprited vs bare runc, side by side in one run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Case {
    All,
    Create,
    Exec,
}

#[derive(Parser)]
struct Args {
    #[arg(value_enum, default_value = "all")]
    case: Case,
    /// Samples per case.
    #[arg(long, default_value_t = 30)]
    runs: usize,
}

struct Daemon {
    child: Child,
    bin: PathBuf,
    data: PathBuf,
    url: String,
    token: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new(&self.bin)
            .args(["purge", "--data-dir"])
            .arg(&self.data)
            .status();
        let _ = std::fs::remove_file(self.data.with_extension("log"));
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no exe dir")?;
    let p = dir.join(name);
    if !p.is_file() {
        bail!(
            "{} is not built: run scripts/build.sh (PROFILE=release) first",
            p.display()
        );
    }
    Ok(p)
}

fn start_daemon() -> anyhow::Result<Daemon> {
    let bin = sibling("sprited")?;
    let data = tempfile::Builder::new()
        .prefix("sprited-bench-")
        .tempdir_in("/var/tmp")?
        .keep();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let token = format!("bench-{}", std::process::id());
    let log = std::fs::File::create(data.with_extension("log"))?;
    let child = Command::new(&bin)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&data)
        .args(["--default-image", "tiny"])
        .env("SPRITED_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let d = Daemon {
        child,
        bin,
        data,
        url: format!("http://127.0.0.1:{port}"),
        token,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("sprited did not come up");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(d)
}

async fn create(http: &reqwest::Client, d: &Daemon, name: &str) -> anyhow::Result<()> {
    let r = http
        .post(format!("{}/v1/sprites", d.url))
        .bearer_auth(&d.token)
        .json(&serde_json::json!({"name": name}))
        .send()
        .await?;
    if r.status() != 201 {
        bail!("create {name}: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

async fn delete(http: &reqwest::Client, d: &Daemon, name: &str) -> anyhow::Result<()> {
    http.delete(format!("{}/v1/sprites/{name}", d.url))
        .bearer_auth(&d.token)
        .send()
        .await?;
    Ok(())
}

/// `true` over the WebSocket exec, until its exit frame.
async fn exec_true(d: &Daemon, name: &str) -> anyhow::Result<()> {
    let url = format!(
        "{}/v1/sprites/{name}/exec?cmd=true",
        d.url.replacen("http", "ws", 1)
    );
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", d.token).parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    while let Some(m) = ws.next().await {
        if let Message::Binary(b) = m? {
            if b.first() == Some(&3) {
                let _ = ws.close(None).await;
                return Ok(());
            }
        }
    }
    bail!("no exit frame")
}

fn runc(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("runc {args:?} failed");
    }
    Ok(())
}

/// A plain runc bundle on the same base image: read-only root, `sleep` init.
fn baseline_bundle(dir: &Path, rootfs: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let st = Command::new("runc").arg("spec").current_dir(dir).status()?;
    if !st.success() {
        bail!("runc spec failed");
    }
    let path = dir.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Row {
    case: &'static str,
    ours: Vec<f64>,
    base: Vec<f64>,
    target: &'static str,
}

fn print(rows: &mut [Row]) {
    println!(
        "| case | ours p50 | ours p95 | bare runc p50 | bare runc p95 | ratio (p50) | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows.iter_mut() {
        let (o50, o95) = (pct(&mut r.ours, 0.5), pct(&mut r.ours, 0.95));
        let (b50, b95) = (pct(&mut r.base, 0.5), pct(&mut r.base, 0.95));
        println!(
            "| {} | {o50:.1} ms | {o95:.1} ms | {b50:.1} ms | {b95:.1} ms | {:.2}× | {} |",
            r.case,
            o50 / b50,
            r.target
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let d = start_daemon()?;
    let http = reqwest::Client::new();
    // Warm up: image, pool, template volume.
    create(&http, &d, "warmup").await?;
    exec_true(&d, "warmup").await?;

    let rootfs = d.data.join("pool/images/tiny/rootfs");
    let base_dir = tempfile::Builder::new()
        .prefix("runc-bench-")
        .tempdir_in("/var/tmp")?;
    let state = base_dir.path().join("state");
    let bundle = base_dir.path().join("bundle");
    baseline_bundle(&bundle, &rootfs)?;
    let bundle_s = bundle.display().to_string();
    let mut rows = Vec::new();

    if matches!(args.case, Case::All | Case::Create) {
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for i in 0..args.runs {
            let name = format!("bench-{i}");
            let t = Instant::now();
            create(&http, &d, &name).await?;
            exec_true(&d, &name).await?;
            ours.push(ms(t.elapsed()));
            delete(&http, &d, &name).await?;

            let id = format!("bench-base-{i}");
            let t = Instant::now();
            runc(&state, &["run", "-d", "--bundle", &bundle_s, &id])?;
            runc(&state, &["exec", &id, "true"])?;
            base.push(ms(t.elapsed()));
            runc(&state, &["delete", "-f", &id])?;
        }
        rows.push(Row {
            case: "create → first exec returns",
            ours,
            base,
            target: "< 150 ms and ≤ 1.5× bare runc (aim < 50 ms)",
        });
    }
    if matches!(args.case, Case::All | Case::Exec) {
        let id = "bench-base-exec";
        runc(&state, &["run", "-d", "--bundle", &bundle_s, id])?;
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let t = Instant::now();
            exec_true(&d, "warmup").await?;
            ours.push(ms(t.elapsed()));
            let t = Instant::now();
            runc(&state, &["exec", id, "true"])?;
            base.push(ms(t.elapsed()));
        }
        runc(&state, &["delete", "-f", id])?;
        rows.push(Row {
            case: "exec round trip (`true`)",
            ours,
            base,
            target: "< 5 ms",
        });
    }
    delete(&http, &d, "warmup").await?;
    println!("runs per case: {}", args.runs);
    print(&mut rows);
    Ok(())
}
