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

/// One script at a time: the library keeps some of its state (its
/// caches of names and numbers) outside the context.
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
    let _one = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: a context is made, used and freed on this thread alone; its
    // output and errors are buffered in it (nothing is written to the
    // daemon's stdio); the error text is copied out before the context,
    // which owns it, is freed; `text` outlives the call that reads it.
    unsafe {
        let ctx = (lib.ctx_new)(0);
        if ctx.is_null() {
            return Some(Err("nft_ctx_new failed".into()));
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
        (lib.ctx_free)(ctx);
        Some(result)
    }
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
}
