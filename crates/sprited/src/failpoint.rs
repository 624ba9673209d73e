//! Fault injection for crash tests: `SPRITED_FAILPOINTS=name,name` makes the
//! daemon stop dead at those points (the test then SIGKILLs it), so a test
//! can kill it in the middle of an operation, deterministically. Unset in
//! production; checking costs one string comparison per point.

use std::sync::OnceLock;

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("SPRITED_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Whether `name` is armed (for points that do more than stop).
pub fn armed_at(name: &str) -> bool {
    armed().iter().any(|a| a == name)
}

/// Blocks the calling thread forever if `name` is armed. On a worker of
/// the daemon's runtime the worker's other tasks move to another thread
/// first, so the rest of the daemon goes on answering (as it would while
/// an operation is slow) until the test kills it.
pub fn hit(name: &str) {
    if armed_at(name) {
        tracing::warn!(failpoint = name, "failpoint reached; stopping here");
        let stop = || loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(stop),
            _ => stop(),
        }
    }
}
