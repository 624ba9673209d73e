//! Making user namespaces from a threaded process: a forked helper
//! unshares one, the caller writes its id maps and keeps a descriptor of
//! it, and the helper exits. Used for each sandbox's own namespace (made
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
    let (ready_r, ready_w) = pipe().map_err(|e| io("pipe", e))?;
    let (go_r, go_w) = pipe().map_err(|e| io("pipe", e))?;
    // What the child needs, ready before the fork: it allocates nothing.
    let owner_ids = owner.map(|o| o as libc::c_long);
    // SAFETY: after fork the child only makes raw system calls (dup2,
    // close_range, setgroups, setresgid, setresuid, unshare, write, read,
    // _exit), all async-signal-safe; it allocates nothing, takes no lock
    // and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io("fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; the fds are the pipes made just before the
        // fork, and the buffers live on this stack.
        unsafe {
            // Only our two pipe ends stay open, as fds 0 and 1 (the
            // daemon's stdio are ≤ 2, so the pipes are above): a child
            // holding what it inherited, another start's pipe ends among
            // them, would keep that start's helper from ever seeing its
            // end of file, and two such helpers would wait for each other
            // for good.
            let (ready, go) = (0, 1);
            if libc::dup2(ready_w.as_raw_fd(), ready) < 0
                || libc::dup2(go_r.as_raw_fd(), go) < 0
                || libc::syscall(libc::SYS_close_range, 2u32, u32::MAX, 0u32) != 0
            {
                libc::_exit(1);
            }
            // Raw system calls: libc's wrappers of the set*id calls signal
            // every thread of the process, which after a fork of a
            // threaded one is not a safe thing to do.
            let became = match owner_ids {
                None => true,
                Some(o) => {
                    libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
                        && libc::syscall(libc::SYS_setresgid, o, o, o) == 0
                        && libc::syscall(libc::SYS_setresuid, o, o, o) == 0
                }
            };
            let status: u8 = if !became {
                1
            } else if libc::syscall(libc::SYS_unshare, flags) != 0 {
                2
            } else {
                0
            };
            let errno = *libc::__errno_location() as u8;
            let msg = [status, if status == 0 { 0 } else { errno }];
            libc::write(ready, msg.as_ptr().cast(), 2);
            let mut b = 0u8;
            // Until the parent has opened the namespace (or died).
            libc::read(go, (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(go_r);
    let result = finish(pid, owner, map, &ready_r, net);
    // The child may exit now: the namespace lives on through our fd.
    drop(go_w);
    let mut status = 0;
    // SAFETY: waitpid on our own child, with a valid pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result
}

fn finish(
    pid: libc::pid_t,
    owner: Option<u32>,
    map: &str,
    ready: &OwnedFd,
    net: bool,
) -> std::io::Result<(OwnedFd, Option<OwnedFd>)> {
    use std::io::Read;
    let mut msg = [0u8; 2];
    let mut f = File::from(ready.try_clone().map_err(|e| io("dup", e))?);
    f.read_exact(&mut msg)
        .map_err(|e| io("reading the user namespace helper", e))?;
    let errno = || std::io::Error::from_raw_os_error(msg[1].into());
    match msg[0] {
        0 => {}
        1 => return Err(io(format!("becoming uid {}", owner.unwrap_or(0)), errno())),
        _ => {
            return Err(io(
                format!(
                    "unshare(CLONE_NEWUSER{}) as uid {}",
                    if net { "|CLONE_NEWNET" } else { "" },
                    owner.unwrap_or(0)
                ),
                errno(),
            ))
        }
    }
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
