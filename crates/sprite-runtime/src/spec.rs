//! The OCI runtime config (`config.json`) of a sandbox, built with the
//! `oci-spec` builders: namespaces, id mapping, mounts, a minimal capability
//! set (or the sandbox's own), no_new_privs, rlimits, seccomp, cgroup limits,
//! and the devices the sandbox was given.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::error::{Result, RuntimeError};
use crate::sandbox::{
    validate_id, Bind, Device, SandboxSpec, AGENT_FD, AGENT_PATH_IN_SPRITE, CAPS_ENV, SECCOMP_FD,
    SECCOMP_FD_ENV, SPRITE_ENV_PATH_IN_SPRITE,
};
use crate::seccomp;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CPU_PERIOD_US: u64 = 100_000;
/// The open-files limit sandboxes get where the host allows it.
pub const NOFILE: u64 = 1_048_576;
/// The `tty` group, owner of pseudo-terminals.
const TTY_GID: u32 = 5;

/// The capabilities init gets (bounding, effective, permitted): Docker's
/// default set minus MKNOD and NET_RAW.
pub const CAPABILITIES: [Capability; 12] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::AuditWrite,
    Capability::Setfcap,
];

/// Paths hidden from the sandbox (runc's and Docker's defaults).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the sandbox sees read-only. `/sys/fs/cgroup`: on a cgroup v1
/// host runc mounts a tmpfs there (with no size, writable by root inside)
/// under the read-only controllers; filled, its pages (charged to the
/// sprite, never reclaimable) would leave the OOM killer nothing to free
/// but the agent.
pub const READONLY_PATHS: [&str; 6] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/sys/fs/cgroup",
];

/// Size of the sandbox's `/dev` tmpfs: device nodes and links only.
pub const DEV_TMPFS_BYTES: u64 = 4 << 20;
/// Size of `/dev/shm` without a memory limit; with one, half of it (so
/// that a full `/dev/shm` leaves the agent room), at least 1 MiB.
pub const SHM_DEFAULT_BYTES: u64 = 64 << 20;

/// How big the sandbox's `/dev/shm` may grow.
pub fn shm_bytes(memory_bytes: u64) -> u64 {
    if memory_bytes == 0 {
        SHM_DEFAULT_BYTES
    } else {
        (memory_bytes / 2).max(1 << 20)
    }
}

/// Host policy that is not part of a sandbox's spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecOptions {
    /// `linux.cgroupsPath`, as the cgroup backend wants it.
    pub cgroups_path: PathBuf,
    /// RLIMIT_NOFILE (soft and hard) of init; see [`grantable_nofile`].
    pub nofile: u64,
    /// A user namespace made for the sandbox (see [`crate::userns`]) for
    /// runc to join instead of making one. Its id map is already written;
    /// init's rlimits are then inherited from runc (which sets them before
    /// it starts), not set by runc on init from outside, which would take
    /// CAP_SYS_RESOURCE over a namespace host root no longer owns.
    pub user_ns: Option<PathBuf>,
    /// Init loads the compiled seccomp filter itself from
    /// [`SECCOMP_FD`](crate::sandbox::SECCOMP_FD) (the agent does, see
    /// [`SandboxSpec::init_loads_seccomp`](crate::sandbox::SandboxSpec)):
    /// the config has no `linux.seccomp` for runc to compile, init's
    /// environment says where the filter is and which capabilities to keep,
    /// and where no_new_privs is off init starts with `CAP_SYS_ADMIN` (which
    /// loading a filter then takes) and `CAP_SETPCAP` (to drop it from the
    /// bounding set), both dropped before it does anything else.
    pub init_loads_seccomp: bool,
    /// A network namespace made for the sandbox (owned by its user
    /// namespace) for runc to join instead of making one.
    pub net_ns: Option<PathBuf>,
}

/// [`NOFILE`], or less where the daemon cannot raise a hard limit that high
/// (no CAP_SYS_RESOURCE, as in some nested sandboxes): runc would fail.
pub fn grantable_nofile() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(0);
    if hard >= NOFILE || has_cap_sys_resource() {
        NOFILE
    } else {
        tracing::warn!(
            hard,
            "no CAP_SYS_RESOURCE: sandboxes get RLIMIT_NOFILE {hard}"
        );
        hard
    }
}

/// [`grantable_nofile`], made this process's own limit (soft and hard), so
/// that what it spawns inherits it: init, in a user namespace of the
/// sandbox's own, gets runc's (see [`SpecOptions::user_ns`]). Where that
/// cannot be set, what this process has (which its children get).
pub fn granted_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let n = grantable_nofile();
    match setrlimit(Resource::RLIMIT_NOFILE, n, n) {
        Ok(()) => n,
        Err(e) => {
            let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
            tracing::warn!(error = %e, soft, "cannot set RLIMIT_NOFILE {n}: sandboxes get {soft}");
            soft
        }
    }
}

fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    has_effective_cap(CAP_SYS_RESOURCE)
}

/// Whether this process has capability number `cap` in effect.
pub(crate) fn has_effective_cap(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

/// Builds the OCI config for `sandbox`.
pub fn build(sandbox: &SandboxSpec, opts: &SpecOptions) -> Result<Spec> {
    check(sandbox)?;
    let mut caps: oci_spec::runtime::Capabilities = sandbox.capabilities.iter().copied().collect();
    let wanted = caps.clone();
    if opts.init_loads_seccomp && !sandbox.no_new_privileges {
        caps.insert(Capability::SysAdmin);
        caps.insert(Capability::Setpcap);
    }
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()?;
    let mut env = sandbox.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env.retain(|e| !e.starts_with("SPRITE_AGENT_FD="));
    env.push(format!("SPRITE_AGENT_FD={AGENT_FD}"));
    env.retain(|e| {
        let name = e.split('=').next().unwrap_or_default();
        name != SECCOMP_FD_ENV && name != CAPS_ENV
    });
    if opts.init_loads_seccomp {
        env.push(format!("{SECCOMP_FD_ENV}={SECCOMP_FD}"));
        env.push(format!("{CAPS_ENV}={}", capability_names(&wanted)));
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .args(sandbox.init_args.clone())
        .env(env)
        .cwd("/")
        .capabilities(capabilities)
        .rlimits(if opts.user_ns.is_some() {
            Vec::new()
        } else {
            vec![PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(opts.nofile)
                .soft(opts.nofile)
                .build()?]
        })
        .no_new_privileges(sandbox.no_new_privileges)
        .build()?;

    let mut namespaces = Vec::new();
    for typ in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ] {
        let mut ns = LinuxNamespaceBuilder::default().typ(typ);
        if let (LinuxNamespaceType::Network, Some(path)) = (typ, &opts.net_ns) {
            ns = ns.path(path.clone());
        }
        namespaces.push(ns.build()?);
    }
    let mut linux = LinuxBuilder::default();
    if let Some(map) = sandbox.id_map {
        let mut user = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User);
        if let Some(path) = &opts.user_ns {
            user = user.path(path.clone());
        }
        namespaces.push(user.build()?);
        let mapping = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(map.host_base)
            .size(map.size)
            .build()?;
        linux = linux
            .uid_mappings(vec![mapping])
            .gid_mappings(vec![mapping]);
    }
    let linux = linux
        .namespaces(namespaces)
        .cgroups_path(opts.cgroups_path.clone())
        .resources(resources(sandbox)?)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        );
    let linux = if opts.init_loads_seccomp {
        linux
    } else {
        linux.seccomp(seccomp::profile(sandbox.io_uring)?)
    }
    .build()?;

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(sandbox.rootfs.clone())
                .readonly(false)
                .build()?,
        )
        .hostname(sandbox.hostname.clone())
        .process(process)
        .mounts(mounts(sandbox)?)
        .linux(linux)
        .build()?)
}

/// `CAP_CHOWN,CAP_KILL,...`, sorted: the capabilities init keeps.
fn capability_names(caps: &oci_spec::runtime::Capabilities) -> String {
    let mut names: Vec<String> = caps.iter().map(|c| format!("CAP_{c}")).collect();
    names.sort();
    names.join(",")
}

fn check(sandbox: &SandboxSpec) -> Result<()> {
    validate_id(&sandbox.id)?;
    let invalid = |m: String| Err(RuntimeError::InvalidSpec(m));
    if sandbox.init_args.is_empty() {
        return invalid("init_args is empty".into());
    }
    for (what, path) in [
        ("rootfs", &sandbox.rootfs),
        ("agent_bin", &sandbox.agent_bin),
        ("bundle_dir", &sandbox.bundle_dir),
        ("log_path", &sandbox.log_path),
    ] {
        if !path.is_absolute() {
            return invalid(format!("{what} {} is not absolute", path.display()));
        }
    }
    for b in &sandbox.binds {
        let dest_ok = b.destination.starts_with('/')
            && !b.destination.split('/').any(|c| c == ".." || c == ".");
        if !b.source.is_absolute() || !dest_ok {
            return invalid(format!(
                "bind {} -> {} needs absolute paths without . or ..",
                b.source.display(),
                b.destination
            ));
        }
    }
    for d in &sandbox.devices {
        let path_ok = d.path.starts_with("/dev/")
            && !d.path.split('/').any(|c| c == ".." || c == ".")
            && !d.path.ends_with('/');
        if !path_ok {
            return invalid(format!("device path {:?} is not under /dev", d.path));
        }
    }
    if !sandbox.agent_bin.is_file() {
        return invalid(format!(
            "agent_bin {} is not a file",
            sandbox.agent_bin.display()
        ));
    }
    let valid_hostname = !sandbox.hostname.is_empty()
        && sandbox.hostname.len() <= 64
        && sandbox
            .hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid_hostname {
        return invalid(format!("hostname {:?}", sandbox.hostname));
    }
    if let Some(map) = sandbox.id_map {
        if map.size == 0 || map.host_base.checked_add(map.size).is_none() {
            return invalid(format!("id map {map:?}"));
        }
    }
    let cpus = sandbox.limits.cpus;
    if !cpus.is_finite() || !(0.0..=1024.0).contains(&cpus) {
        return invalid(format!("cpus {cpus}"));
    }
    Ok(())
}

fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn mounts(sandbox: &SandboxSpec) -> Result<Vec<Mount>> {
    // gid=5 on devpts only works if gid 5 exists in the sandbox.
    let tty_gid_mapped = sandbox.id_map.is_none_or(|m| m.size > TTY_GID);
    let mut devpts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if tty_gid_mapped {
        devpts.push("gid=5");
    }
    // Every tmpfs has a size: its pages are charged to the sprite and
    // cannot be reclaimed, so together they stay well under its memory.
    let dev_size = format!("size={}k", DEV_TMPFS_BYTES >> 10);
    let shm_size = format!("size={}k", shm_bytes(sandbox.limits.memory_bytes) >> 10);
    Ok(vec![
        mount(
            "/proc",
            "proc",
            Path::new("proc"),
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", &dev_size],
        )?,
        mount("/dev/pts", "devpts", Path::new("devpts"), &devpts)?,
        mount(
            "/dev/shm",
            "tmpfs",
            Path::new("shm"),
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        )?,
        // A fresh sysfs (it shows the sandbox's own network devices) works in
        // a user namespace because that namespace owns the new network
        // namespace; read-only either way.
        mount(
            "/sys",
            "sysfs",
            Path::new("sysfs"),
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
        mount(
            AGENT_PATH_IN_SPRITE,
            "bind",
            &sandbox.agent_bin,
            &["bind", "ro", "nosuid", "nodev"],
        )?,
        mount(
            SPRITE_ENV_PATH_IN_SPRITE,
            "bind",
            &sandbox.agent_bin,
            &["bind", "ro", "nosuid", "nodev"],
        )?,
    ]
    .into_iter()
    .chain(
        sandbox
            .binds
            .iter()
            .map(bind_mount)
            .collect::<Result<Vec<_>>>()?,
    )
    .chain(
        sandbox
            .devices
            .iter()
            .map(|d| device_mount(sandbox, d))
            .collect::<Result<Vec<_>>>()?,
    )
    .collect())
}

/// The sandbox's node of `d` (see `crate::devices`), bound without `nodev`.
fn device_mount(sandbox: &SandboxSpec, d: &Device) -> Result<Mount> {
    let node = crate::devices::node_path(&sandbox.bundle_dir, d);
    mount(&d.path, "bind", &node, &["bind", "nosuid", "noexec"])
}

fn bind_mount(b: &Bind) -> Result<Mount> {
    let mut options = vec![if b.follow_host_mounts {
        "rbind"
    } else {
        "bind"
    }];
    if b.read_only {
        options.push("ro");
    }
    options.extend(["nosuid", "nodev", "noexec"]);
    if b.follow_host_mounts {
        options.push("rslave");
    }
    mount(&b.destination, "bind", &b.source, &options)
}

fn resources(sandbox: &SandboxSpec) -> Result<oci_spec::runtime::LinuxResources> {
    let limits = sandbox.limits;
    let char_dev = |major: i64, minor: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(major)
            .access("rwm");
        if let Some(minor) = minor {
            b = b.minor(minor);
        }
        b.build()
    };
    let mut devices = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?,
        char_dev(1, Some(3))?, // null
        char_dev(1, Some(5))?, // zero
        char_dev(1, Some(7))?, // full
        char_dev(1, Some(8))?, // random
        char_dev(1, Some(9))?, // urandom
        char_dev(5, Some(0))?, // tty
        char_dev(5, Some(2))?, // ptmx
        char_dev(136, None)?,  // pts/*
    ];
    for d in &sandbox.devices {
        let number = |n: u64| {
            i64::try_from(n)
                .map_err(|_| RuntimeError::InvalidSpec(format!("device number {n} of {}", d.path)))
        };
        devices.push(char_dev(number(d.major)?, Some(number(d.minor)?))?);
    }
    let mut resources = LinuxResourcesBuilder::default().devices(devices);
    if limits.cpus > 0.0 {
        // Rounded to whole microseconds; at least 1 ms per period (kernel minimum).
        let quota = ((limits.cpus * CPU_PERIOD_US as f64).round() as i64).max(1000);
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_US)
                .build()?,
        );
    }
    if limits.memory_bytes > 0 {
        let bytes = i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX);
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .swap(bytes)
                .build()?,
        );
    }
    if limits.pids > 0 {
        let pids = i64::try_from(limits.pids).unwrap_or(i64::MAX);
        resources = resources.pids(LinuxPidsBuilder::default().limit(pids).build()?);
    }
    Ok(resources.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{IdMap, Limits};

    fn sandbox() -> SandboxSpec {
        let mut s = SandboxSpec::new("t1", "/r", "/b", "/l", "/bin/sh");
        s.limits = Limits {
            cpus: 0.5,
            memory_bytes: 256 << 20,
            pids: 100,
        };
        s.env = vec!["FOO=bar".into()];
        s
    }

    fn opts() -> SpecOptions {
        SpecOptions {
            cgroups_path: PathBuf::from("sprited/t1"),
            nofile: NOFILE,
            user_ns: None,
            init_loads_seccomp: false,
            net_ns: None,
        }
    }

    #[test]
    fn a_user_namespace_made_beforehand_is_joined_and_rlimits_inherited() {
        let mut o = opts();
        o.user_ns = Some(PathBuf::from("/proc/1/fd/7"));
        let json = serde_json::to_value(build(&sandbox(), &o).expect("spec")).expect("json");
        let user = json["linux"]["namespaces"]
            .as_array()
            .expect("ns")
            .iter()
            .find(|n| n["type"] == "user")
            .cloned()
            .expect("a user namespace");
        assert_eq!(user["path"], "/proc/1/fd/7");
        // A network namespace made with it is joined too; none is made.
        o.net_ns = Some(PathBuf::from("/proc/1/fd/8"));
        let with_net = serde_json::to_value(build(&sandbox(), &o).expect("spec")).expect("json");
        let network = |json: &serde_json::Value| {
            json["linux"]["namespaces"]
                .as_array()
                .expect("ns")
                .iter()
                .find(|n| n["type"] == "network")
                .cloned()
                .expect("a network namespace")
        };
        assert_eq!(network(&with_net)["path"], "/proc/1/fd/8");
        let net = network(&json);
        assert!(net["path"].is_null(), "runc makes it: {net}");
        // The map stays in the spec: runc reads the sandbox's root from it.
        assert_eq!(json["linux"]["uidMappings"][0]["hostID"], 100_000);
        assert!(json["process"]["rlimits"]
            .as_array()
            .is_none_or(|r| r.is_empty()));
        let json = serde_json::to_value(build(&sandbox(), &opts()).expect("spec")).expect("json");
        assert_eq!(json["process"]["rlimits"][0]["hard"], NOFILE);
    }

    #[test]
    fn an_init_that_loads_the_filter_gets_it_and_what_loading_takes() {
        let mut o = opts();
        o.init_loads_seccomp = true;
        let env_of = |json: &serde_json::Value| -> Vec<String> {
            serde_json::from_value(json["process"]["env"].clone()).expect("env")
        };
        let bounding_of = |json: &serde_json::Value| -> Vec<String> {
            serde_json::from_value(json["process"]["capabilities"]["bounding"].clone())
                .expect("caps")
        };
        let kept = "CAP_AUDIT_WRITE,CAP_CHOWN,CAP_DAC_OVERRIDE,CAP_FOWNER,CAP_FSETID,CAP_KILL,\
                    CAP_NET_BIND_SERVICE,CAP_SETFCAP,CAP_SETGID,CAP_SETPCAP,CAP_SETUID,CAP_SYS_CHROOT";
        // no_new_privs on: loading takes nothing more.
        let json = serde_json::to_value(build(&sandbox(), &o).expect("spec")).expect("json");
        assert!(json["linux"]["seccomp"].is_null(), "runc would compile it");
        let env = env_of(&json);
        assert!(env.contains(&"SPRITE_SECCOMP_FD=4".to_string()), "{env:?}");
        assert!(env.contains(&format!("SPRITE_CAPS={kept}")), "{env:?}");
        assert_eq!(bounding_of(&json).len(), 12);
        // Off: CAP_SYS_ADMIN to load it, CAP_SETPCAP to drop it after,
        // neither kept when the sandbox was not given them.
        let mut s = sandbox();
        s.no_new_privileges = false;
        s.capabilities.retain(|c| *c != Capability::Setpcap);
        let json = serde_json::to_value(build(&s, &o).expect("spec")).expect("json");
        let bounding = bounding_of(&json);
        assert!(bounding.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(bounding.contains(&"CAP_SETPCAP".to_string()));
        let env = env_of(&json);
        let caps = env
            .iter()
            .find_map(|e| e.strip_prefix("SPRITE_CAPS="))
            .expect("SPRITE_CAPS");
        assert!(
            !caps.contains("CAP_SYS_ADMIN") && !caps.contains("CAP_SETPCAP"),
            "{caps}"
        );
        assert_eq!(caps.split(',').count(), 11);
        // A variable of the sandbox's own by those names is replaced.
        s.env.push("SPRITE_SECCOMP_FD=9".into());
        let json = serde_json::to_value(build(&s, &o).expect("spec")).expect("json");
        let env = env_of(&json);
        assert_eq!(
            env.iter()
                .filter(|e| e.starts_with("SPRITE_SECCOMP_FD="))
                .collect::<Vec<_>>(),
            ["SPRITE_SECCOMP_FD=4"]
        );
        // Not asked: runc's filter as before, no variables.
        let json = serde_json::to_value(build(&s, &opts()).expect("spec")).expect("json");
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(!env_of(&json)
            .iter()
            .any(|e| e.starts_with("SPRITE_SECCOMP_FD=")));
        assert!(!bounding_of(&json).contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn no_new_privileges_comes_from_the_sandbox_spec() {
        let mut s = sandbox();
        s.no_new_privileges = false;
        let json = serde_json::to_value(build(&s, &opts()).expect("spec")).expect("json");
        assert_eq!(json["process"]["noNewPrivileges"], false);
    }

    #[test]
    fn config_has_the_isolation_we_promise() {
        let spec = build(&sandbox(), &opts()).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(json["root"]["path"], "/r");
        assert_eq!(json["root"]["readonly"], false);
        assert_eq!(json["hostname"], "t1");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["process"]["args"][0], AGENT_PATH_IN_SPRITE);
        let env: Vec<String> = serde_json::from_value(json["process"]["env"].clone()).expect("env");
        assert!(env.contains(&"SPRITE_AGENT_FD=3".to_string()));
        assert!(env.contains(&"FOO=bar".to_string()));
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        let bounding = json["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("caps");
        assert_eq!(bounding.len(), 12);
        for forbidden in [
            "CAP_SYS_ADMIN",
            "CAP_NET_RAW",
            "CAP_NET_ADMIN",
            "CAP_MKNOD",
            "CAP_SYS_PTRACE",
            "CAP_SYS_MODULE",
        ] {
            assert!(!bounding.iter().any(|c| c == forbidden), "{forbidden}");
        }
        assert!(json["process"]["capabilities"]["ambient"]
            .as_array()
            .expect("ambient")
            .is_empty());
        let ns: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .expect("ns")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        for want in ["pid", "network", "ipc", "uts", "mount", "cgroup", "user"] {
            assert!(ns.contains(&want), "{want} namespace missing");
        }
        assert_eq!(json["linux"]["uidMappings"][0]["hostID"], 100_000);
        assert_eq!(json["linux"]["uidMappings"][0]["size"], 65_536);
        assert_eq!(json["linux"]["cgroupsPath"], "sprited/t1");
        let res = &json["linux"]["resources"];
        assert_eq!(res["cpu"]["quota"], 50_000);
        assert_eq!(res["cpu"]["period"], 100_000);
        assert_eq!(res["memory"]["limit"], 256 << 20);
        assert_eq!(res["memory"]["swap"], 256 << 20);
        assert_eq!(res["pids"]["limit"], 100);
        assert_eq!(res["devices"][0]["allow"], false);
        let devpts = json["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["destination"] == "/dev/pts")
            .expect("devpts");
        assert!(devpts["options"]
            .as_array()
            .expect("opts")
            .iter()
            .any(|o| o == "gid=5"));
        let agent = json["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["destination"] == AGENT_PATH_IN_SPRITE)
            .expect("agent mount");
        assert_eq!(agent["source"], "/bin/sh");
        assert!(agent["options"]
            .as_array()
            .expect("opts")
            .iter()
            .any(|o| o == "ro"));
        assert_eq!(json["process"]["rlimits"][0]["hard"], NOFILE);
        // An allowlist: what it does not name answers ENOSYS.
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["linux"]["seccomp"]["defaultErrnoRet"], 38);
    }

    #[test]
    fn binds_are_noexec_and_follow_host_mounts_when_asked() {
        let mut s = sandbox();
        s.binds = vec![
            Bind {
                source: "/var/x/checkpoints".into(),
                destination: "/.sprite/checkpoints".into(),
                read_only: true,
                follow_host_mounts: true,
            },
            Bind {
                source: "/var/x/run".into(),
                destination: "/.sprite/run".into(),
                read_only: true,
                follow_host_mounts: false,
            },
        ];
        let json = serde_json::to_value(build(&s, &opts()).expect("spec")).expect("json");
        let opts_of = |dest: &str| -> Vec<String> {
            json["mounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .find(|m| m["destination"] == dest)
                .and_then(|m| m["options"].as_array())
                .expect(dest)
                .iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect()
        };
        let ck = opts_of("/.sprite/checkpoints");
        for o in ["rbind", "ro", "rslave", "noexec", "nosuid", "nodev"] {
            assert!(ck.iter().any(|x| x == o), "{o} missing from {ck:?}");
        }
        let run = opts_of("/.sprite/run");
        assert!(run.iter().any(|x| x == "bind") && !run.iter().any(|x| x == "rslave"));
        assert!(!opts_of(SPRITE_ENV_PATH_IN_SPRITE).is_empty());
        s.binds[1].destination = "/.sprite/../etc".into();
        assert!(build(&s, &opts()).is_err());
    }

    #[test]
    fn capabilities_and_devices_come_from_the_sandbox_spec() {
        let mut s = sandbox();
        s.capabilities.retain(|c| *c != Capability::Chown);
        s.capabilities.push(Capability::NetRaw);
        s.devices = vec![Device {
            path: "/dev/net/tun".into(),
            major: 10,
            minor: 200,
            mode: 0o666,
        }];
        let json = serde_json::to_value(build(&s, &opts()).expect("spec")).expect("json");
        let caps = &json["process"]["capabilities"];
        for set in ["bounding", "effective", "permitted"] {
            let set = caps[set].as_array().expect("caps");
            assert!(set.iter().any(|c| c == "CAP_NET_RAW"));
            assert!(!set.iter().any(|c| c == "CAP_CHOWN"));
        }
        let tun = json["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["destination"] == "/dev/net/tun")
            .expect("the device is bound");
        assert_eq!(tun["source"], "/b/devices/dev_net_tun");
        let opts_of: Vec<&str> = tun["options"]
            .as_array()
            .expect("opts")
            .iter()
            .filter_map(|o| o.as_str())
            .collect();
        assert!(!opts_of.contains(&"nodev"), "{opts_of:?}");
        let allowed = json["linux"]["resources"]["devices"]
            .as_array()
            .expect("device rules")
            .iter()
            .any(|r| r["allow"] == true && r["major"] == 10 && r["minor"] == 200);
        assert!(allowed, "no cgroup rule for the device");
        s.devices[0].path = "/dev/../etc/shadow".into();
        assert!(build(&s, &opts()).is_err());
        s.devices[0].path = "/etc/tun".into();
        assert!(build(&s, &opts()).is_err());
    }

    #[test]
    fn tiny_id_map_drops_tty_gid_and_no_userns_without_map() {
        let mut s = sandbox();
        s.id_map = Some(IdMap {
            host_base: 200_000,
            size: 1,
        });
        let json = serde_json::to_value(build(&s, &opts()).expect("spec")).expect("json");
        let devpts = json["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["destination"] == "/dev/pts")
            .cloned()
            .expect("devpts");
        assert!(!devpts["options"]
            .as_array()
            .expect("opts")
            .iter()
            .any(|o| o == "gid=5"));

        s.id_map = None;
        let json = serde_json::to_value(build(&s, &opts()).expect("spec")).expect("json");
        assert!(json["linux"].get("uidMappings").is_none());
        assert!(!json["linux"]["namespaces"]
            .as_array()
            .expect("ns")
            .iter()
            .any(|n| n["type"] == "user"));
    }

    #[test]
    fn rejects_bad_specs() {
        let mut s = sandbox();
        s.init_args.clear();
        assert!(build(&s, &opts()).is_err());
        let mut s = sandbox();
        s.rootfs = PathBuf::from("relative");
        assert!(build(&s, &opts()).is_err());
        let mut s = sandbox();
        s.id = "../x".into();
        assert!(matches!(
            build(&s, &opts()),
            Err(RuntimeError::InvalidId(_))
        ));
        let mut s = sandbox();
        s.limits.cpus = f64::NAN;
        assert!(build(&s, &opts()).is_err());
        let mut s = sandbox();
        s.hostname = "a b".into();
        assert!(build(&s, &opts()).is_err());
    }
}
