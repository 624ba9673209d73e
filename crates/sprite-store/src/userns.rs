//! Making user namespaces from a threaded process: a helper is born in
//! one (cloned sharing the caller's memory), the caller writes its id maps
//! and keeps a descriptor of it, and the helper exits. Used for each sandbox's own namespace (made
//! as an owner uid of its own: see sprite-runtime's `userns`) and for the
//! namespaces that describe an idmapped mount ([`crate::idmap`]).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// What failed, said in front of its cause (whose kind it keeps).
fn io(what: impl std::fmt::Display, source: std::io::Error) -> std::io::Error {
    std::io::Error::new(source.kind(), format!("{what}: {source}"))
}

/// Creates a user namespace whose uid and gid maps are `map` (lines of
/// `inside outside count`), created as `owner` (host root when `None`),
/// and returns a descriptor of it.
pub fn create(owner: Option<u32>, map: &str) -> std::io::Result<OwnedFd> {
    make(owner, map, false).map(|(user, _)| user)
}

/// [`create`], and a network namespace owned by the new user namespace
/// (unshared with it, so that a sandbox joining both may mount sysfs):
/// descriptors of both.
pub fn create_with_net(owner: Option<u32>, map: &str) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (user, net) = make(owner, map, true)?;
    let net = net.ok_or_else(|| std::io::Error::other("no network namespace"))?;
    Ok((user, net))
}

fn make(owner: Option<u32>, map: &str, net: bool) -> std::io::Result<(OwnedFd, Option<OwnedFd>)> {
    let flags = libc::CLONE_NEWUSER | if net { libc::CLONE_NEWNET } else { 0 };
    let (go_r, go_w) = pipe().map_err(|e| io("pipe", e))?;
    let mut stack = vec![0u8; HELPER_STACK];
    let pid = {
        // A namespace's owner is its creator's effective ids: this thread
        // takes the owner's for the clone, and only this thread.
        let _as_owner = owner.map(AsOwner::become_owner).transpose()?;
        helper(flags, &go_r, &mut stack).map_err(|e| {
            io(
                format!(
                    "clone(CLONE_NEWUSER{}) as uid {}",
                    if net { "|CLONE_NEWNET" } else { "" },
                    owner.unwrap_or(0)
                ),
                e,
            )
        })?
    };
    let result = finish(pid, map, net);
    // The helper may exit now: the namespace lives on through our fd.
    drop(go_w);
    let mut status = 0;
    // SAFETY: waitpid on our own child, with a valid pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
    // Its stack and the pipe end it reads outlive it.
    drop(stack);
    drop(go_r);
    result
}

/// The helper's stack: it reads one byte and exits.
const HELPER_STACK: usize = 64 * 1024;

/// Starts the helper: a process born in the new namespaces that waits
/// until `go` reaches end of file, then exits. It shares this process's
/// memory and descriptor table (`CLONE_VM | CLONE_FILES`), so making it
/// copies neither: a fork of the daemon copied its page tables, holding
/// its memory map's lock for writing meanwhile, which every page fault of
/// its other threads then waited for; and a forked child held a copy of
/// every descriptor, other starts' pipe ends among them.
fn helper(flags: libc::c_int, go: &OwnedFd, stack: &mut [u8]) -> std::io::Result<libc::pid_t> {
    extern "C" fn wait_for_go(arg: *mut libc::c_void) -> libc::c_int {
        let go = arg as usize as libc::c_int;
        let mut b = 0u8;
        // SAFETY: a read into a byte on this (the helper's own) stack. It
        // touches nothing else of the memory it shares: no allocation, no
        // lock, no errno (a read that returns, with every signal blocked,
        // has not failed).
        unsafe { libc::read(go, (&mut b as *mut u8).cast(), 1) };
        0
    }
    // Stacks grow down on every architecture this builds for: the top,
    // 16-byte aligned as the ABI wants.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // Every signal blocked in the helper (it inherits this thread's mask):
    // a handler of the daemon's running on its memory from another process
    // could do anything.
    let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut was = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initializes `all`; pthread_sigmask reads it and
    // writes the old mask into `was`, both on this stack.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), was.as_mut_ptr());
    }
    // SAFETY: the child runs `wait_for_go` on `stack`, which the caller
    // keeps alive until it has reaped the child, and `go` stays open
    // (shared table) until then too. The child shares our memory but uses
    // only its own stack and a raw read; glibc's clone wrapper then exits
    // it with the function's result. SIGCHLD makes it an ordinary child to
    // wait for.
    let pid = unsafe {
        libc::clone(
            wait_for_go,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_FILES | flags | libc::SIGCHLD,
            go.as_raw_fd() as usize as *mut libc::c_void,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, was.as_ptr(), std::ptr::null_mut()) };
    if pid < 0 {
        return Err(err);
    }
    Ok(pid)
}

/// This thread's effective uid and gid as a namespace owner's, back to
/// root's when dropped. Raw system calls: they change the calling thread
/// alone (libc's wrappers change every thread of the process). The real
/// and saved ids stay root's, so going back needs nothing it gave up.
struct AsOwner;

impl AsOwner {
    fn become_owner(owner: u32) -> std::io::Result<AsOwner> {
        let o = owner as libc::c_long;
        // SAFETY: setresgid and setresuid with -1 (unchanged) for the real
        // and saved ids; they change this thread's credentials only.
        unsafe {
            if libc::syscall(
                libc::SYS_setresgid,
                -1 as libc::c_long,
                o,
                -1 as libc::c_long,
            ) != 0
            {
                return Err(io(
                    format!("becoming gid {owner}"),
                    std::io::Error::last_os_error(),
                ));
            }
            if libc::syscall(
                libc::SYS_setresuid,
                -1 as libc::c_long,
                o,
                -1 as libc::c_long,
            ) != 0
            {
                let e = std::io::Error::last_os_error();
                AsOwner::back(libc::SYS_setresgid);
                return Err(io(format!("becoming uid {owner}"), e));
            }
        }
        Ok(AsOwner)
    }

    /// Sets this thread's effective id back to root's through `call`
    /// (uid first: it brings back the capabilities the gid needs). A
    /// thread left with another's ids would do the daemon's work as them:
    /// that is not survivable.
    fn back(call: libc::c_long) {
        // SAFETY: as above, the effective id only.
        let rc = unsafe {
            libc::syscall(
                call,
                -1 as libc::c_long,
                0 as libc::c_long,
                -1 as libc::c_long,
            )
        };
        if rc != 0 {
            eprintln!(
                "sprited: cannot take back root's ids after making a user namespace: {}",
                std::io::Error::last_os_error()
            );
            std::process::abort();
        }
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        AsOwner::back(libc::SYS_setresuid);
        AsOwner::back(libc::SYS_setresgid);
    }
}

fn finish(pid: libc::pid_t, map: &str, net: bool) -> std::io::Result<(OwnedFd, Option<OwnedFd>)> {
    for file in ["uid_map", "gid_map"] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, map).map_err(|e| io(format!("writing {}", path.display()), e))?;
    }
    let open = |ns: &str| -> std::io::Result<OwnedFd> {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{ns}"));
        Ok(File::open(&path)
            .map_err(|e| io(format!("opening {}", path.display()), e))?
            .into())
    };
    let user = open("user")?;
    let net = if net { Some(open("net")?) } else { None };
    Ok((user, net))
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array, which lives on the stack.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just returned by pipe2 and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The `Uid:` or `Gid:` line of this thread's status: real, effective,
    /// saved, filesystem.
    fn ids(which: &str) -> Vec<u32> {
        std::fs::read_to_string("/proc/thread-self/status")
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix(which))
            .expect("ids line")
            .split_whitespace()
            .map(|v| v.parse().expect("id"))
            .collect()
    }

    /// Namespaces made as other owners, from several threads at once: each
    /// has its owner and map, and every thread is root again after.
    #[test]
    fn namespaces_have_their_owners_and_the_thread_is_root_again() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test makes user namespaces as other uids: run it as root"
        );
        let caps_before = std::fs::read_to_string("/proc/thread-self/status")
            .expect("status")
            .lines()
            .find(|l| l.starts_with("CapEff:"))
            .map(str::to_string);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                s.spawn(move || {
                    for i in 0..8u32 {
                        let owner = 3_000_000 + t * 100 + i;
                        let (user, net) = create_with_net(Some(owner), "0 200000 65536")
                            .expect("user and network namespaces");
                        let path = format!("/proc/self/fd/{}", user.as_raw_fd());
                        assert_eq!(std::fs::metadata(&path).expect("stat").uid(), 0);
                        // The owner, as the kernel tells it (NS_GET_OWNER_UID).
                        const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;
                        let mut uid: libc::uid_t = 0;
                        // SAFETY: the ioctl writes a uid_t into `uid`.
                        let rc =
                            unsafe { libc::ioctl(user.as_raw_fd(), NS_GET_OWNER_UID, &mut uid) };
                        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
                        assert_eq!(uid, owner);
                        assert_ne!(
                            std::fs::metadata(format!("/proc/self/fd/{}", net.as_raw_fd()))
                                .expect("stat")
                                .ino(),
                            std::fs::metadata("/proc/self/ns/net").expect("stat").ino(),
                        );
                        assert_eq!(ids("Uid:"), [0, 0, 0, 0]);
                        assert_eq!(ids("Gid:"), [0, 0, 0, 0]);
                    }
                    let plain = create(None, "0 300000 1").expect("user namespace");
                    assert!(plain.as_raw_fd() >= 0);
                });
            }
        });
        let caps_after = std::fs::read_to_string("/proc/thread-self/status")
            .expect("status")
            .lines()
            .find(|l| l.starts_with("CapEff:"))
            .map(str::to_string);
        assert_eq!(caps_before, caps_after);
        // Every helper was reaped.
        let mut status = 0;
        // SAFETY: a non-blocking wait for any child, valid pointer.
        let rc = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        assert!(rc <= 0, "a helper was left: {rc}");
    }

    /// A map the kernel refuses is an error, and the thread is root again.
    #[test]
    fn a_refused_map_is_an_error() {
        let e = create(Some(3_100_000), "0 0 4294967295 junk").expect_err("refused");
        assert!(e.to_string().contains("uid_map"), "{e}");
        assert_eq!(ids("Uid:"), [0, 0, 0, 0]);
    }
}
