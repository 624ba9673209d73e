//! Facts about a running process, from `/proc`.

/// Resident memory (VmRSS) of process `pid`, in KiB; 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_rss() {
        let kib = rss_kib(std::process::id());
        assert!(kib > 100, "{kib} KiB");
        assert_eq!(rss_kib(u32::MAX), 0);
    }
}
