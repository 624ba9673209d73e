//! The seccomp profile: an allowlist in the manner of Docker's default.
//! A call not listed answers ENOSYS (it looks unimplemented, so libc and
//! runtimes fall back to an older one; a call a newer kernel adds stays
//! out until it is listed here). What reaches outside the sandbox answers
//! EPERM, as the kernel would to a process without the privilege: kernel
//! modules and kexec, mounts, new namespaces, keyrings, the clock, BPF and
//! perf, tracing handles. `io_uring` (a large attack surface of its own,
//! and a way around seccomp for the calls it proxies) is allowed only to a
//! sprite that asks for it. runc has no built-in default, so this is what
//! every sandbox gets.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use crate::error::Result;

/// Denied with EPERM whatever the arguments.
pub const DENIED: &[&str] = &[
    // kernel code and the machine itself
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "iopl",
    "ioperm",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "nfsservctl",
    "uselib",
    "vm86",
    "vm86old",
    "_sysctl",
    // filesystems and mounts, old and new API
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    // namespaces (clone/unshare with namespace flags are filtered below)
    "setns",
    // BPF, perf, keyrings, handles that bypass path permissions
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    // the host clock
    "settimeofday",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
    "stime",
];

/// Allowed: the x86-64 and i386 system calls of Linux 6.x (the kernel
/// headers' tables), but for [`DENIED`], the namespace makers (`clone`
/// and `unshare` are allowed below without namespace flags, `clone3`
/// answers ENOSYS), [`IO_URING`] (allowed per sprite), `kcmp` (compares
/// other processes' kernel objects), `sysfs` and `ustat` (obsolete
/// filesystem probes) and the numbers the kernel leaves unimplemented.
pub const ALLOWED: &[&str] = &[
    "_llseek",
    "_newselect",
    "accept",
    "accept4",
    "access",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "chroot",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_init",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "get_mempolicy",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "mbind",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "migrate_pages",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "modify_ldt",
    "move_pages",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "nice",
    "oldfstat",
    "oldlstat",
    "oldolduname",
    "oldstat",
    "olduname",
    "open",
    "openat",
    "openat2",
    "pause",
    "personality",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_madvise",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "pselect6_time64",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readdir",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setdomainname",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "sethostname",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "sgetmask",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaction",
    "sigaltstack",
    "signal",
    "signalfd",
    "signalfd4",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "ssetmask",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vhangup",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed too: calls of kernels newer than the tables above. A libseccomp
/// that does not know one leaves it out (runc skips names it cannot
/// resolve), and it answers ENOSYS like any call not listed, which is
/// what makes libc fall back to an older call.
pub const ALLOWED_NEWER: &[&str] = &[
    "cachestat",
    "fchmodat2",
    "map_shadow_stack",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "statmount",
    "listmount",
    "lsm_get_self_attr",
    "lsm_set_self_attr",
    "lsm_list_modules",
    "mseal",
    "setxattrat",
    "getxattrat",
    "listxattrat",
    "removexattrat",
    "file_getattr",
    "file_setattr",
];

/// io_uring: allowed only where a sprite's privileges policy asks for it.
pub const IO_URING: &[&str] = &["io_uring_setup", "io_uring_enter", "io_uring_register"];

/// `CLONE_NEW*` flags: creating any namespace is denied.
pub const NAMESPACE_FLAGS: &[(u64, &str)] = &[
    (0x0000_0080, "CLONE_NEWTIME"),
    (0x0002_0000, "CLONE_NEWNS"),
    (0x0200_0000, "CLONE_NEWCGROUP"),
    (0x0400_0000, "CLONE_NEWUTS"),
    (0x0800_0000, "CLONE_NEWIPC"),
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The ABIs the filter covers: x86-64 and i386 (32-bit programs run in a
/// sprite where the kernel runs them), and x32 only where the kernel has
/// it. Each ABI costs runc ~8 ms of every start (libseccomp compiles the
/// whole list once per ABI in `runc init`), and on a kernel built without
/// x32 no x32 call can run, filtered or not (Debian's kernels have it but
/// turn it off unless booted with `syscall.x32=y`; this one is built
/// without).
fn architectures(x32: bool) -> Vec<Arch> {
    let mut v = vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86];
    if x32 {
        v.push(Arch::ScmpArchX32);
    }
    v
}

/// Whether the kernel runs x32 calls: x32's getpid (the x86-64 number with
/// the x32 bit) answers ENOSYS where it does not.
fn x32_supported() -> bool {
    static X32: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *X32.get_or_init(|| {
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        // SAFETY: getpid takes no arguments and touches no memory; with the
        // x32 bit set it is either x32's getpid or an unknown call (ENOSYS).
        let r = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
        r >= 0
    })
}

/// The profile every sandbox gets (io_uring denied).
pub fn default_profile() -> Result<LinuxSeccomp> {
    profile(false)
}

fn rule(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> Result<LinuxSyscall> {
    let mut b = LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(action);
    if let Some(e) = errno {
        b = b.errno_ret(e);
    }
    Ok(b.build()?)
}

/// The profile as an OCI `linux.seccomp` section; `io_uring` allows the
/// io_uring calls.
pub fn profile(io_uring: bool) -> Result<LinuxSeccomp> {
    let mut allowed: Vec<&str> = ALLOWED.iter().chain(ALLOWED_NEWER).copied().collect();
    if io_uring {
        allowed.extend(IO_URING);
    }
    let mut syscalls = vec![
        rule(&allowed, LinuxSeccompAction::ScmpActAllow, None)?,
        rule(DENIED, LinuxSeccompAction::ScmpActErrno, Some(EPERM))?,
    ];
    if !io_uring {
        syscalls.push(rule(
            IO_URING,
            LinuxSeccompAction::ScmpActErrno,
            Some(EPERM),
        )?);
    }

    // clone(flags, ...) and unshare(flags): allowed without a namespace
    // flag, EPERM with any. One EPERM rule per flag: runc ORs rules of the
    // same syscall, while conditions inside one rule are ANDed.
    let all_flags = NAMESPACE_FLAGS.iter().fold(0u64, |a, (f, _)| a | f);
    for syscall in ["clone", "unshare"] {
        let none = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(all_flags)
            .value_two(0u64)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec![syscall.to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(vec![none])
                .build()?,
        );
        for (flag, _) in NAMESPACE_FLAGS {
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(*flag)
                .value_two(*flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()?;
            syscalls.push(
                LinuxSyscallBuilder::default()
                    .names(vec![syscall.to_string()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(EPERM)
                    .args(vec![arg])
                    .build()?,
            );
        }
    }
    // clone3 passes its flags in memory seccomp cannot read: make it look
    // unimplemented so libc falls back to clone, which is filtered above.
    syscalls.push(rule(
        &["clone3"],
        LinuxSeccompAction::ScmpActErrno,
        Some(ENOSYS),
    )?);

    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(ENOSYS)
        .architectures(architectures(x32_supported()))
        .syscalls(syscalls)
        .build()?)
}

/// The filter of [`profile`] compiled to the kernel's BPF once per daemon
/// (for each `io_uring` choice), in a sealed memfd: a sandbox whose init
/// is the agent gets a copy of the descriptor and loads it itself
/// (`SPRITE_SECCOMP_FD`), so `runc init` no longer compiles the whole
/// allowlist with libseccomp at every start (~8 ms of CPU per ABI). The
/// same library compiles the same profile, translated as runc translates
/// it, so the filter is the one runc would have loaded.
pub fn compiled(io_uring: bool) -> Result<std::os::fd::BorrowedFd<'static>> {
    use std::os::fd::AsFd;
    static FILTERS: [std::sync::OnceLock<std::os::fd::OwnedFd>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    let slot = &FILTERS[usize::from(io_uring)];
    if let Some(fd) = slot.get() {
        return Ok(fd.as_fd());
    }
    let fd = compile(&profile(io_uring)?)?;
    // Two first starts at once may both compile: one copy is kept.
    let _ = slot.set(fd);
    Ok(slot
        .get()
        .ok_or_else(|| crate::error::RuntimeError::Seccomp("not kept".into()))?
        .as_fd())
}

/// `profile` as BPF in a sealed memfd, each rule as runc adds it: names
/// libseccomp does not know are left out, rules whose action is the
/// default one are left out (libseccomp refuses them), a masked-equal
/// condition's `value` is the mask and `valueTwo` the datum.
fn compile(profile: &LinuxSeccomp) -> Result<std::os::fd::OwnedFd> {
    use libseccomp::{
        ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    };
    use std::os::fd::FromRawFd;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        crate::error::RuntimeError::Seccomp(format!("{what}: {e}"))
    };
    let action = |a: LinuxSeccompAction, errno: Option<u32>| -> Result<ScmpAction> {
        match a {
            LinuxSeccompAction::ScmpActAllow => Ok(ScmpAction::Allow),
            LinuxSeccompAction::ScmpActErrno => {
                Ok(ScmpAction::Errno(errno.map_or(libc::EPERM, |e| e as i32)))
            }
            other => Err(fail("action", &format!("{other:?}"))),
        }
    };
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| fail("init", &e))?;
    for arch in profile.architectures().as_deref().unwrap_or_default() {
        let arch = match arch {
            Arch::ScmpArchX86_64 => ScmpArch::X8664,
            Arch::ScmpArchX86 => ScmpArch::X86,
            Arch::ScmpArchX32 => ScmpArch::X32,
            other => return Err(fail("architecture", &format!("{other:?}"))),
        };
        ctx.add_arch(arch).map_err(|e| fail("architecture", &e))?;
    }
    for rule in profile.syscalls().as_deref().unwrap_or_default() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let conditions: Vec<ScmpArgCompare> = rule
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|a| match a.op() {
                LinuxSeccompOperator::ScmpCmpMaskedEq => Ok(ScmpArgCompare::new(
                    a.index() as u32,
                    ScmpCompareOp::MaskedEqual(a.value()),
                    a.value_two().unwrap_or(0),
                )),
                other => Err(fail("condition", &format!("{other:?}"))),
            })
            .collect::<Result<_>>()?;
        for name in rule.names() {
            let Ok(call) = ScmpSyscall::from_name(name) else {
                continue;
            };
            ctx.add_rule_conditional(act, call, &conditions)
                .map_err(|e| fail(name, &e))?;
        }
    }
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the
    // descriptor it returns is ours alone.
    let raw = unsafe {
        libc::memfd_create(
            c"sprited-seccomp".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(fail("memfd_create", &std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    ctx.export_bpf(&fd).map_err(|e| fail("export", &e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a descriptor we own, with an int argument.
    if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, seals) } < 0 {
        return Err(fail("seal", &std::io::Error::last_os_error()));
    }
    let len = nix::sys::stat::fstat(raw)
        .map_err(|e| fail("stat", &e))?
        .st_size;
    if len <= 0 || len % 8 != 0 {
        return Err(fail("export", &format!("{len} bytes")));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(profile: &LinuxSeccomp, action: LinuxSeccompAction) -> Vec<String> {
        profile
            .syscalls()
            .as_ref()
            .expect("syscalls")
            .iter()
            .filter(|s| s.action() == action && s.args().as_ref().is_none_or(|a| a.is_empty()))
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn profile_allows_a_list_and_denies_what_it_should() {
        let profile = default_profile().expect("profile");
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(ENOSYS));
        let allowed = named(&profile, LinuxSeccompAction::ScmpActAllow);
        let denied = named(&profile, LinuxSeccompAction::ScmpActErrno);
        for name in [
            "read",
            "openat",
            "execve",
            "epoll_wait",
            "statx",
            "rseq",
            "socket",
        ] {
            assert!(allowed.iter().any(|a| a == name), "{name} not allowed");
        }
        for name in [
            "mount",
            "kexec_load",
            "bpf",
            "setns",
            "keyctl",
            "clock_settime",
            "clone3",
            "io_uring_setup",
        ] {
            assert!(denied.iter().any(|d| d == name), "{name} not denied");
            assert!(!allowed.iter().any(|a| a == name), "{name} allowed");
        }
        // Neither allowed nor denied by name: the default (ENOSYS).
        for name in ["kcmp", "sysfs", "clone", "unshare"] {
            assert!(!allowed.iter().any(|a| a == name), "{name} allowed by name");
        }
        // Nothing is both.
        assert!(allowed.iter().all(|a| !DENIED.contains(&a.as_str())));
        // clone and unshare: allowed only with no namespace flag.
        let clones: Vec<&LinuxSyscall> = profile
            .syscalls()
            .as_ref()
            .expect("syscalls")
            .iter()
            .filter(|s| s.names().iter().any(|n| n == "clone"))
            .collect();
        assert!(clones
            .iter()
            .all(|s| s.args().as_ref().is_some_and(|a| a.len() == 1)));
        assert_eq!(
            clones
                .iter()
                .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
                .count(),
            1
        );
        let json = serde_json::to_value(&profile).expect("json");
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["architectures"][0], "SCMP_ARCH_X86_64");
    }

    #[test]
    fn x32_is_covered_only_where_the_kernel_has_it() {
        assert_eq!(
            architectures(false),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86]
        );
        assert_eq!(
            architectures(true),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        // What this kernel says, asked another way: its build config where
        // it publishes one.
        let config = std::process::Command::new("sh")
            .args([
                "-c",
                "zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null",
            ])
            .output()
            .expect("sh");
        let config = String::from_utf8_lossy(&config.stdout);
        if config.contains("CONFIG_X86_X32_ABI") {
            let built = config.contains("CONFIG_X86_X32_ABI=y");
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            let on = built && cmdline.split_whitespace().any(|w| w == "syscall.x32=y");
            // Built in and on, or built in and off by default (Debian's)
            // without the boot flag; either way the probe agrees where
            // the build leaves no doubt.
            if !built {
                assert!(!x32_supported(), "no x32 in the kernel's build, yet it ran");
            } else if on {
                assert!(x32_supported());
            }
        }
        let profile = default_profile().expect("profile");
        assert_eq!(
            profile.architectures().as_deref().map(|a| a.len()),
            Some(if x32_supported() { 3 } else { 2 })
        );
    }

    #[test]
    fn io_uring_is_allowed_only_when_asked() {
        let on = profile(true).expect("profile");
        let allowed = named(&on, LinuxSeccompAction::ScmpActAllow);
        let denied = named(&on, LinuxSeccompAction::ScmpActErrno);
        for name in IO_URING {
            assert!(allowed.iter().any(|a| a == name), "{name}");
            assert!(!denied.iter().any(|d| d == name), "{name}");
        }
    }

    /// What a process under the compiled filter gets from the kernel, in
    /// a child of the test: a bit per expectation that held.
    fn under_compiled(io_uring: bool) -> i32 {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::from(
            compiled(io_uring)
                .expect("compiled")
                .try_clone_to_owned()
                .expect("dup"),
        );
        let mut program = vec![0u8; file.metadata().expect("stat").len() as usize];
        file.read_exact_at(&mut program, 0).expect("read");
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
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: the child only makes raw system calls on memory prepared
        // before the fork and ends with _exit; it allocates nothing.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let errno = || *libc::__errno_location();
                let mut ok = 0;
                // What io_uring_setup answers without the filter (the
                // host may have io_uring off: then EPERM either way).
                libc::syscall(libc::SYS_io_uring_setup, 0, 0);
                let unfiltered = errno();
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog)
                        != 0
                {
                    libc::_exit(0);
                }
                if libc::syscall(libc::SYS_getpid) > 0 {
                    ok |= 1;
                }
                let r = libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0);
                if r == -1 && errno() == libc::EPERM {
                    ok |= 2;
                }
                let r = libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER);
                if r == -1 && errno() == libc::EPERM {
                    ok |= 4;
                }
                let r = libc::syscall(libc::SYS_clone3, 0, 0);
                if r == -1 && errno() == libc::ENOSYS {
                    ok |= 8;
                }
                let r = libc::syscall(libc::SYS_io_uring_setup, 0, 0);
                let e = errno();
                if r == -1 && e == if io_uring { unfiltered } else { libc::EPERM } {
                    ok |= 16;
                }
                // Not listed at all: looks unimplemented.
                let r = libc::syscall(libc::SYS_kcmp, 0, 0, 0, 0, 0);
                if r == -1 && errno() == libc::ENOSYS {
                    ok |= 32;
                }
                // unshare without a namespace flag is let through.
                if libc::syscall(libc::SYS_unshare, libc::CLONE_FILES) == 0 {
                    ok |= 64;
                }
                libc::_exit(ok);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status));
            libc::WEXITSTATUS(status)
        }
    }

    #[test]
    fn the_compiled_filter_is_the_profile() {
        assert_eq!(under_compiled(false), 127, "bits that held");
        assert_eq!(under_compiled(true), 127, "bits that held (io_uring)");
        // Compiled once per choice.
        use std::os::fd::AsRawFd;
        assert_eq!(
            compiled(false).expect("again").as_raw_fd(),
            compiled(false).expect("again").as_raw_fd()
        );
        assert_ne!(
            compiled(false).expect("off").as_raw_fd(),
            compiled(true).expect("on").as_raw_fd()
        );
    }
}
