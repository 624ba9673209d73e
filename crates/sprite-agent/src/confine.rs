//! The seccomp filter, loaded by the agent itself as PID 1, first thing.
//!
//! The daemon compiles the sprite's filter once (libseccomp, the profile
//! runc would otherwise compile in `runc init` at every start) and hands
//! it down as a sealed memfd on fd [`SECCOMP_FD_ENV`] names. Before the
//! agent reads its arguments or touches the sprite's files it loads the
//! filter, which every process of the sprite then inherits, and drops
//! every capability not named in [`CAPS_ENV`]: where no_new_privs is off
//! (sudo works) loading a filter takes `CAP_SYS_ADMIN`, so the daemon
//! started it with that and `CAP_SETPCAP` (to drop from the bounding set)
//! for this moment only. If any step fails the agent exits: a sprite never
//! runs unfiltered or with more than it was given.
//!
//! Nothing else runs in the sprite yet: the agent is its only process, is
//! static (no loader or library of the sprite's runs in it), and has not
//! opened anything of the sprite's.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// Where the compiled filter is (an fd number).
pub const SECCOMP_FD_ENV: &str = "SPRITE_SECCOMP_FD";
/// The capabilities to keep (`CAP_CHOWN,CAP_KILL,...`).
pub const CAPS_ENV: &str = "SPRITE_CAPS";
/// A filter longer than this is not one the daemon compiled (BPF
/// programs are limited to 4096 instructions of 8 bytes).
const MAX_BPF: u64 = 4096 * 8;

/// Loads the filter and drops the extra capabilities when the daemon
/// asked for it (both variables set); does nothing when it did not (the
/// filter is then runc's, or the sprite runs under gVisor).
pub fn from_daemon() -> Result<(), String> {
    let Ok(fd) = std::env::var(SECCOMP_FD_ENV) else {
        return Ok(());
    };
    let keep =
        std::env::var(CAPS_ENV).map_err(|_| format!("{SECCOMP_FD_ENV} without {CAPS_ENV}"))?;
    // Not passed on to anything the agent starts. PID 1, no thread yet.
    std::env::remove_var(SECCOMP_FD_ENV);
    std::env::remove_var(CAPS_ENV);
    let fd: i32 = fd
        .parse()
        .ok()
        .filter(|fd| *fd > 2)
        .ok_or_else(|| format!("{SECCOMP_FD_ENV}={fd:?} is not an fd above 2"))?;
    // SAFETY: the daemon passed this descriptor for us alone; nothing else
    // in this process knows or owns it, and it is closed when `file` drops.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let program = read(&file)?;
    drop(file);
    load(&program)?;
    drop_capabilities(&keep)
}

fn read(file: &std::fs::File) -> Result<Vec<u8>, String> {
    let len = file
        .metadata()
        .map_err(|e| format!("seccomp filter: {e}"))?
        .len();
    if len == 0 || len % 8 != 0 || len > MAX_BPF {
        return Err(format!("seccomp filter of {len} bytes"));
    }
    let mut program = vec![0u8; len as usize];
    file.read_exact_at(&mut program, 0)
        .map_err(|e| format!("seccomp filter: {e}"))?;
    Ok(program)
}

fn load(program: &[u8]) -> Result<(), String> {
    let filter: Vec<libc::sock_filter> = program
        .chunks_exact(8)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| "seccomp filter too long".to_string())?,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(SET_MODE_FILTER) reads `prog` and the `filter` array
    // it points to, both alive for the call; the kernel checks the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(format!(
            "loading the seccomp filter: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Keeps `keep` (names) in the effective and permitted sets, nothing in
/// the inheritable and ambient ones, and drops everything else from the
/// bounding set, so no process of the sprite can ever hold it.
fn drop_capabilities(keep: &str) -> Result<(), String> {
    use caps::{CapSet, Capability};
    let keep: caps::CapsHashSet = keep
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<Capability>()
                .map_err(|_| format!("{CAPS_ENV}: unknown capability {n:?}"))
        })
        .collect::<Result<_, _>>()?;
    let fail = |what: &str, e: caps::errors::CapsError| format!("capabilities: {what}: {e}");
    let bounding = caps::read(None, CapSet::Bounding).map_err(|e| fail("read", e))?;
    // CAP_SETPCAP is what dropping from the bounding set takes: last.
    let mut extra: Vec<Capability> = bounding.difference(&keep).copied().collect();
    extra.sort_by_key(|c| *c == Capability::CAP_SETPCAP);
    for cap in extra {
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| fail("bounding", e))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient", e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| fail("inheritable", e))?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| fail("read", e))?;
    let kept: caps::CapsHashSet = permitted.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Effective, &kept).map_err(|e| fail("effective", e))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|e| fail("permitted", e))?;
    // What the kernel holds now, not what was asked.
    for set in [CapSet::Bounding, CapSet::Permitted, CapSet::Effective] {
        let now = caps::read(None, set).map_err(|e| fail("read", e))?;
        if !now.is_subset(&keep) {
            return Err(format!(
                "capabilities: {set:?} still holds {:?}",
                now.difference(&keep)
            ));
        }
    }
    Ok(())
}
