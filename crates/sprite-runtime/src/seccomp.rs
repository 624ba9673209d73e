//! The default seccomp profile: a denylist in the spirit of Docker's default
//! (which is an allowlist whose exceptions these are). Everything is allowed
//! except what reaches outside the sandbox: kernel modules and kexec, mounts,
//! new namespaces, keyrings, the clock, BPF and perf, tracing handles.
//! runc has no built-in default, so this is what every sandbox gets.

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

/// The profile as an OCI `linux.seccomp` section.
pub fn default_profile() -> Result<LinuxSeccomp> {
    let mut syscalls: Vec<LinuxSyscall> = vec![LinuxSyscallBuilder::default()
        .names(DENIED.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(EPERM)
        .build()?];

    // clone(flags, ...) and unshare(flags): EPERM when any namespace flag is
    // set. One rule per flag: runc ORs rules of the same syscall, while
    // conditions inside one rule are ANDed.
    for syscall in ["clone", "unshare"] {
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
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(ENOSYS)
            .build()?,
    );

    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(syscalls)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_denies_what_it_should() {
        let profile = default_profile().expect("profile");
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
        let syscalls = profile.syscalls().as_ref().expect("syscalls");
        let denied: Vec<&String> = syscalls.iter().flat_map(|s| s.names()).collect();
        for name in [
            "mount",
            "kexec_load",
            "bpf",
            "setns",
            "keyctl",
            "clock_settime",
            "clone3",
        ] {
            assert!(denied.iter().any(|d| *d == name), "{name} not denied");
        }
        // Plain clone (fork, threads) stays allowed: only filtered rules.
        assert!(syscalls
            .iter()
            .filter(|s| s.names().iter().any(|n| n == "clone"))
            .all(|s| s.args().as_ref().is_some_and(|a| !a.is_empty())));
        let json = serde_json::to_value(&profile).expect("json");
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(json["architectures"][0], "SCMP_ARCH_X86_64");
    }
}
