//! Running a program with chosen descriptors at chosen numbers, without
//! copying the daemon to do it.
//!
//! `std::process::Command` with a `pre_exec` hook (the only way it offers
//! to put a descriptor at a given number) forks: the kernel copies the
//! page tables of the whole daemon, holding its memory map's lock for
//! writing meanwhile, so every thread of the daemon that touches a new page
//! waits; the child then tears the copy down again at exec. With hundreds
//! of sprites running that took a quarter of the daemon's CPU while sprites
//! were made, and stalled API requests behind it. `posix_spawn` (glibc's
//! runs the child on the parent's memory until it execs, as `vfork` does)
//! places the descriptors with file actions instead, and its cost does not
//! grow with the daemon.

use std::ffi::{CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// Runs `program` (looked up in `PATH` unless it has a slash) with `args`
/// and the daemon's environment, each `(fd, at)` of `placed` open at number
/// `at` in the child, signals at their default dispositions and none
/// blocked; and waits for it. Stdio numbers not in `placed` are the
/// daemon's own; every other descriptor of the daemon is close-on-exec, as
/// Rust opens them all.
pub fn run_placed(
    program: &OsStr,
    args: &[&OsStr],
    placed: &[(BorrowedFd<'_>, RawFd)],
) -> io::Result<ExitStatus> {
    let pid = spawn_placed(program, args, placed)?;
    wait(pid)
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} holds a NUL byte", s.to_string_lossy()),
        )
    })
}

/// A null-terminated array of pointers into `strings` (which must outlive
/// it).
fn pointers(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// `posix_spawn_file_actions_t`, destroyed when dropped.
struct FileActions(MaybeUninit<libc::posix_spawn_file_actions_t>);

impl FileActions {
    fn new() -> io::Result<FileActions> {
        let mut a = FileActions(MaybeUninit::uninit());
        // SAFETY: initializes the object `a` owns; on success it is
        // destroyed exactly once, in Drop.
        check(unsafe { libc::posix_spawn_file_actions_init(a.0.as_mut_ptr()) })?;
        Ok(a)
    }

    fn dup2(&mut self, fd: RawFd, at: RawFd) -> io::Result<()> {
        // SAFETY: the object was initialized in `new`.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(self.0.as_mut_ptr(), fd, at) })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialized in `new` (the only constructor), destroyed
        // only here.
        unsafe { libc::posix_spawn_file_actions_destroy(self.0.as_mut_ptr()) };
    }
}

/// `posix_spawnattr_t`, destroyed when dropped.
struct Attr(MaybeUninit<libc::posix_spawnattr_t>);

impl Attr {
    /// Default dispositions for every signal (the daemon ignores SIGPIPE,
    /// which exec would keep) and an empty mask (exec keeps the mask of
    /// the thread that spawned).
    fn defaults() -> io::Result<Attr> {
        let mut a = Attr(MaybeUninit::uninit());
        // SAFETY: initializes the object `a` owns (destroyed once, in
        // Drop); the signal sets are local and initialized by
        // sigemptyset/sigfillset before use.
        unsafe {
            check(libc::posix_spawnattr_init(a.0.as_mut_ptr()))?;
            let mut none = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(none.as_mut_ptr());
            let mut all = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(all.as_mut_ptr());
            check(libc::posix_spawnattr_setsigmask(
                a.0.as_mut_ptr(),
                none.as_ptr(),
            ))?;
            check(libc::posix_spawnattr_setsigdefault(
                a.0.as_mut_ptr(),
                all.as_ptr(),
            ))?;
            check(libc::posix_spawnattr_setflags(
                a.0.as_mut_ptr(),
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
        }
        Ok(a)
    }
}

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: initialized in `defaults` (the only constructor; an error
        // there after init still drops an initialized object).
        unsafe { libc::posix_spawnattr_destroy(self.0.as_mut_ptr()) };
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn spawn_placed(
    program: &OsStr,
    args: &[&OsStr],
    placed: &[(BorrowedFd<'_>, RawFd)],
) -> io::Result<libc::pid_t> {
    // The file actions run in order: a source at a number another
    // placement targets would be overwritten before it is placed. Copies
    // above every target (close-on-exec: only the placed numbers stay
    // open) cannot be.
    let above = placed.iter().map(|p| p.1).max().unwrap_or(2) + 1;
    let sources = placed
        .iter()
        .map(|(fd, _)| {
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor the caller lends;
            // the new descriptor is ours and owned just below.
            let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `copy` was just opened and nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(copy) })
        })
        .collect::<io::Result<Vec<OwnedFd>>>()?;
    let mut actions = FileActions::new()?;
    for (source, (_, at)) in sources.iter().zip(placed) {
        // dup2 leaves the copy at `at` open across exec.
        actions.dup2(source.as_raw_fd(), *at)?;
    }
    let attr = Attr::defaults()?;

    let argv: Vec<CString> = std::iter::once(program)
        .chain(args.iter().copied())
        .map(cstring)
        .collect::<io::Result<_>>()?;
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstring(&kv)
        })
        .collect::<io::Result<_>>()?;
    let (argv_p, envp_p) = (pointers(&argv), pointers(&envp));
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: the file actions and
    // attributes are initialized, `argv_p` and `envp_p` are
    // null-terminated arrays of NUL-terminated strings that `argv` and
    // `envp` keep alive until after it returns. glibc's posix_spawnp
    // returns once the child has exec'd (or failed to: then the error).
    check(unsafe {
        libc::posix_spawnp(
            &mut pid,
            argv[0].as_ptr(),
            actions.0.as_ptr(),
            attr.0.as_ptr(),
            argv_p.as_ptr(),
            envp_p.as_ptr(),
        )
    })?;
    Ok(pid)
}

fn wait(pid: libc::pid_t) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, with a valid pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } >= 0 {
            return Ok(ExitStatus::from_raw(status));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    fn pipe() -> (std::fs::File, std::fs::File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        (std::fs::File::from(r), std::fs::File::from(w))
    }

    fn sh(script: &str, placed: &[(BorrowedFd<'_>, RawFd)]) -> ExitStatus {
        run_placed(
            OsStr::new("sh"),
            &[OsStr::new("-c"), OsStr::new(script)],
            placed,
        )
        .expect("spawn")
    }

    fn link(fd: RawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .expect("link")
            .to_string_lossy()
            .into_owned()
    }

    /// Descriptors land at the numbers asked, even where a source sits at
    /// another's target (two swapped), and no other descriptor of ours
    /// reaches the child.
    #[test]
    fn descriptors_land_where_asked_and_nothing_else_leaks() {
        let (mut r1, w1) = pipe();
        let (mut r2, w2) = pipe();
        let (mut out_r, out_w) = pipe();
        let null = std::fs::File::open("/dev/null").expect("null");
        // Whatever numbers w1 and w2 have, put each at the other's.
        let (n1, n2) = (w1.as_raw_fd(), w2.as_raw_fd());
        let ours = [&r1, &w1, &r2, &w2, &out_r, &out_w].map(|f| link(f.as_raw_fd()));
        let status = sh(
            &format!(
                "echo one >&{n2}; echo two >&{n1}; \
                 for f in /proc/$$/fd/*; do echo \"${{f##*/}} $(readlink $f)\"; done"
            ),
            &[
                (null.as_fd(), 0),
                (out_w.as_fd(), 1),
                (out_w.as_fd(), 2),
                (w1.as_fd(), n2),
                (w2.as_fd(), n1),
            ],
        );
        assert!(status.success(), "{status}");
        drop((w1, w2, out_w));
        let read = |r: &mut std::fs::File| {
            let mut s = String::new();
            r.read_to_string(&mut s).expect("read");
            s
        };
        // w1 went to w2's number, which the script wrote "one" to.
        assert_eq!(read(&mut r1), "one\n");
        assert_eq!(read(&mut r2), "two\n");
        let listed = read(&mut out_r);
        let mut reached: Vec<(i32, String)> = listed
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, target)| ours.iter().any(|o| o == target))
            .map(|(fd, target)| (fd.parse().expect("fd number"), target.to_string()))
            .collect();
        reached.sort();
        let mut want = vec![
            (1, ours[5].clone()),
            (2, ours[5].clone()),
            (n2, ours[1].clone()),
            (n1, ours[3].clone()),
        ];
        want.sort();
        assert_eq!(reached, want, "{listed}");
        assert!(listed.lines().any(|l| l == "0 /dev/null"), "{listed}");
    }

    /// The exit status comes back; a missing program is an error, not a
    /// child; signals are at their defaults in the child.
    #[test]
    fn statuses_errors_and_signals() {
        let null = std::fs::File::open("/dev/null").expect("null");
        let stdio = [(null.as_fd(), 0)];
        assert_eq!(sh("exit 7", &stdio).code(), Some(7));
        assert!(sh("exit 0", &stdio).success());
        let e = run_placed(OsStr::new("/nonexistent/program"), &[], &stdio)
            .expect_err("no such program");
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        // SIGPIPE kills a writer whose reader is gone (the Rust runtime
        // ignores it in this process; the child must not inherit that),
        // and no signal is blocked. (glibc leaves its two internal
        // signals, 32 and 33, ignored in every child it spawns.)
        let status = sh(
            "grep -q '^SigBlk:[[:space:]]*0*$' /proc/self/status || exit 3; \
             ign=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/self/status); \
             [ $(( 0x$ign & ~0x180000000 )) -eq 0 ] || exit 4; \
             kill -PIPE $$; exit 5",
            &stdio,
        );
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status}");
        let e = run_placed(OsStr::new("sh\0"), &[], &stdio).expect_err("NUL");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
