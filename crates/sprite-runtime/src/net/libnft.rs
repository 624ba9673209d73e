//! nftables scripts run in this process, through the library the `nft`
//! command is a front end to (`libnftables.so.1`, installed with it).
//!
//! Every start installs the sandbox's ruleset in its network namespace. As
//! an `nft -f -` process that took ~2.5 ms of wall time and as much CPU
//! (the program loaded, its library set up, then the script); the same
//! script through the library, from a thread already in the namespace,
//! takes ~0.4 ms. The library is opened once, at first use; where it
//! cannot be, scripts go to the `nft` command as before.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

/// The library's soname (Debian's `libnftables1`, a dependency of `nftables`).
const SONAME: &str = "libnftables.so.1";

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxFlag = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxText = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The functions of `libnftables` used here, and the library that holds
/// them (kept open for as long as they are).
struct Lib {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxFlag,
    buffer_error: CtxFlag,
    error_text: CtxText,
    run: RunCmd,
    _lib: libloading::Library,
}

impl std::fmt::Debug for Lib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(SONAME)
    }
}

/// One script at a time: the library keeps some of its state outside the
/// context (its cache of the host's interfaces, which a context's free
/// releases).
static RUNNING: Mutex<()> = Mutex::new(());

fn lib() -> Option<&'static Lib> {
    static LIB: OnceLock<Option<Lib>> = OnceLock::new();
    LIB.get_or_init(|| match open() {
        Ok(lib) => Some(lib),
        Err(e) => {
            tracing::info!(error = %e, "no {SONAME}: nftables scripts run as nft processes");
            None
        }
    })
    .as_ref()
}

fn open() -> Result<Lib, libloading::Error> {
    // SAFETY: loading libnftables runs its constructors, which only set up
    // its own state; each symbol is looked up with the C signature the
    // library's public header (nftables/libnftables.h) gives it.
    unsafe {
        let lib = libloading::Library::new(SONAME)?;
        Ok(Lib {
            ctx_new: *lib.get::<CtxNew>(b"nft_ctx_new\0")?,
            ctx_free: *lib.get::<CtxFree>(b"nft_ctx_free\0")?,
            buffer_output: *lib.get::<CtxFlag>(b"nft_ctx_buffer_output\0")?,
            buffer_error: *lib.get::<CtxFlag>(b"nft_ctx_buffer_error\0")?,
            error_text: *lib.get::<CtxText>(b"nft_ctx_get_error_buffer\0")?,
            run: *lib.get::<RunCmd>(b"nft_run_cmd_from_buffer\0")?,
            _lib: lib,
        })
    }
}

/// Runs nftables `script` in the network namespace of the calling thread,
/// as `nft -f -` would: all of it or, on an error, none of it (one
/// transaction). `None` where the library is not there; `Some(Err(text))`
/// with what nft would have said on its standard error.
pub fn run(script: &str) -> Option<Result<(), String>> {
    let lib = lib()?;
    let Ok(text) = CString::new(script) else {
        return Some(Err("the script holds a NUL byte".into()));
    };
    // The library waits on its netlink socket with select(), whose fd_set
    // ends at descriptor 1023 (glibc aborts the process past it), and a
    // daemon with hundreds of sprites holds more descriptors than that:
    // the call is made on a thread of its own (in the caller's network
    // namespace, as every new thread is) with a table of descriptors of
    // its own that holds only stdio, so the socket the library opens is a
    // low number. Where that table cannot be made, `None`: the script goes
    // to an `nft` process.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Err(e) = own_descriptor_table() {
                    tracing::warn!(error = %e, "no descriptor table of its own for libnftables; running nft");
                    return None;
                }
                let started = std::time::Instant::now();
                let one = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
                let (done, sockets) = call(lib, &text);
                drop(one);
                // Closing the library's socket can wait for the kernel
                // (~15 ms after a set of intervals is flushed: its old
                // elements are freed first); held past the context, that
                // happens here, outside the lock, not in every other
                // script's way.
                drop(sockets);
                tracing::debug!(elapsed = ?started.elapsed(), "libnftables");
                Some(done)
            })
            .join()
            .unwrap_or(None)
    })
}

/// Gives the calling thread a table of descriptors of its own (a copy of
/// the process's) and closes everything in it above stdio. The process's
/// own table, which every other thread uses, is untouched.
fn own_descriptor_table() -> std::io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FILES)?;
    // SAFETY: close_range on this thread's private table (made just
    // above): no other thread can see or use its descriptors.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `text` through a context of its own, on a thread whose table of
/// descriptors is its own and held nothing above stdio before (see
/// [`own_descriptor_table`]). Returns, with the result, copies of the
/// descriptors the library opened (its socket), so that freeing the
/// context does not close them: the caller does, when it chooses.
fn call(lib: &Lib, text: &CStr) -> (Result<(), String>, Vec<std::os::fd::OwnedFd>) {
    // SAFETY: a context is made, used and freed on this thread alone; its
    // output and errors are buffered in it (nothing is written to the
    // daemon's stdio); the error text is copied out before the context,
    // which owns it, is freed; `text` outlives the call that reads it.
    unsafe {
        let ctx = (lib.ctx_new)(0);
        if ctx.is_null() {
            return (Err("nft_ctx_new failed".into()), Vec::new());
        }
        (lib.buffer_output)(ctx);
        (lib.buffer_error)(ctx);
        let rc = (lib.run)(ctx, text.as_ptr());
        let result = if rc == 0 {
            Ok(())
        } else {
            let err = (lib.error_text)(ctx);
            Err(if err.is_null() {
                format!("nft failed ({rc})")
            } else {
                CStr::from_ptr(err).to_string_lossy().trim().to_string()
            })
        };
        let held = held_copies();
        (lib.ctx_free)(ctx);
        (result, held)
    }
}

/// Copies of every descriptor open above stdio in the calling thread's
/// table: on a thread whose table was emptied, what the library opened.
fn held_copies() -> Vec<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    /// Far more than a context opens (one netlink socket).
    const LOOK_UP_TO: i32 = 64;
    (3..LOOK_UP_TO)
        .filter_map(|fd| {
            // SAFETY: F_DUPFD_CLOEXEC only reads `fd` (EBADF where it is
            // not open); the copy is new and owned only here.
            let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, LOOK_UP_TO) };
            // SAFETY: `copy` was just opened and nothing else owns it.
            (copy >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(copy) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a thread in a network namespace of its own: a script goes in
    /// whole and `nft` sees it there (and not in the host's); a bad one
    /// says why and leaves nothing of itself.
    #[test]
    fn a_script_runs_in_the_threads_namespace() {
        assert!(
            lib().is_some(),
            "{SONAME} is not installed (apt-get install nftables)"
        );
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            let ok = run("create table inet libnft_test\n\
                          table inet libnft_test { set s { type ipv4_addr; }; }\n");
            assert_eq!(ok, Some(Ok(())));
            let bad = run("add element inet libnft_test s { 10.0.0.1 }\n\
                           add element inet libnft_test nosuchset { 10.0.0.2 }\n");
            let err = bad.expect("the library").expect_err("a missing set");
            assert!(err.contains("No such file or directory"), "{err}");
            let listed = std::process::Command::new("nft")
                .args(["list", "table", "inet", "libnft_test"])
                .output()
                .expect("nft");
            let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
            assert!(listed.contains("set s"), "{listed}");
            assert!(
                !listed.contains("10.0.0.1"),
                "half of a failed script went in: {listed}"
            );
        })
        .join()
        .expect("the test's thread");
        let host = std::process::Command::new("nft")
            .args(["list", "table", "inet", "libnft_test"])
            .output()
            .expect("nft");
        assert!(
            !host.status.success(),
            "the table reached the host's namespace"
        );
    }

    /// A process holding more descriptors than select() can wait on (a
    /// daemon with hundreds of sprites) runs scripts all the same: before,
    /// glibc aborted it ("bit out of range 0 - FD_SETSIZE on fd_set").
    #[test]
    fn a_script_runs_with_thousands_of_descriptors_open() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert!(
            hard >= 1500,
            "RLIMIT_NOFILE's hard limit {hard} is under 1500"
        );
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
        let held: Vec<std::fs::File> = (0..1200)
            .map(|_| std::fs::File::open("/dev/null").expect("open"))
            .collect();
        let highest = held.last().map(std::os::fd::AsRawFd::as_raw_fd);
        assert!(highest > Some(1100), "{highest:?}");
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            assert_eq!(run("create table inet libnft_many\n"), Some(Ok(())));
            // The descriptors the process holds are still its own.
            let nft = std::process::Command::new("nft")
                .args(["list", "table", "inet", "libnft_many"])
                .status()
                .expect("nft");
            assert!(nft.success());
        })
        .join()
        .expect("the test's thread");
        for f in &held {
            assert!(
                f.metadata().is_ok(),
                "a descriptor of the process was closed"
            );
        }
    }
}
