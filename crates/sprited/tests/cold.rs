//! The cold tier end to end: sprites evicted to object storage (a local
//! folder, and a real S3 server on loopback), woken by the next request,
//! their checkpoints listable and restorable meanwhile; and the faults:
//! the daemon killed mid-upload and mid-download, an unreachable store,
//! damaged chunks.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{mounts_under, Api, Daemon};
use sprites_test_support::s3::Moto;

/// 8 MiB of random data and its checksum.
const WRITE_BLOB: &str =
    "head -c 8388608 /dev/urandom > /home/sprite/blob; sync; md5sum /home/sprite/blob";
const SUM_BLOB: &str = "md5sum /home/sprite/blob";

fn sprite_pool(d: &Daemon, id: &str) -> PathBuf {
    d.pool_dir().join("sprites").join(id)
}

/// Checkpoint `ck`'s image on local disk.
fn checkpoint_image(d: &Daemon, id: &str, ck: &str) -> PathBuf {
    sprite_pool(d, id)
        .join("checkpoints")
        .join(format!("{ck}.img"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|e| {
            e.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn storage(api: &Api, name: &str) -> serde_json::Value {
    api.get_json(&format!("/v1/sprites/{name}")).await["storage"].clone()
}

async fn evict(api: &Api, name: &str) -> reqwest::Response {
    api.req(reqwest::Method::POST, &format!("/v1/sprites/{name}/evict"))
        .send()
        .await
        .expect("evict request")
}

async fn evict_ok(api: &Api, name: &str) -> serde_json::Value {
    let r = evict(api, name).await;
    let status = r.status();
    let body: serde_json::Value = r.json().await.expect("evict answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["location"], "object", "{body}");
    body
}

/// An HTTP exec (which wakes the sprite): status and body.
async fn http_exec(api: &Api, name: &str, cmd: &str) -> (u16, String) {
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v1/sprites/{name}/exec?cmd={cmd}"),
        )
        .send()
        .await
        .expect("exec request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn chunk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(root.join("chunks"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(sub.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(f.path());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_cold_sprite_leaves_local_disk_and_comes_back_whole() {
    let d = Daemon::start_with(&[
        "--idle-warm",
        "1s",
        "--idle-cold",
        "1s",
        "--evict-after",
        "2s",
        "--meter-interval",
        "1s",
    ]);
    let api = d.client();
    api.create("sleepy").await;
    let id = api.id_of("sleepy").await;
    let sum = api.sh("sleepy", WRITE_BLOB).await;
    let v0 = api.checkpoint("sleepy", Some("with blob")).await;
    api.sh("sleepy", "echo later > /home/sprite/later; sync")
        .await;

    // Idle: warm, cold, then evicted by the idle tracker on its own.
    d.wait_log("evicted to object storage", Duration::from_secs(60));
    let pool = sprite_pool(&d, &id);
    assert!(
        !pool.join("volume.img").exists(),
        "the volume left local disk"
    );
    assert!(
        files_in(&pool.join("checkpoints")).is_empty(),
        "{:?}",
        files_in(&pool.join("checkpoints"))
    );
    let st = storage(&api, "sleepy").await;
    assert_eq!(st["location"], "object", "{st}");
    assert_eq!(st["checkpoints_in_object_store"], 1, "{st}");
    assert_eq!(st["local_bytes"], 0, "{st}");
    assert!(st["object_bytes"].as_u64().unwrap_or(0) > 8 << 20, "{st}");
    assert!(
        st["volume_data_bytes"].as_u64().unwrap_or(0) >= 8 << 20,
        "{st}"
    );
    assert!(d.data_dir.join("objects/chunks").is_dir());
    // A listing looks its page's storage up at once, and shows the same.
    let listed = api.get_json("/v1/sprites").await;
    assert_eq!(listed["sprites"][0]["name"], "sleepy", "{listed}");
    assert_eq!(listed["sprites"][0]["storage"], st, "{listed}");

    // `sprite info` says where it is.
    let cli = common::cli::Cli::new(&d);
    let info = cli.ok(&["info", "-s", "sleepy"]);
    assert!(info.contains("object storage (evicted"), "{info}");
    assert!(info.contains("1 in object storage"), "{info}");

    // Evicted sprites accrue cold storage.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let usage = api.get_json("/v1/sprites/sleepy/usage").await;
    assert!(
        usage["usage"]["cold_storage_gb_hours"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "{usage}"
    );

    // Its checkpoints are still listed.
    let list = api.get_json("/v1/sprites/sleepy/checkpoints").await;
    assert_eq!(list[0]["id"], v0, "{list}");
    assert_eq!(list[0]["comment"], "with blob", "{list}");

    // The next request wakes it with every byte in place.
    assert_eq!(api.sh("sleepy", SUM_BLOB).await, sum);
    assert_eq!(api.sh("sleepy", "cat /home/sprite/later").await, "later\n");
    let st = storage(&api, "sleepy").await;
    // Running on a volume that fills itself from the store, or already
    // local again if it went idle meanwhile.
    let loc = st["location"].as_str().unwrap_or_default().to_string();
    assert!(["filling", "local+object"].contains(&loc.as_str()), "{st}");
    assert!(pool.join("volume.img").exists());

    // A checkpoint only the store has is restored (fetched first).
    api.restore("sleepy", &v0).await;
    assert_eq!(api.sh("sleepy", SUM_BLOB).await, sum);
    let gone = api
        .sh("sleepy", "cat /home/sprite/later 2>&1 || true")
        .await;
    assert!(gone.contains("No such file"), "{gone}");
    assert!(checkpoint_image(&d, &id, &v0).exists());

    // Destroyed: its manifests leave the store and its chunks are collected.
    api.delete("sleepy").await;
    d.wait_log("unused chunks removed", Duration::from_secs(30));
    let manifests = d.data_dir.join("objects/manifests/sprites").join(&id);
    assert!(
        files_in(&manifests).is_empty() && files_in(&manifests.join("checkpoints")).is_empty(),
        "manifests of a destroyed sprite remain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_chunks_are_stored_once_and_forks_of_evicted_checkpoints_work() {
    let d = Daemon::start();
    let api = d.client();
    api.create("one").await;
    api.create("two").await;
    api.sh("one", "echo one > /home/sprite/who; sync").await;
    api.sh("two", "echo two > /home/sprite/who; sync").await;
    let v0 = api.checkpoint("one", None).await;

    let first = evict_ok(&api, "one").await;
    let second = evict_ok(&api, "two").await;
    // Both volumes come from one template: two's eviction sends only the
    // chunks two changed. (Its metadata in few extents, a new volume is
    // ~15 KB stored, ~9 KB of it in the chunks a sprite's first writes
    // change; spread over the file it was ~35 KB, ~10 KB of it changed.)
    let stored = second["stored_bytes"].as_u64().expect("stored_bytes");
    let sent = second["bytes_sent"].as_u64().expect("bytes_sent");
    assert!(
        sent * 4 < stored * 3,
        "two's eviction sent {sent} of {stored} bytes: {first} {second}"
    );
    // Evicting again sends nothing.
    let again = evict_ok(&api, "two").await;
    assert_eq!(again["bytes_sent"], 0, "{again}");

    // A fork of a checkpoint that lives only in the store.
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites")
        .json(&serde_json::json!({"name": "three", "source": {"sprite": "one", "checkpoint": v0}}))
        .send()
        .await
        .expect("fork");
    assert!(r.status().is_success(), "{:?}", r.text().await);
    assert_eq!(api.sh("three", "cat /home/sprite/who").await, "one\n");
    assert_eq!(api.sh("two", "cat /home/sprite/who").await, "two\n");
    assert_eq!(api.sh("one", "cat /home/sprite/who").await, "one\n");

    // A checkpoint of an evicted sprite brings its volume back first.
    evict_ok(&api, "two").await;
    let v = api.checkpoint("two", Some("after eviction")).await;
    assert_eq!(v, "v0");
    assert_eq!(api.sh("two", "cat /home/sprite/who").await, "two\n");

    // Destroyed while its volume fills itself from the store: nothing of it
    // stays mounted or on disk. Evicted and woken again first: its fill
    // since the wake above may have ended meanwhile (a small volume's takes
    // seconds), and then this would destroy a plain local sprite.
    let id = api.id_of("one").await;
    evict_ok(&api, "one").await;
    assert_eq!(api.sh("one", "cat /home/sprite/who").await, "one\n");
    assert_eq!(storage(&api, "one").await["location"], "filling");
    api.delete("one").await;
    assert!(!sprite_pool(&d, &id).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&id), "{mounts}");
}

/// Another process's copy of the host's mount namespace (what runc and
/// pasta hold for a moment while they set up a sandbox) keeps a sprite's
/// volume alive past its unmount, its last writes not yet in the image: an
/// eviction meanwhile must wait for it, never upload what is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_waits_for_a_volume_another_mount_namespace_still_holds() {
    let d = Daemon::start();
    let api = d.client();
    api.create("held").await;
    // Written, not synced: only the unmount puts it in the image.
    api.sh("held", "echo kept > /home/sprite/unsynced").await;

    /// Ends the holder, whatever happens to the test.
    struct Holder(std::process::Child);
    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let holder = Holder(
        std::process::Command::new("unshare")
            .args(["--mount", "sleep", "60"])
            .spawn()
            .expect("unshare (util-linux)"),
    );
    let own = std::fs::read_link("/proc/self/ns/mnt").expect("own mount namespace");
    let ns = format!("/proc/{}/ns/mnt", holder.0.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&ns).ok().is_none_or(|n| n == own) {
        assert!(
            std::time::Instant::now() < deadline,
            "unshare made no mount namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(holder);
    });

    let t0 = std::time::Instant::now();
    evict_ok(&api, "held").await;
    let took = t0.elapsed();
    release.await.expect("releasing the namespace");
    assert!(
        took >= Duration::from_millis(1500),
        "evicted in {took:?} while the volume was held"
    );
    assert_eq!(storage(&api, "held").await["location"], "object");
    assert_eq!(api.sh("held", "cat /home/sprite/unsynced").await, "kept\n");
}

/// Issue 15: every checkpoint is copied to the store soon after it is made;
/// its image lost from this host's disk, it restores from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_lost_from_local_disk_restores_from_the_store() {
    let mut d = Daemon::start();
    let api = d.client();
    api.create("dur").await;
    let id = api.id_of("dur").await;
    let sum = api.sh("dur", WRITE_BLOB).await;
    let v0 = api.checkpoint("dur", None).await;
    wait_for_checkpoints_in_store(&api, "dur", 1).await;
    assert_eq!(storage(&api, "dur").await["location"], "local+object");
    api.sh(
        "dur",
        "rm /home/sprite/blob; echo after > /home/sprite/after",
    )
    .await;

    d.kill9();
    let image = checkpoint_image(&d, &id, &v0);
    std::fs::remove_file(&image).expect("remove the checkpoint's image");
    d.spawn();
    let api = d.client();
    let list = api.get_json("/v1/sprites/dur/checkpoints").await;
    assert_eq!(list[0]["id"], v0, "{list}");
    api.restore("dur", &v0).await;
    assert_eq!(api.sh("dur", SUM_BLOB).await, sum);
    let gone = api.sh("dur", "cat /home/sprite/after 2>&1 || true").await;
    assert!(gone.contains("No such file"), "{gone}");
    assert!(image.exists(), "fetched back to local disk");
}

/// The `chunks_read` a daemon's log gives for checkpoint `ck`'s copy.
fn chunks_read(log: &str, ck: &str) -> u64 {
    // Without the log's colours (ESC [ ... m).
    let mut plain = String::with_capacity(log.len());
    let mut in_escape = false;
    for c in log.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (false, c) => plain.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    let line = plain
        .lines()
        .find(|l| {
            l.contains("checkpoint copied to object storage")
                && l.contains(&format!("checkpoint={ck} "))
        })
        .unwrap_or_else(|| panic!("no copy of {ck} logged"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("chunks_read=")?.parse().ok())
        .unwrap_or_else(|| panic!("no chunks_read in {line:?}"))
}

/// A checkpoint's copy starts from the copy of an earlier one: only the
/// chunks whose extents differ are read (not the 32 MiB the sprite wrote
/// before), and both come back whole from the store alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_copy_reads_only_what_changed_and_restores_whole() {
    let mut d = Daemon::start();
    let api = d.client();
    api.create("inc").await;
    let id = api.id_of("inc").await;
    let sum = api
        .sh(
            "inc",
            "head -c 33554432 /dev/urandom > /home/sprite/blob; sync; md5sum /home/sprite/blob",
        )
        .await;
    let v0 = api.checkpoint("inc", None).await;
    wait_for_checkpoints_in_store(&api, "inc", 1).await;
    api.sh("inc", "echo two > /home/sprite/two; sync").await;
    let v1 = api.checkpoint("inc", None).await;
    wait_for_checkpoints_in_store(&api, "inc", 2).await;
    let log = d.log();
    let (first, second) = (chunks_read(&log, &v0), chunks_read(&log, &v1));
    // The 32 MiB written before v0 are in v0's copy's reads, and not in
    // v1's: that reads the few chunks of metadata and the new file.
    assert!(first >= 32, "{v0}'s copy read {first} chunks");
    assert!(
        second * 4 < first,
        "{v1}'s copy read {second} chunks, {v0}'s {first}"
    );
    // The default store is a folder on this disk: nothing is cached of it
    // (a cache would have written every chunk sent twice).
    assert!(chunk_files(&d.data_dir.join("objects")).len() >= 32);
    let cached = chunk_files(&d.data_dir.join("cache"));
    assert!(cached.is_empty(), "cached: {cached:?}");

    d.kill9();
    for ck in [&v0, &v1] {
        std::fs::remove_file(checkpoint_image(&d, &id, ck)).expect("remove the checkpoint's image");
    }
    d.spawn();
    let api = d.client();
    api.restore("inc", &v1).await;
    assert_eq!(api.sh("inc", SUM_BLOB).await, sum);
    assert_eq!(api.sh("inc", "cat /home/sprite/two").await, "two\n");
    api.restore("inc", &v0).await;
    assert_eq!(api.sh("inc", SUM_BLOB).await, sum);
    let gone = api.sh("inc", "cat /home/sprite/two 2>&1 || true").await;
    assert!(gone.contains("No such file"), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_sprites_survive_losing_their_local_disk() {
    let objects = tempfile::Builder::new()
        .prefix("sprited-objects-")
        .tempdir_in("/var/tmp")
        .expect("store dir");
    let url = format!("file://{}", objects.path().display());
    let mut d = Daemon::start_with(&["--object-store", &url]);
    let api = d.client();
    api.create("keep").await;
    let id = api.id_of("keep").await;
    let sum = api.sh("keep", WRITE_BLOB).await;
    let v0 = api.checkpoint("keep", None).await;
    evict_ok(&api, "keep").await;
    // A store elsewhere has a local cache (2 GiB by default) of what was
    // sent.
    assert!(!chunk_files(&d.data_dir.join("cache")).is_empty());

    // The host's disk is lost: volumes, checkpoints, base images, the
    // volume template and the chunk cache all gone (the metadata stays).
    d.kill9();
    for sub in ["sprites", "images", "templates"] {
        std::fs::remove_dir_all(d.pool_dir().join(sub)).expect("remove pool contents");
    }
    let _ = std::fs::remove_dir_all(d.data_dir.join("cache"));
    assert!(!sprite_pool(&d, &id).exists());
    d.spawn();
    d.wait_log(
        "base image brought back from object storage",
        Duration::from_secs(30),
    );
    let api = d.client();
    assert_eq!(api.sh("keep", SUM_BLOB).await, sum);
    api.restore("keep", &v0).await;
    assert_eq!(api.sh("keep", SUM_BLOB).await, sum);
    assert!(!chunk_files(objects.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_killed_during_upload_and_download_loses_nothing() {
    let mut d = Daemon::start_with_env(&[], &[("SPRITED_FAILPOINTS", "evict-uploading")]);
    let api = d.client();
    api.create("crashy").await;
    let id = api.id_of("crashy").await;
    let sum = api.sh("crashy", WRITE_BLOB).await;
    let pool = sprite_pool(&d, &id);

    // Killed halfway through the upload: still local, whole; evicting
    // again completes.
    common::post_in_background(&d, &api, "/v1/sprites/crashy/evict");
    d.kill9();
    d.env.clear();
    d.env
        .push(("SPRITED_FAILPOINTS".into(), "evict-recorded".into()));
    d.spawn();
    let api = d.client();
    assert_eq!(storage(&api, "crashy").await["location"], "local");
    assert!(pool.join("volume.img").exists());
    assert_eq!(api.sh("crashy", SUM_BLOB).await, sum);

    // Killed after the eviction was recorded, before local files went:
    // start-up deletes them, and the sprite is evicted.
    common::post_in_background(&d, &api, "/v1/sprites/crashy/evict");
    d.kill9();
    d.env.clear();
    d.env
        .push(("SPRITED_FAILPOINTS".into(), "wake-downloading".into()));
    d.spawn();
    let api = d.client();
    assert!(
        !pool.join("volume.img").exists(),
        "start-up finished the eviction"
    );
    assert_eq!(storage(&api, "crashy").await["location"], "object");

    // Killed halfway through bringing the volume back whole (what a
    // checkpoint of a cold evicted sprite does): still evicted, no
    // half-written file, no checkpoint.
    common::post_in_background(&d, &api, "/v1/sprites/crashy/checkpoint");
    d.kill9();
    d.env.clear();
    d.spawn();
    let api = d.client();
    assert_eq!(storage(&api, "crashy").await["location"], "object");
    assert!(!pool.join("volume.img").exists());
    assert!(
        files_in(&pool).iter().all(|f| !f.starts_with('.')),
        "{:?}",
        files_in(&pool)
    );
    assert_eq!(
        api.get_json("/v1/sprites/crashy/checkpoints").await,
        serde_json::json!([])
    );

    // Woken (its volume filling itself from the store), written to (no
    // sync: an acknowledged write is the promise), and the daemon killed
    // while the sprite runs on that volume: after the restart the sprite
    // is still evicted with its local part kept, and the next wake resumes
    // with every byte, the new ones included.
    api.sh("crashy", "echo after-wake > /home/sprite/new").await;
    assert_eq!(storage(&api, "crashy").await["location"], "filling");
    d.kill9();
    d.spawn();
    let api = d.client();
    assert_eq!(storage(&api, "crashy").await["location"], "object");
    assert!(
        pool.join("volume.state").exists(),
        "the fill record is kept"
    );
    // A checkpoint first (it needs the volume whole, and nothing runs to
    // wake the fill): completed from the local part, never replaced by
    // the store's older copy (the soak lost writes that way).
    let ck = api.checkpoint("crashy", None).await;
    // Local again (its checkpoint perhaps already copied to the store).
    let loc = storage(&api, "crashy").await["location"].clone();
    assert!(loc == "local" || loc == "local+object", "{loc}");
    assert_eq!(api.sh("crashy", SUM_BLOB).await, sum);
    assert_eq!(
        api.sh("crashy", "cat /home/sprite/new").await,
        "after-wake\n"
    );
    assert!(!pool.join("volume.state").exists(), "the fill is complete");
    api.sh("crashy", "rm /home/sprite/new; sync").await;
    api.restore("crashy", &ck).await;
    assert_eq!(
        api.sh("crashy", "cat /home/sprite/new").await,
        "after-wake\n",
        "the checkpoint holds the write too"
    );
    assert_eq!(api.sh("crashy", SUM_BLOB).await, sum);
    assert_eq!(
        api.sh("crashy", "cat /home/sprite/new").await,
        "after-wake\n"
    );
    // Stopped, the volume is whole and local again.
    api.req(reqwest::Method::POST, "/v1/sprites/crashy/exec?cmd=true")
        .send()
        .await
        .expect("exec");
    let r = evict_ok(&api, "crashy").await;
    assert!(r["stored_bytes"].as_u64().unwrap_or(0) > 8 << 20, "{r}");
    assert_eq!(
        api.sh("crashy", "cat /home/sprite/new").await,
        "after-wake\n"
    );
}

/// A sprite whose sandbox died while no daemon ran (the daemon killed,
/// then its init): the next daemon finds it cold with its root, volume and
/// checkpoint views still mounted. They are unmounted at start-up, so an
/// eviction frees the local disk, and every write acknowledged before and
/// after comes back from the store. (The soak found writes lost this way:
/// the eviction failed half-way on the leftover mounts, the next wake
/// rebuilt the volume under them, and the writes went to the old file.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_left_by_a_killed_daemon_go_before_an_eviction() {
    let mut d = Daemon::start();
    let api = d.client();
    api.create("left").await;
    let id = api.id_of("left").await;
    api.sh("left", "echo one > /home/sprite/w").await;
    api.checkpoint("left", None).await;
    api.eventually("left", "ls /.sprite/checkpoints", "v0\n")
        .await;
    api.sh("left", "echo two >> /home/sprite/w").await;
    let mounts = d.data_dir.join("sprites").join(&id);

    d.kill9();
    d.kill_sandbox(&id);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.runc_state(&id) != "stopped" {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox outlived SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !mounts_under(&mounts).is_empty(),
        "nothing was left mounted"
    );
    d.spawn();
    let api = d.client();
    assert_eq!(api.status("left").await, "cold");
    assert_eq!(mounts_under(&mounts), Vec::<String>::new());

    evict_ok(&api, "left").await;
    assert_eq!(api.sh("left", "cat /home/sprite/w").await, "one\ntwo\n");
    api.sh("left", "echo three >> /home/sprite/w").await;
    api.checkpoint("left", None).await;
    evict_ok(&api, "left").await;
    assert_eq!(
        api.sh("left", "cat /home/sprite/w").await,
        "one\ntwo\nthree\n"
    );
    api.delete("left").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_cut_by_a_crash_is_finished_at_the_next_start() {
    // The soak lost a sprite's writes this way: evicted, woken (its volume
    // filling itself from the store), written to, then destroyed with the
    // daemon killed midway; the destroy had released the volume but not
    // yet the record, and the restart brought the sprite back from the
    // store's copy of before its wake. A destroy now takes the record
    // first: wherever the kill lands after that, the sprite is gone and
    // start-up removes what is left of it.
    for point in ["destroy-recorded", "destroy-released"] {
        let mut d = Daemon::start_with_env(&[], &[("SPRITED_FAILPOINTS", point)]);
        let api = d.client();
        api.create("doomed").await;
        let id = api.id_of("doomed").await;
        api.sh("doomed", "echo before > /home/sprite/old; sync")
            .await;
        evict_ok(&api, "doomed").await;
        api.sh("doomed", "echo after-wake > /home/sprite/new").await;
        assert_eq!(storage(&api, "doomed").await["location"], "filling");
        common::in_background(&d, api.req(reqwest::Method::DELETE, "/v1/sprites/doomed"));
        d.kill9();
        d.env.clear();
        d.spawn();
        let api = d.client();
        let r = api
            .req(reqwest::Method::GET, "/v1/sprites/doomed")
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 404, "{point}: the destroy was decided");
        assert!(
            !sprite_pool(&d, &id).exists(),
            "{point}: {:?}",
            files_in(&sprite_pool(&d, &id))
        );
        let sprite_dir = d.data_dir.join("sprites").join(&id);
        assert!(mounts_under(&sprite_dir).is_empty(), "{point}");
        assert!(!sprite_dir.exists(), "{point}");
        // The name is free again, for a sprite of its own.
        api.create("doomed").await;
        assert_eq!(
            api.sh("doomed", "ls /home/sprite").await,
            "",
            "{point}: nothing of the old one"
        );
        api.delete("doomed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chunk_is_detected_and_the_sprite_stays_intact() {
    // No cache: every chunk comes from the store.
    let d = Daemon::start_with(&["--chunk-cache-gb", "0"]);
    let api = d.client();
    api.create("dmg").await;
    let sum = api.sh("dmg", WRITE_BLOB).await;
    evict_ok(&api, "dmg").await;

    // Damage every chunk (keep the good bytes to put back).
    let chunks = chunk_files(&d.data_dir.join("objects"));
    assert!(!chunks.is_empty());
    let saved: Vec<(PathBuf, Vec<u8>)> = chunks
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).expect("chunk")))
        .collect();
    for (p, bytes) in &saved {
        let mut bad = bytes.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x5a;
        std::fs::write(p, &bad).expect("damage");
    }
    let (status, body) = http_exec(&api, "dmg", "true").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("corrupt data in the object store"), "{body}");
    assert_eq!(storage(&api, "dmg").await["location"], "object");

    // Truncated, too.
    for (p, bytes) in &saved {
        std::fs::write(p, &bytes[..bytes.len() / 3]).expect("truncate");
    }
    let (status, body) = http_exec(&api, "dmg", "true").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("corrupt"), "{body}");

    // Repaired: the sprite comes back as it was.
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).expect("repair");
    }
    assert_eq!(api.sh("dmg", SUM_BLOB).await, sum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_store_and_one_that_cannot_be_reached() {
    let moto = Moto::start("sprites");
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::start_with_env(
        &[
            "--object-store",
            "s3://sprites/cold",
            "--object-store-timeout",
            "3s",
            "--chunk-cache-gb",
            "0",
        ],
        &env,
    );
    let api = d.client();
    api.create("s3y").await;
    let id = api.id_of("s3y").await;
    let sum = api.sh("s3y", WRITE_BLOB).await;
    let v0 = api.checkpoint("s3y", None).await;
    // Its checkpoint reaches the store on its own, soon after it is made.
    let in_store = format!("cold/manifests/sprites/{id}/checkpoints/{v0}.json");
    wait_for_checkpoints_in_store(&api, "s3y", 1).await;
    assert!(moto.keys("sprites").contains(&in_store));
    let r = evict_ok(&api, "s3y").await;
    assert_eq!(r["checkpoints_uploaded"], 0, "already there: {r}");
    let keys = moto.keys("sprites");
    assert!(
        keys.contains(&format!("cold/manifests/sprites/{id}/volume.json")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("cold/chunks/")),
        "{keys:?}"
    );
    assert!(!sprite_pool(&d, &id).join("volume.img").exists());

    // The store stops answering: the wake fails, says so, loses nothing.
    moto.pause();
    let (status, body) = http_exec(&api, "s3y", "true").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("object store cannot be reached"), "{body}");
    moto.resume();
    assert_eq!(storage(&api, "s3y").await["location"], "object");
    assert_eq!(api.sh("s3y", SUM_BLOB).await, sum);
    api.restore("s3y", &v0).await;
    assert_eq!(api.sh("s3y", SUM_BLOB).await, sum);

    // Unreachable at eviction: the sprite stays local and running fine.
    moto.pause();
    let r = evict(&api, "s3y").await;
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("object store cannot be reached"), "{body}");
    assert!(body.contains("s3://sprites/cold"), "{body}");
    moto.resume();
    assert_eq!(storage(&api, "s3y").await["location"], "local+object");
    assert!(sprite_pool(&d, &id).join("volume.img").exists());
    assert_eq!(api.sh("s3y", SUM_BLOB).await, sum);

    // Unreachable when a checkpoint is made: made at once all the same,
    // copied once the store answers again, the lag visible meanwhile.
    moto.pause();
    let t0 = std::time::Instant::now();
    let v1 = api.checkpoint("s3y", None).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(storage(&api, "s3y").await["checkpoints_in_object_store"], 1);
    let m = api.metrics().await;
    assert!(m.contains("sprited_checkpoints_not_uploaded 1"), "{m}");
    assert!(
        m.contains("sprited_checkpoint_uploads_total{result=\"failed\"}"),
        "{m}"
    );
    moto.resume();
    wait_for_checkpoints_in_store(&api, "s3y", 2).await;
    let v1_key = format!("cold/manifests/sprites/{id}/checkpoints/{v1}.json");
    assert!(moto.keys("sprites").contains(&v1_key));
    let m = api.metrics().await;
    assert!(m.contains("sprited_checkpoints_not_uploaded 0"), "{m}");

    // A deleted checkpoint's copy goes with it.
    api.req(
        reqwest::Method::DELETE,
        &format!("/v1/sprites/s3y/checkpoints/{v0}"),
    )
    .send()
    .await
    .expect("delete checkpoint")
    .error_for_status()
    .expect("deleted");
    assert!(!moto.keys("sprites").contains(&in_store));
}

/// Waits (up to 30 s) until `n` of the sprite's checkpoints are in the store.
async fn wait_for_checkpoints_in_store(api: &Api, name: &str, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = storage(api, name).await;
        if st["checkpoints_in_object_store"].as_u64() == Some(n) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoints never reached the store: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 19: a restart against another object store while sprites are
/// evicted to the first is refused, saying so; with the first it works.
#[tokio::test]
async fn another_object_store_is_refused_while_sprites_live_in_the_first() {
    let mut d = Daemon::start();
    let api = d.client();
    api.create("pinned").await;
    api.sh("pinned", "echo kept > /home/sprite/f").await;
    evict_ok(&api, "pinned").await;
    d.kill9();
    let other = tempfile::Builder::new()
        .prefix("sprited-other-store-")
        .tempdir_in("/var/tmp")
        .expect("dir");
    let out = std::process::Command::new(common::BIN)
        .args(["--listen", "127.0.0.1:1", "--data-dir"])
        .arg(&d.data_dir)
        .arg("--object-store")
        .arg(format!("file://{}", other.path().display()))
        .env("SPRITED_TOKEN", &d.token)
        .output()
        .expect("run sprited");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started against another store");
    assert!(
        err.contains("live only in the object store") && err.contains("--object-store"),
        "{err}"
    );
    d.spawn();
    let api = d.client();
    assert_eq!(api.sh("pinned", "cat /home/sprite/f").await.trim(), "kept");
}
