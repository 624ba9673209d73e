//! `soak`: several clients doing random creates, writes they verify later,
//! checkpoints, restores, forks, evictions, wakes and destroys against one
//! daemon, while the daemon is SIGKILLed and started again every ~30 s and
//! its object store (moto, S3) stops answering now and then. Checked
//! throughout: every acknowledged write reads back unless the client
//! itself restored past it; at the end, every listed checkpoint's image
//! passes `e2fsck -fn`, nothing leaks (mounts, loop devices, cgroups,
//! processes) and the daemon's RSS and descriptors stayed bounded.
//!
//! An operation whose answer never came (the daemon was killed under it)
//! is uncertain: a write's key is no longer checked until it is written
//! again; a restore's outcome is read back from the sprite (either state
//! is right); a create, fork or destroy is looked up.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sprites_test_support::s3::Moto;

use crate::start_daemon_env;

/// Keys a sprite's writes go to (`/home/sprite/w/k<N>`), each holding the
/// number of the write that made it.
const KEYS: u32 = 24;
/// Sprites one client keeps at most.
const PER_CLIENT: usize = 3;
/// The daemon's RSS may not pass this (KiB).
const RSS_BOUND_KIB: u64 = 1024 * 1024;
const BUCKET: &str = "soak";

/// What a client expects of one sprite: key → value of its last
/// acknowledged write, and its checkpoints' expectations.
#[derive(Clone, Default)]
struct Ledger {
    files: BTreeMap<u32, u64>,
    checkpoints: BTreeMap<String, BTreeMap<u32, u64>>,
    /// What happened to it, for the report of a failure.
    history: Vec<String>,
    /// Its create (or fork) was answered 201: it must never vanish.
    acknowledged: bool,
    /// A destroy of it got no answer and nobody could say since whether
    /// the sprite is still there (it may be gone, rightly).
    maybe_destroyed: bool,
}

impl Ledger {
    fn note(&mut self, what: String) {
        if self.history.len() >= 40 {
            self.history.remove(0);
        }
        self.history.push(what);
    }
}

#[derive(Default)]
struct Counts {
    ops: BTreeMap<&'static str, u64>,
    uncertain: BTreeMap<&'static str, u64>,
    verified: u64,
    failures: Vec<String>,
    /// Why operations got no good answer: "op: reason" → times.
    reasons: BTreeMap<String, u64>,
}

struct Shared {
    /// The daemon's URL and token never change across restarts.
    url: String,
    token: String,
    counts: Mutex<Counts>,
    /// Set while the daemon is down or being started: failures then are
    /// expected.
    chaos: AtomicBool,
    next_write: AtomicU64,
    /// Daemon SIGKILLs so far.
    kills: AtomicU64,
}

impl Shared {
    fn count(&self, op: &'static str, certain: bool) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.ops.entry(op).or_default() += 1;
        if !certain {
            *c.uncertain.entry(op).or_default() += 1;
        }
    }

    /// `[kN]`: how many times the daemon was killed before now.
    fn tag(&self) -> String {
        format!("[k{}] ", self.kills.load(Ordering::SeqCst))
    }

    fn why(&self, op: &str, reason: &str) {
        let reason: String = reason.chars().take(90).collect();
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.reasons.entry(format!("{op}: {reason}")).or_default() += 1;
    }

    fn fail(&self, what: String) {
        eprintln!("SOAK FAILURE: {what}");
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failures
            .push(what);
    }

    fn verified(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .verified += 1;
    }

    fn api(&self) -> Api {
        Api {
            url: self.url.clone(),
            token: self.token.clone(),
        }
    }
}

/// Where the daemon answers, whichever process it is now.
struct Api {
    url: String,
    token: String,
}

/// Runs `sh -c script` over HTTP exec: its exit code and output; an error
/// when no exit frame came (no daemon, a failed wake).
async fn exec_result(
    http: &reqwest::Client,
    d: &Api,
    name: &str,
    script: &str,
) -> Result<(u8, String), String> {
    crate::sh_at(http, &d.url, &d.token, name, script).await
}

/// POSTs an NDJSON operation: the `complete` line's message.
async fn op(http: &reqwest::Client, d: &Api, path: &str) -> anyhow::Result<String> {
    crate::ndjson_at(http, &d.url, &d.token, path).await
}

/// The shell check that every expected key holds its value.
fn check_script(files: &BTreeMap<u32, u64>) -> String {
    let mut s = String::from("c() { [ \"$(cat /home/sprite/w/k$1 2>/dev/null)\" = \"$2\" ] || { echo \"k$1=$(cat /home/sprite/w/k$1 2>&1) want $2; $(ls /home/sprite/w | tr '\\n' ' ')\"; exit 7; }; }; ");
    for (k, v) in files {
        s.push_str(&format!("c {k} {v}; "));
    }
    s.push_str("true");
    s
}

/// One look at whether the files match `a` and whether they match `b`:
/// prints `verdict XY` (0 for a match) and what did not match.
fn which_script(a: &BTreeMap<u32, u64>, b: &BTreeMap<u32, u64>) -> String {
    format!(
        "x=0; ox=$( {} ) || x=1; y=0; oy=$( {} ) || y=1; echo \"verdict $x$y\"; echo \"$ox\"; echo \"$oy\"",
        check_script(a),
        check_script(b)
    )
}

/// What [`which_script`] printed: (matches `a`, matches `b`). The answer
/// is framed (a stream byte before each chunk of output), so the verdict
/// is looked for anywhere in it.
fn verdict_of(out: &str) -> Option<(bool, bool)> {
    let at = out.find("verdict ")? + "verdict ".len();
    let xy = out.get(at..at + 2)?.as_bytes();
    let bit = |b: u8| match b {
        b'0' => Some(true),
        b'1' => Some(false),
        _ => None,
    };
    Some((bit(xy[0])?, bit(xy[1])?))
}

/// Whether the sprite exists (`None`: no answer).
async fn exists(http: &reqwest::Client, d: &Api, name: &str) -> Option<bool> {
    let r = http
        .get(format!("{}/v1/sprites/{name}", d.url))
        .bearer_auth(&d.token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    match r.status().as_u16() {
        200 => Some(true),
        404 => Some(false),
        _ => None,
    }
}

/// The id in a checkpoint's `complete` message (`... v3 ...`).
fn checkpoint_id(msg: &str) -> Option<String> {
    msg.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.len() > 1 && w.starts_with('v') && w[1..].bytes().all(|b| b.is_ascii_digit()))
        .map(String::from)
}

/// Checks a sprite against its ledger: a check that ran and found a key
/// wrong or missing is a lost acknowledged write; no answer says nothing.
async fn verify(shared: &Shared, http: &reqwest::Client, name: &str, l: &Ledger) {
    match exec_result(http, &shared.api(), name, &check_script(&l.files)).await {
        Ok((0, _)) => shared.verified(),
        Ok((code, out)) => shared.fail(format!(
            "{name}: acknowledged data missing or wrong (check exited {code}: {out:?}; expected {:?}; history: {})",
            l.files,
            l.history.join(" | ")
        )),
        // A sprite whose create was acknowledged and that nobody
        // destroyed is gone: everything on it is lost.
        Err(e) if l.acknowledged && e.contains("404") => shared.fail(format!(
            "{name}: the sprite vanished ({e}); history: {}",
            l.history.join(" | ")
        )),
        Err(_) => {}
    }
}

async fn client(shared: Arc<Shared>, id: usize, until: Instant, seed: u64) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap_or_default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sprites: HashMap<String, Ledger> = HashMap::new();
    let mut made = 0u32;
    while Instant::now() < until {
        // While the daemon is being started again nothing answers: wait
        // (requests already in flight when it was killed were cut).
        if shared.chaos.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let d = shared.api();
        let names: Vec<String> = sprites.keys().cloned().collect();
        let pick = (!names.is_empty()).then(|| names[rng.gen_range(0..names.len())].clone());
        let roll = rng.gen_range(0..100);
        // A destroy that got no answer: settled before anything else is
        // asked of the sprite (gone is then no loss).
        if let Some(name) = &pick {
            if sprites.get(name).is_some_and(|l| l.maybe_destroyed) {
                match exists(&http, &d, name).await {
                    Some(false) => {
                        sprites.remove(name);
                    }
                    Some(true) => {
                        if let Some(l) = sprites.get_mut(name) {
                            l.maybe_destroyed = false;
                            l.note(shared.tag() + "still there after the destroy");
                        }
                    }
                    None => tokio::time::sleep(Duration::from_millis(200)).await,
                }
                continue;
            }
        }
        match (roll, pick) {
            (_, None) | (0..=7, Some(_)) if sprites.len() < PER_CLIENT => {
                made += 1;
                let name = format!("soak-{id}-{made}");
                let r = http
                    .post(format!("{}/v1/sprites", d.url))
                    .bearer_auth(&d.token)
                    .json(&serde_json::json!({"name": name}))
                    .send()
                    .await;
                let certain = matches!(&r, Ok(r) if r.status() == 201);
                if let Ok(r) = &r {
                    if !certain {
                        shared.why("create", r.status().as_str());
                    }
                } else {
                    shared.why("create", "no answer");
                }
                shared.count("create", certain);
                if certain || exists(&http, &d, &name).await == Some(true) {
                    let l = Ledger {
                        acknowledged: certain,
                        ..Ledger::default()
                    };
                    sprites.insert(name, l);
                }
            }
            (_, None) => tokio::time::sleep(Duration::from_millis(200)).await,
            (0..=44, Some(name)) => {
                let key = rng.gen_range(0..KEYS);
                let val = shared.next_write.fetch_add(1, Ordering::Relaxed) + 1;
                let script =
                    format!("mkdir -p /home/sprite/w && echo {val} > /home/sprite/w/k{key}");
                let r = exec_result(&http, &d, &name, &script).await;
                if let Err(e) = &r {
                    shared.why("write", e);
                }
                let ok = matches!(r, Ok((0, _)));
                shared.count("write", ok);
                if let Some(l) = sprites.get_mut(&name) {
                    l.note(
                        shared.tag()
                            + &format!(
                                "write k{key}={val} {}",
                                if ok { "ok" } else { "uncertain" }
                            ),
                    );
                    if ok {
                        l.files.insert(key, val);
                    } else {
                        // Unknown: written or not. Not checked until written again.
                        l.files.remove(&key);
                    }
                }
            }
            (45..=64, Some(name)) => {
                if let Some(l) = sprites.get(&name).cloned() {
                    if !shared.chaos.load(Ordering::SeqCst) {
                        verify(&shared, &http, &name, &l).await;
                    }
                    shared.count("verify", true);
                }
            }
            (65..=74, Some(name)) => {
                let r = op(&http, &d, &format!("/v1/sprites/{name}/checkpoint")).await;
                if let Err(e) = &r {
                    shared.why("checkpoint", &e.to_string());
                }
                shared.count("checkpoint", r.is_ok());
                if let (Ok(msg), Some(l)) = (r, sprites.get_mut(&name)) {
                    if let Some(ck) = checkpoint_id(&msg) {
                        let snap = l.files.clone();
                        l.note(shared.tag() + &format!("checkpoint {ck} {snap:?}"));
                        l.checkpoints.insert(ck, snap);
                    }
                }
            }
            (75..=81, Some(name)) => {
                let Some(l) = sprites.get(&name).cloned() else {
                    continue;
                };
                let Some((ck, snap)) = l
                    .checkpoints
                    .iter()
                    .nth(rng.gen_range(0..l.checkpoints.len().max(1)))
                    .map(|(a, b)| (a.clone(), b.clone()))
                else {
                    continue;
                };
                let r = op(
                    &http,
                    &d,
                    &format!("/v1/sprites/{name}/checkpoints/{ck}/restore"),
                )
                .await;
                shared.count("restore", r.is_ok());
                let entry = sprites.get_mut(&name).expect("picked from the map");
                entry.note(
                    shared.tag()
                        + &format!(
                            "restore {ck} {}",
                            if r.is_ok() { "ok" } else { "uncertain" }
                        ),
                );
                if r.is_ok() {
                    entry.files = snap;
                } else {
                    // Restored or not: the sprite says which, once it answers,
                    // both looked at in one exec (a restore still under way
                    // cannot fall between two looks).
                    let mut settled = false;
                    for _ in 0..120 {
                        let d = shared.api();
                        let script = which_script(&snap, &entry.files);
                        let out = exec_result(&http, &d, &name, &script).await;
                        let verdict = out.as_ref().ok().and_then(|(_, out)| verdict_of(out));
                        match verdict {
                            // Matches the state before (whatever else): kept.
                            Some((_, true)) => settled = true,
                            Some((true, false)) => {
                                entry.files = snap.clone();
                                settled = true;
                            }
                            Some((false, false)) => {
                                let out = out.map(|(_, o)| o).unwrap_or_default();
                                shared.fail(format!("{name}: after an interrupted restore of {ck} it matches neither the checkpoint nor its state before: {}", out.trim()));
                                settled = true;
                            }
                            None => {}
                        }
                        if settled {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    if !settled {
                        shared.fail(format!(
                            "{name}: no answer for a minute after an interrupted restore of {ck}; history: {}",
                            entry.history.join(" | ")
                        ));
                    }
                }
            }
            (82..=87, Some(name)) if sprites.len() < PER_CLIENT => {
                let Some(l) = sprites.get(&name).cloned() else {
                    continue;
                };
                let Some((ck, snap)) = l
                    .checkpoints
                    .iter()
                    .next_back()
                    .map(|(a, b)| (a.clone(), b.clone()))
                else {
                    continue;
                };
                made += 1;
                let fork = format!("soak-{id}-{made}");
                let r = http
                    .post(format!("{}/v1/sprites", d.url))
                    .bearer_auth(&d.token)
                    .json(&serde_json::json!({"name": fork, "source": {"sprite": name, "checkpoint": ck}}))
                    .send()
                    .await;
                let certain = matches!(&r, Ok(r) if r.status() == 201);
                shared.count("fork", certain);
                if certain || exists(&http, &d, &fork).await == Some(true) {
                    sprites.insert(
                        fork,
                        Ledger {
                            history: vec![format!("fork of {name} {ck} {snap:?}")],
                            files: snap,
                            checkpoints: BTreeMap::new(),
                            acknowledged: certain,
                            maybe_destroyed: false,
                        },
                    );
                }
            }
            (88..=93, Some(name)) => {
                let r = http
                    .post(format!("{}/v1/sprites/{name}/evict", d.url))
                    .bearer_auth(&d.token)
                    .send()
                    .await;
                match &r {
                    Ok(r) if !r.status().is_success() => shared.why("evict", r.status().as_str()),
                    Err(_) => shared.why("evict", "no answer"),
                    _ => {}
                }
                let ok = matches!(&r, Ok(r) if r.status().is_success());
                shared.count("evict", ok);
                if let Some(l) = sprites.get_mut(&name) {
                    l.note(shared.tag() + &format!("evict {}", if ok { "ok" } else { "failed" }));
                }
            }
            (_, Some(name)) => {
                let r = http
                    .delete(format!("{}/v1/sprites/{name}", d.url))
                    .bearer_auth(&d.token)
                    .send()
                    .await;
                let certain = matches!(&r, Ok(r) if r.status().is_success());
                shared.count("destroy", certain);
                let there = if certain {
                    Some(false)
                } else {
                    exists(&http, &d, &name).await
                };
                match there {
                    Some(false) => {
                        sprites.remove(&name);
                    }
                    Some(true) => {}
                    None => {
                        if let Some(l) = sprites.get_mut(&name) {
                            l.maybe_destroyed = true;
                            l.note(shared.tag() + "destroy uncertain");
                        }
                    }
                }
            }
        }
    }
    // A last check of everything, with the daemon up.
    for (name, l) in &sprites {
        for _ in 0..60 {
            if !shared.chaos.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if l.maybe_destroyed && exists(&http, &shared.api(), name).await != Some(true) {
            continue;
        }
        verify(&shared, &http, name, l).await;
    }
}

/// Mounts, loop devices and processes that name `data`, but for the
/// daemon's own mounts, which stay while it runs: the pool, and the tmpfs
/// of the run dirs and of runc's state.
fn leftovers(data: &Path) -> Vec<String> {
    let needle = data.display().to_string();
    let mut out = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own: Vec<String> = ["pool", "sprites", "runc"]
        .iter()
        .map(|d| format!("{needle}/{d} "))
        .collect();
    for m in mounts
        .lines()
        .filter(|l| l.contains(&needle) && !own.iter().any(|o| l.contains(o.as_str())))
    {
        out.push(format!("mount: {m}"));
    }
    if let Ok(dir) = std::fs::read_dir("/sys/block") {
        for e in dir.flatten() {
            let f = e.path().join("loop/backing_file");
            if let Ok(b) = std::fs::read_to_string(&f) {
                let b = b.trim();
                if b.starts_with(&needle) && !b.ends_with("/pool.img") {
                    out.push(format!("loop device {:?} on {b}", e.file_name()));
                }
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) && !cmd.contains("sprited --listen") {
                out.push(format!("process {pid}: {cmd}"));
            }
        }
    }
    out
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub async fn run(minutes: f64, clients: usize) -> anyhow::Result<()> {
    let moto = Moto::start(BUCKET);
    let mut env: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    // What each sprite went through, for the log kept on a failure.
    env.push(("RUST_LOG".into(), "info".into()));
    let mut d = start_daemon_env(
        &[
            "--object-store",
            &format!("s3://{BUCKET}/soak"),
            "--object-store-timeout",
            "5s",
            "--idle-warm",
            "3s",
            "--idle-cold",
            "8s",
        ],
        &env,
    )?;
    let shared = Arc::new(Shared {
        url: d.url.clone(),
        token: d.token.clone(),
        counts: Mutex::default(),
        chaos: AtomicBool::new(false),
        next_write: AtomicU64::new(0),
        kills: AtomicU64::new(0),
    });
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(minutes * 60.0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |t| t.as_nanos() as u64);
    println!("soak: {minutes} min, {clients} clients, seed {seed}");
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(client(
                shared.clone(),
                i,
                until,
                seed.wrapping_add(i as u64),
            ))
        })
        .collect();
    let (mut kills, mut outages, mut rss_max, mut fds_max) = (0u32, 0u32, 0u64, 0usize);
    let mut next_kill = started + Duration::from_secs(30);
    let mut next_outage = started + Duration::from_secs(20);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pid = d.pid();
        rss_max = rss_max.max(sprites_test_support::rss_kib(pid));
        fds_max = fds_max.max(open_fds(pid));
        if Instant::now() >= next_outage {
            moto.pause();
            tokio::time::sleep(Duration::from_secs(6)).await;
            moto.resume();
            outages += 1;
            next_outage = Instant::now() + Duration::from_secs(45);
        }
        if Instant::now() >= next_kill && Instant::now() + Duration::from_secs(10) < until {
            shared.chaos.store(true, Ordering::SeqCst);
            shared.kills.fetch_add(1, Ordering::SeqCst);
            d.restart()
                .context("starting the daemon again after SIGKILL")?;
            shared.chaos.store(false, Ordering::SeqCst);
            kills += 1;
            next_kill = Instant::now() + Duration::from_secs(30);
        }
    }
    for t in tasks {
        t.await.context("a soak client")?;
    }

    // Every listed checkpoint's image is a clean filesystem.
    let http = reqwest::Client::new();
    let list: serde_json::Value = http
        .get(format!("{}/v1/sprites?max_results=1000", d.url))
        .bearer_auth(&d.token)
        .send()
        .await?
        .json()
        .await?;
    let mut checked = 0;
    for s in list["sprites"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (Some(name), Some(id)) = (s["name"].as_str(), s["id"].as_str()) else {
            continue;
        };
        let cks: serde_json::Value = http
            .get(format!("{}/v1/sprites/{name}/checkpoints", d.url))
            .bearer_auth(&d.token)
            .send()
            .await?
            .json()
            .await?;
        for c in cks.as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(ck) = c["id"].as_str() else { continue };
            let img = d
                .data
                .join("pool/sprites")
                .join(id)
                .join("checkpoints")
                .join(format!("{ck}.img"));
            if !img.exists() {
                // Evicted: its image lives in the object store.
                continue;
            }
            checked += 1;
            if let Err(e) = sprites_test_support::fsck::check_image(&img) {
                shared.fail(format!("{name} {ck}: {e}"));
            }
        }
        let _ = http
            .delete(format!("{}/v1/sprites/{name}", d.url))
            .bearer_auth(&d.token)
            .send()
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Stopped as a service manager stops it: what it made ahead for
    // creates goes with it, and nothing of a destroyed sprite may stay.
    if let Err(e) = d.terminate(Duration::from_secs(60)) {
        shared.fail(e);
    }
    let leaks = leftovers(&d.data);
    let counts = shared.counts.lock().unwrap_or_else(|p| p.into_inner());
    println!(
        "soak report: {:.1} min, {clients} clients, {kills} daemon SIGKILLs, {outages} object-store outages",
        started.elapsed().as_secs_f64() / 60.0
    );
    println!(
        "| operation | done | no good answer (cut by a kill, store down, refused) |\n|---|---|---|"
    );
    for (op, n) in &counts.ops {
        println!(
            "| {op} | {n} | {} |",
            counts.uncertain.get(op).unwrap_or(&0)
        );
    }
    println!(
        "verifications passed: {}; checkpoint images fsck'd: {checked}; daemon RSS max {} MiB (bound {} MiB); daemon fds max {fds_max}",
        counts.verified,
        rss_max / 1024,
        RSS_BOUND_KIB / 1024
    );
    println!("why answers were not good (top 12):");
    let mut reasons: Vec<_> = counts.reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    for (r, n) in reasons.into_iter().take(12) {
        println!("  {n:>6}  {r}");
    }
    println!("leftovers after destroying every sprite: {}", leaks.len());
    for l in &leaks {
        println!("  {l}");
    }
    // Reported, then ended: the soak leaves nothing running.
    for pid in leaks.iter().filter_map(|l| {
        l.strip_prefix("process ")?
            .split_once(':')?
            .0
            .parse::<i32>()
            .ok()
    }) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let failures = counts.failures.clone();
    drop(counts);
    if !failures.is_empty() || !leaks.is_empty() || rss_max > RSS_BOUND_KIB {
        d.keep_log = true;
        println!(
            "the daemon's log is kept at {}",
            d.data.with_extension("log").display()
        );
        bail!(
            "the soak found {} failures, {} leftovers, RSS max {} MiB",
            failures.len(),
            leaks.len(),
            rss_max / 1024
        );
    }
    if counts_verified(&shared) == 0 {
        bail!("the soak verified nothing");
    }
    Ok(())
}

fn counts_verified(shared: &Shared) -> u64 {
    shared
        .counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .verified
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict as a plain HTTP exec answers it: stdout framed by its
    /// stream byte, the exit frame last.
    #[test]
    fn the_verdict_is_read_from_a_framed_answer() {
        let framed = |s: &str| format!("\u{1}{s}\u{3}\u{0}");
        assert_eq!(
            verdict_of(&framed("verdict 01\n\nk1=2 want 3\n")),
            Some((true, false))
        );
        assert_eq!(verdict_of(&framed("verdict 10\n")), Some((false, true)));
        assert_eq!(verdict_of(&framed("verdict 11\n")), Some((false, false)));
        assert_eq!(verdict_of(&framed("sh: oops\n")), None);
    }

    /// The script says which of two states the files are in, run here by
    /// a real shell on files made to match one of them.
    #[test]
    fn which_script_tells_the_states_apart() {
        let a: BTreeMap<u32, u64> = [(1, 5)].into();
        let b: BTreeMap<u32, u64> = [(1, 5), (2, 7)].into();
        let dir = tempfile::tempdir().expect("tempdir");
        let script =
            which_script(&a, &b).replace("/home/sprite/w", &dir.path().display().to_string());
        std::fs::write(dir.path().join("k1"), "5").expect("write");
        let run = || {
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .output()
                .expect("sh");
            verdict_of(&String::from_utf8_lossy(&out.stdout))
        };
        assert_eq!(run(), Some((true, false)));
        std::fs::write(dir.path().join("k2"), "7").expect("write");
        assert_eq!(run(), Some((true, true)));
        std::fs::write(dir.path().join("k1"), "6").expect("write");
        assert_eq!(run(), Some((false, false)));
    }
}
