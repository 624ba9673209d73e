//! Starting a container sandbox without runc: the OCI spec the driver
//! writes for runc, turned into a [`sprite_start::Plan`] that the
//! sandbox's own `sprite-agent` binary carries out on the host (see the
//! `sprite-start` crate). The spec stays the one description of what a
//! sandbox is: the plan is made from it, field by field, and a spec with
//! something the plan cannot say is left to runc (`Ok(None)`, with the
//! reason logged once).
//!
//! What it covers is what the daemon's sandboxes use on a cgroup v1 (or
//! hybrid) host: a user namespace made beforehand, the network namespace
//! joined or new, the init loading its own seccomp filter, the mounts,
//! masked and read-only paths, capabilities, rlimits, cgroup limits and
//! the device list.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, PosixRlimitType, Spec};
use sprite_start::{Caps, CgroupDir, CgroupFs, Mount, MountKind, Plan, Rlimit};

use crate::cgroup::Hierarchy;

/// Host device nodes every sandbox gets, bound (a user namespace cannot
/// make device nodes): what runc adds to every container.
const DEFAULT_DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// The links runc makes in every container's `/dev`.
const DEV_LINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

/// Why a spec is left to runc.
pub(crate) type Unsupported = String;

/// The plan of sandbox `id` from its `spec`, its cgroups placed at
/// `cgroups_path` under the daemon's own in each of `hierarchies`; its
/// exec fifo and state go to `state_dir`, init's pid to `pid_file`.
pub(crate) fn plan(
    id: &str,
    spec: &Spec,
    hierarchies: &[Hierarchy],
    cgroups_path: &Path,
    state_dir: PathBuf,
    pid_file: PathBuf,
) -> std::result::Result<Plan, Unsupported> {
    let process = spec.process().as_ref().ok_or("no process")?;
    let linux = spec.linux().as_ref().ok_or("no linux section")?;
    let root = spec.root().as_ref().ok_or("no root")?;
    if root.readonly().unwrap_or(false) {
        return Err("a read-only root".into());
    }
    if linux.seccomp().is_some() {
        return Err("a seccomp filter for the runtime to load".into());
    }
    let user = process.user();
    if user.uid() != 0
        || user.gid() != 0
        || user
            .additional_gids()
            .as_ref()
            .is_some_and(|g| !g.is_empty())
    {
        return Err("a process user other than root".into());
    }
    if process.terminal().unwrap_or(false) {
        return Err("a terminal".into());
    }
    let mut user_ns = None;
    let mut net_ns = None;
    for ns in linux.namespaces().as_deref().unwrap_or_default() {
        match (ns.typ(), ns.path()) {
            (LinuxNamespaceType::User, Some(p)) => user_ns = Some(p.clone()),
            (LinuxNamespaceType::Network, Some(p)) => net_ns = Some(p.clone()),
            (
                LinuxNamespaceType::Pid
                | LinuxNamespaceType::Network
                | LinuxNamespaceType::Ipc
                | LinuxNamespaceType::Uts
                | LinuxNamespaceType::Mount
                | LinuxNamespaceType::Cgroup,
                None,
            ) => {}
            (typ, _) => return Err(format!("namespace {typ:?} as asked")),
        }
    }
    let user_ns = user_ns.ok_or("no user namespace made beforehand")?;

    let cgroups = cgroups(linux, hierarchies, cgroups_path)?;
    let mut mounts = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        mounts.push(mount(m, hierarchies)?);
    }
    let caps = match process.capabilities() {
        Some(c) => Caps {
            bounding: mask(c.bounding())?,
            effective: mask(c.effective())?,
            permitted: mask(c.permitted())?,
            inheritable: mask(c.inheritable())?,
            ambient: mask(c.ambient())?,
        },
        None => Caps::default(),
    };
    let mut rlimits = Vec::new();
    for r in process.rlimits().as_deref().unwrap_or_default() {
        let resource = match r.typ() {
            PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
            PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
            PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
            PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
            typ => return Err(format!("rlimit {typ:?}")),
        };
        rlimits.push(Rlimit {
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    let args = process.args().clone().unwrap_or_default();
    if !args.first().is_some_and(|a| a.starts_with('/')) {
        return Err("a program not named by an absolute path".into());
    }
    Ok(Plan {
        id: id.to_string(),
        rootfs: root.path().clone(),
        hostname: spec.hostname().clone().unwrap_or_default(),
        user_ns,
        net_ns,
        cgroups,
        mounts,
        devices: DEFAULT_DEVICES.iter().map(PathBuf::from).collect(),
        symlinks: DEV_LINKS
            .iter()
            .map(|(t, l)| (PathBuf::from(t), PathBuf::from(l)))
            .collect(),
        masked: paths(linux.masked_paths()),
        readonly: paths(linux.readonly_paths()),
        caps,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        rlimits,
        args,
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().clone(),
        state_dir,
        pid_file,
        gate_fd: None,
    })
}

fn paths(list: &Option<Vec<String>>) -> Vec<PathBuf> {
    list.iter().flatten().map(PathBuf::from).collect()
}

fn mask(set: &Option<oci_spec::runtime::Capabilities>) -> std::result::Result<u64, Unsupported> {
    let mut bits = 0u64;
    for cap in set.iter().flatten() {
        let name = format!("CAP_{cap}");
        let known: caps::Capability = name
            .parse()
            .map_err(|_| format!("capability {name} unknown here"))?;
        bits |= 1 << known.index();
    }
    Ok(bits)
}

/// Mount options to `MS_*` flags and filesystem data; the bind and
/// propagation ones apart.
struct Options {
    flags: u64,
    data: Vec<String>,
    bind: bool,
    recursive: bool,
    slave: bool,
}

fn options(list: &[String]) -> std::result::Result<Options, Unsupported> {
    let mut o = Options {
        flags: 0,
        data: Vec::new(),
        bind: false,
        recursive: false,
        slave: false,
    };
    for opt in list {
        let flag = match opt.as_str() {
            "ro" => libc::MS_RDONLY,
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            "relatime" => libc::MS_RELATIME,
            "strictatime" => libc::MS_STRICTATIME,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "rw" | "suid" | "dev" | "exec" => 0,
            "bind" => {
                o.bind = true;
                0
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                0
            }
            "rslave" | "slave" => {
                o.slave = true;
                0
            }
            "private" | "rprivate" | "shared" | "rshared" | "unbindable" | "runbindable" => {
                return Err(format!("mount propagation {opt}"))
            }
            _ => {
                o.data.push(opt.clone());
                0
            }
        };
        o.flags |= flag;
    }
    Ok(o)
}

fn mount(
    m: &oci_spec::runtime::Mount,
    hierarchies: &[Hierarchy],
) -> std::result::Result<Mount, Unsupported> {
    let opts = options(m.options().as_deref().unwrap_or_default())?;
    let typ = m.typ().clone().unwrap_or_default();
    let source = m.source().clone().unwrap_or_default();
    let kind = if opts.bind || typ == "bind" {
        if !opts.data.is_empty() {
            return Err(format!("bind options {:?}", opts.data));
        }
        MountKind::Bind {
            source,
            recursive: opts.recursive,
        }
    } else if typ == "cgroup" {
        MountKind::CgroupTree {
            hierarchies: hierarchies
                .iter()
                .filter(|h| !h.controllers.is_empty())
                .map(|h| CgroupFs {
                    name: h
                        .mount_point
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    options: if h.controllers.iter().all(|c| c.starts_with("name=")) {
                        format!("none,{}", h.controllers.join(","))
                    } else {
                        h.controllers.join(",")
                    },
                })
                .collect(),
        }
    } else {
        MountKind::Fs {
            fstype: typ,
            source: source.to_string_lossy().into_owned(),
        }
    };
    Ok(Mount {
        destination: m.destination().clone(),
        kind,
        flags: opts.flags,
        data: opts.data.join(","),
        slave: opts.slave,
    })
}

/// Each hierarchy's directory for the sandbox, with the limits of the
/// spec's resources its controllers hold (as runc writes them).
fn cgroups(
    linux: &oci_spec::runtime::Linux,
    hierarchies: &[Hierarchy],
    cgroups_path: &Path,
) -> std::result::Result<Vec<CgroupDir>, Unsupported> {
    let path = linux
        .cgroups_path()
        .as_deref()
        .unwrap_or(cgroups_path)
        .to_path_buf();
    if path.is_absolute() {
        return Err("an absolute cgroups path".into());
    }
    let resources = linux.resources().as_ref();
    let mut dirs = Vec::new();
    for h in hierarchies {
        let dir = h.own_dir.join(&path);
        let has = |c: &str| h.controllers.iter().any(|x| x == c);
        let mut settings = Vec::new();
        if let Some(r) = resources {
            if has("memory") {
                if let Some(m) = r.memory() {
                    if let Some(limit) = m.limit().filter(|l| *l > 0) {
                        settings.push(("memory.limit_in_bytes".into(), limit.to_string()));
                    }
                    // Only where the kernel accounts swap.
                    if let Some(swap) = m.swap().filter(|s| *s > 0) {
                        if h.own_dir.join("memory.memsw.limit_in_bytes").exists() {
                            settings.push(("memory.memsw.limit_in_bytes".into(), swap.to_string()));
                        }
                    }
                }
            }
            if has("cpu") {
                if let Some(cpu) = r.cpu() {
                    if let Some(period) = cpu.period() {
                        settings.push(("cpu.cfs_period_us".into(), period.to_string()));
                    }
                    if let Some(quota) = cpu.quota() {
                        settings.push(("cpu.cfs_quota_us".into(), quota.to_string()));
                    }
                    if cpu.shares().is_some() || cpu.cpus().is_some() || cpu.mems().is_some() {
                        return Err("cpu shares or cpusets".into());
                    }
                }
            }
            if has("pids") {
                if let Some(pids) = r.pids() {
                    settings.push(("pids.max".into(), pids.limit().to_string()));
                }
            }
            if has("devices") {
                for d in r.devices().as_deref().unwrap_or_default() {
                    let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
                        LinuxDeviceType::A => 'a',
                        LinuxDeviceType::B => 'b',
                        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
                        LinuxDeviceType::P => 'p',
                    };
                    let number =
                        |n: Option<i64>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
                    let rule = if typ == 'a' {
                        "a".to_string()
                    } else {
                        format!(
                            "{typ} {}:{} {}",
                            number(d.major()),
                            number(d.minor()),
                            d.access().as_deref().unwrap_or("rwm")
                        )
                    };
                    let file = if d.allow() {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    };
                    settings.push((file.into(), rule));
                }
            }
            if r.hugepage_limits().as_ref().is_some_and(|l| !l.is_empty())
                || r.block_io().is_some()
                || r.network().is_some()
            {
                return Err("hugepage, block I/O or network limits".into());
            }
        }
        dirs.push(CgroupDir {
            controllers: h.controllers.join(","),
            dir,
            settings,
        });
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Bind, Limits, SandboxSpec};
    use crate::spec::{self, SpecOptions};

    fn hierarchies() -> Vec<Hierarchy> {
        let h = |controllers: &[&str], dir: &str, at: &str| Hierarchy {
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            own_dir: PathBuf::from(dir),
            mount_point: PathBuf::from(at),
        };
        vec![
            h(
                &["memory"],
                "/sys/fs/cgroup/memory/nested",
                "/sys/fs/cgroup/memory",
            ),
            h(&["cpu"], "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu"),
            h(&["pids"], "/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids"),
            h(
                &["devices"],
                "/sys/fs/cgroup/devices",
                "/sys/fs/cgroup/devices",
            ),
            h(
                &["name=systemd"],
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/systemd",
            ),
            h(&[], "/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified"),
        ]
    }

    fn sandbox() -> SandboxSpec {
        let mut s = SandboxSpec::new("t1", "/r", "/b", "/l", "/bin/sh");
        s.limits = Limits {
            cpus: 0.5,
            memory_bytes: 256 << 20,
            pids: 100,
        };
        s.init_loads_seccomp = true;
        s.no_new_privileges = false;
        s.binds = vec![Bind {
            source: "/host/checkpoints".into(),
            destination: "/.sprite/checkpoints".into(),
            read_only: true,
            follow_host_mounts: true,
        }];
        s
    }

    fn options() -> SpecOptions {
        SpecOptions {
            cgroups_path: PathBuf::from("sprited/t1"),
            nofile: 4096,
            user_ns: Some(PathBuf::from("/proc/1/fd/7")),
            init_loads_seccomp: true,
            net_ns: Some(PathBuf::from("/proc/1/fd/8")),
        }
    }

    fn plan_of(s: &SandboxSpec, o: &SpecOptions) -> std::result::Result<Plan, Unsupported> {
        let config = spec::build(s, o).expect("spec");
        plan(
            &s.id,
            &config,
            &hierarchies(),
            &o.cgroups_path,
            PathBuf::from("/state/t1"),
            PathBuf::from("/b/init.pid"),
        )
    }

    #[test]
    fn the_plan_says_what_the_spec_says() {
        let s = sandbox();
        let p = plan_of(&s, &options()).expect("plan");
        assert_eq!(p.user_ns, PathBuf::from("/proc/1/fd/7"));
        assert_eq!(p.net_ns, Some(PathBuf::from("/proc/1/fd/8")));
        assert_eq!(p.rootfs, PathBuf::from("/r"));
        assert_eq!(p.hostname, "t1");
        assert_eq!(p.args, vec![crate::AGENT_PATH_IN_SPRITE.to_string()]);
        assert!(p.env.iter().any(|e| e == "SPRITE_AGENT_FD=3"));
        assert!(!p.no_new_privs);
        assert!(
            p.rlimits.is_empty(),
            "inherited where a user namespace is joined"
        );

        // Capabilities: the sprite's, and what init needs to load its
        // filter (dropped by it), nothing else; none inheritable.
        let named = |c: &str| 1u64 << c.parse::<caps::Capability>().expect(c).index();
        let mut want = 0;
        for c in &s.capabilities {
            want |= named(&format!("CAP_{c}"));
        }
        want |= named("CAP_SYS_ADMIN") | named("CAP_SETPCAP");
        assert_eq!(p.caps.bounding, want);
        assert_eq!(p.caps.effective, want);
        assert_eq!(p.caps.permitted, want);
        assert_eq!(p.caps.inheritable, 0);
        assert_eq!(p.caps.ambient, 0);

        // Limits in the hierarchies that hold them; every hierarchy gets
        // a directory (as runc makes them), under the daemon's own.
        let dir = |c: &str| {
            p.cgroups
                .iter()
                .find(|d| d.controllers == c)
                .unwrap_or_else(|| panic!("{c}"))
        };
        let memory = dir("memory");
        assert_eq!(
            memory.dir,
            PathBuf::from("/sys/fs/cgroup/memory/nested/sprited/t1")
        );
        assert!(memory
            .settings
            .contains(&("memory.limit_in_bytes".into(), (256u64 << 20).to_string())));
        assert_eq!(
            dir("cpu").settings,
            vec![
                ("cpu.cfs_period_us".into(), "100000".into()),
                ("cpu.cfs_quota_us".into(), "50000".into()),
            ]
        );
        assert_eq!(
            dir("pids").settings,
            vec![("pids.max".into(), "100".into())]
        );
        let devices = &dir("devices").settings;
        assert_eq!(devices[0], ("devices.deny".into(), "a".into()));
        assert!(devices.contains(&("devices.allow".into(), "c 1:3 rwm".into())));
        assert!(devices.contains(&("devices.allow".into(), "c 136:* rwm".into())));
        assert!(dir("name=systemd").settings.is_empty());
        assert_eq!(p.cgroups.len(), 6);

        // Mounts: new filesystems, the cgroup tree (v1 hierarchies only),
        // binds with their flags and propagation.
        let at = |d: &str| {
            p.mounts
                .iter()
                .find(|m| m.destination == Path::new(d))
                .unwrap_or_else(|| panic!("{d}"))
        };
        assert_eq!(
            at("/proc").kind,
            MountKind::Fs {
                fstype: "proc".into(),
                source: "proc".into()
            }
        );
        assert_eq!(
            at("/proc").flags,
            libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV
        );
        assert!(at("/dev").data.contains("mode=755"));
        assert_eq!(at("/sys").flags & libc::MS_RDONLY, libc::MS_RDONLY);
        let MountKind::CgroupTree { hierarchies } = &at("/sys/fs/cgroup").kind else {
            panic!("cgroup tree");
        };
        let names: Vec<_> = hierarchies
            .iter()
            .map(|h| (h.name.as_str(), h.options.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("memory", "memory"),
                ("cpu", "cpu"),
                ("pids", "pids"),
                ("devices", "devices"),
                ("systemd", "none,name=systemd"),
            ]
        );
        let agent = at(crate::AGENT_PATH_IN_SPRITE);
        assert_eq!(
            agent.kind,
            MountKind::Bind {
                source: "/bin/sh".into(),
                recursive: false
            }
        );
        assert_eq!(
            agent.flags,
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV
        );
        assert!(!agent.slave);
        let checkpoints = at("/.sprite/checkpoints");
        assert_eq!(
            checkpoints.kind,
            MountKind::Bind {
                source: "/host/checkpoints".into(),
                recursive: true
            }
        );
        assert!(checkpoints.slave);
        assert!(p.masked.contains(&PathBuf::from("/proc/kcore")));
        assert!(p.readonly.contains(&PathBuf::from("/proc/sys")));
        assert!(p.devices.contains(&PathBuf::from("/dev/null")));
    }

    #[test]
    fn what_the_plan_cannot_say_is_left_to_runc() {
        let s = sandbox();
        let mut o = options();
        o.user_ns = None;
        assert!(
            plan_of(&s, &o).is_err(),
            "no user namespace made beforehand"
        );

        let mut s2 = sandbox();
        s2.init_loads_seccomp = false;
        let mut o = options();
        o.init_loads_seccomp = false;
        assert!(
            plan_of(&s2, &o).is_err(),
            "a filter for the runtime to load"
        );

        assert!(options_of(&["rprivate"]).is_err());
        let o = options_of(&["nosuid", "mode=755", "size=4k"]).expect("options");
        assert_eq!(o.flags, libc::MS_NOSUID);
        assert_eq!(o.data, vec!["mode=755".to_string(), "size=4k".to_string()]);
    }

    fn options_of(list: &[&str]) -> std::result::Result<Options, Unsupported> {
        super::options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }
}
