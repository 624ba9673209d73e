//! A sprite's privileges policy (`{capabilities: {add, drop}, devices}`):
//! what root inside may do beyond, or short of, the default capability
//! set, and which host devices it sees. Kept in the `privileges_policies`
//! table, enforced by the driver when the sandbox starts (capability sets,
//! device nodes and device cgroup rules), shown inside at
//! `/.sprite/policy/privileges.json`. Like the resources policy, a change
//! takes effect at the next start (a restart, or a wake from cold): a
//! running or warm sprite keeps the privileges it started with.
//!
//! What may be granted is an allowlist, because a sprite's root is only as
//! contained as its capabilities and devices let it be:
//! - capabilities whose reach stays inside the sprite's own user, network
//!   and pid namespaces ([`GRANTABLE`]). Not `CAP_NET_ADMIN`: the egress
//!   firewall lives in the sprite's network namespace, which would let root
//!   inside rewrite its own network policy. Not `CAP_SYS_ADMIN`: mounts and
//!   new namespaces are refused by the seccomp profile anyway, and it is
//!   the broadest kernel surface there is. Not the ones that act on the
//!   host (modules, raw I/O, the clock, audit, BPF, perf, syslog, handles).
//! - devices that serve only the process that opens them ([`DEVICES`]):
//!   FUSE, TUN, KVM. Never a disk, `/dev/mem`, `/dev/kmsg`, a loop device
//!   or anything else that reaches shared host state.
//!
//! Dropping is open to every known capability: less is always safe.
//!
//! `profile` (the JS SDK's) picks the set the changes apply to:
//! `minimal` ([`MINIMAL`]: managing files and users, nothing of the
//! network or the system), `standard` (the default set) or `privileged`
//! (the default set and every grantable capability). `noNewPrivileges`
//! sets the flag of the same name on the sprite's processes.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sprite_runtime::{Capability, Device};
use sprites_api::policy::{CapabilityChanges, PrivilegesPolicy};

use super::Manager;
use crate::db::SpriteRecord;
use crate::error::Error;

/// Capabilities a policy may add to the default set.
pub const GRANTABLE: &[Capability] = &[
    Capability::NetRaw,
    Capability::SysPtrace,
    Capability::IpcLock,
    Capability::SysNice,
    Capability::Lease,
];

/// The `minimal` profile's capabilities.
pub const MINIMAL: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
];

/// Profiles a policy may name (`""` is the default, `standard`).
pub const PROFILES: &[&str] = &["minimal", "standard", "privileged"];

/// Devices a policy may grant, with the mode of the sprite's node.
pub const DEVICES: &[(&str, u32)] = &[
    ("/dev/fuse", 0o666),
    ("/dev/net/tun", 0o666),
    ("/dev/kvm", 0o660),
];

/// Where the policy in force is shown, in the sprite's policy folder.
const FILE: &str = "privileges.json";

/// What the sandbox starts with.
pub struct Privileges {
    pub capabilities: Vec<Capability>,
    pub devices: Vec<Device>,
    /// `None`: the image's default.
    pub no_new_privileges: Option<bool>,
    /// io_uring allowed by seccomp.
    pub io_uring: bool,
}

impl Manager {
    /// The sprite's policy (the empty one by default).
    pub fn privileges_policy(&self, rec: &SpriteRecord) -> Result<PrivilegesPolicy, Error> {
        let Some(json) = self.db.privileges_policy(&rec.id)? else {
            return Ok(PrivilegesPolicy::default());
        };
        serde_json::from_str(&json)
            .map_err(|e| Error::Internal(format!("the stored privileges policy: {e}")))
    }

    /// Validates and stores a policy; the default one removes the row.
    pub fn set_privileges_policy(
        &self,
        rec: &SpriteRecord,
        policy: &PrivilegesPolicy,
    ) -> Result<(), Error> {
        let policy = validate(policy, host_device)?;
        let json = if policy.is_default() {
            None
        } else {
            Some(
                serde_json::to_string(&policy)
                    .map_err(|e| Error::Internal(format!("encoding the policy: {e}")))?,
            )
        };
        self.db.set_privileges_policy(&rec.id, json.as_deref())?;
        Ok(())
    }

    /// The privileges a start gives the sprite, its policy written into
    /// `policy_dir` (bound at `/.sprite/policy`) for the processes inside.
    pub(super) fn privileges_at_start(
        &self,
        rec: &SpriteRecord,
        policy_dir: &Path,
    ) -> Result<Privileges, Error> {
        let policy = self.privileges_policy(rec)?;
        let body = serde_json::to_vec_pretty(&policy)
            .map_err(|e| Error::Internal(format!("encoding the policy: {e}")))?;
        // Replaced by rename: a reader inside sees the old file or the new.
        let file = policy_dir.join(FILE);
        crate::files::replace_if_changed(&file, &body, 0o644)
            .map_err(Error::io(format!("write {}", file.display())))?;
        Ok(effective(&policy, host_device, &rec.name))
    }
}

/// The host's device number of `path`, if it is a character device.
fn host_device(path: &str) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_char_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

/// `CAP_NET_RAW`, `net_raw` and `NET_RAW` name the same capability.
fn parse_capability(name: &str) -> Result<Capability, Error> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| Error::Invalid(format!("unknown capability {name:?}")))
}

fn capability_name(c: Capability) -> String {
    format!("CAP_{c}")
}

/// `fuse` is read as `/dev/fuse`.
fn device_path(name: &str) -> String {
    let name = name.trim();
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/dev/{name}")
    }
}

/// The policy in its stored form (canonical names, sorted, no repeats), or
/// why it is refused. `host` finds a device on this host.
fn validate(
    policy: &PrivilegesPolicy,
    host: impl Fn(&str) -> Option<(u64, u64)>,
) -> Result<PrivilegesPolicy, Error> {
    let names = |list: &[String]| -> Result<BTreeSet<String>, Error> {
        list.iter()
            .map(|n| parse_capability(n).map(capability_name))
            .collect()
    };
    let add = names(&policy.capabilities.add)?;
    let drop = names(&policy.capabilities.drop)?;
    if let Some(both) = add.intersection(&drop).next() {
        return Err(Error::Invalid(format!("{both} is both added and dropped")));
    }
    let default: BTreeSet<String> = sprite_runtime::spec::CAPABILITIES
        .iter()
        .chain(GRANTABLE)
        .map(|c| capability_name(*c))
        .collect();
    if let Some(refused) = add.iter().find(|c| !default.contains(*c)) {
        return Err(Error::Invalid(format!(
            "{refused} cannot be granted to a sprite; grantable beyond the default set: {}",
            GRANTABLE
                .iter()
                .map(|c| capability_name(*c))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let profile = match policy.profile.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) if PROFILES.contains(&p) => Some(p.to_string()),
        Some(other) => {
            return Err(Error::Invalid(format!(
                "unknown profile {other:?}: use one of {}",
                PROFILES.join(", ")
            )))
        }
    };
    let mut devices = BTreeSet::new();
    for name in &policy.devices {
        let path = device_path(name);
        if !DEVICES.iter().any(|(p, _)| *p == path) {
            return Err(Error::Invalid(format!(
                "device {name:?} cannot be granted to a sprite; grantable: {}",
                DEVICES
                    .iter()
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if host(&path).is_none() {
            return Err(Error::Invalid(format!(
                "device {path} does not exist on this host"
            )));
        }
        devices.insert(path);
    }
    Ok(PrivilegesPolicy {
        profile,
        no_new_privileges: policy.no_new_privileges,
        // Only `true` is kept: unset and false mean the same.
        io_uring: policy.io_uring.filter(|on| *on),
        capabilities: CapabilityChanges {
            add: add.into_iter().collect(),
            drop: drop.into_iter().collect(),
        },
        devices: devices.into_iter().collect(),
    })
}

/// What a stored policy gives a starting sandbox. A device the host no
/// longer has is left out (the sprite still starts).
fn effective(
    policy: &PrivilegesPolicy,
    host: impl Fn(&str) -> Option<(u64, u64)>,
    sprite: &str,
) -> Privileges {
    let listed = |list: &[String]| -> Vec<Capability> {
        list.iter()
            .filter_map(|n| parse_capability(n).ok())
            .collect()
    };
    let drop = listed(&policy.capabilities.drop);
    let base: Vec<Capability> = match policy.profile.as_deref() {
        Some("minimal") => MINIMAL.to_vec(),
        Some("privileged") => sprite_runtime::spec::CAPABILITIES
            .iter()
            .chain(GRANTABLE)
            .copied()
            .collect(),
        _ => sprite_runtime::spec::CAPABILITIES.to_vec(),
    };
    let mut capabilities: Vec<Capability> =
        base.into_iter().filter(|c| !drop.contains(c)).collect();
    for c in listed(&policy.capabilities.add) {
        if !capabilities.contains(&c) {
            capabilities.push(c);
        }
    }
    let devices = policy
        .devices
        .iter()
        .filter_map(|path| {
            let mode = DEVICES.iter().find(|(p, _)| *p == path.as_str())?.1;
            match host(path) {
                Some((major, minor)) => Some(Device {
                    path: path.to_string(),
                    major,
                    minor,
                    mode,
                }),
                None => {
                    tracing::warn!(sprite, device = %path, "granted device missing on this host: left out");
                    None
                }
            }
        })
        .collect();
    Privileges {
        capabilities,
        devices,
        no_new_privileges: policy.no_new_privileges,
        io_uring: policy.io_uring == Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(add: &[&str], drop: &[&str], devices: &[&str]) -> PrivilegesPolicy {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect();
        PrivilegesPolicy {
            capabilities: CapabilityChanges {
                add: s(add),
                drop: s(drop),
            },
            devices: s(devices),
            ..PrivilegesPolicy::default()
        }
    }

    fn tun_only(path: &str) -> Option<(u64, u64)> {
        (path == "/dev/net/tun").then_some((10, 200))
    }

    #[test]
    fn names_are_read_leniently_and_stored_canonically() {
        let got = validate(
            &policy(&["net_raw", "CAP_NET_RAW"], &["chown"], &["net/tun"]),
            tun_only,
        )
        .expect("valid");
        assert_eq!(
            got,
            policy(&["CAP_NET_RAW"], &["CAP_CHOWN"], &["/dev/net/tun"])
        );
    }

    #[test]
    fn refuses_what_is_not_allowed() {
        let bad = |p: PrivilegesPolicy| validate(&p, tun_only).expect_err("refused");
        assert!(bad(policy(&["CAP_FLY"], &[], &[]))
            .to_string()
            .contains("unknown"));
        assert!(bad(policy(&[], &["nonsense"], &[]))
            .to_string()
            .contains("unknown"));
        for dangerous in [
            "CAP_NET_ADMIN",
            "CAP_SYS_ADMIN",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
        ] {
            assert!(bad(policy(&[dangerous], &[], &[]))
                .to_string()
                .contains("cannot be granted"));
        }
        assert!(bad(policy(&["CAP_NET_RAW"], &["CAP_NET_RAW"], &[]))
            .to_string()
            .contains("both"));
        for disk in ["/dev/sda", "/dev/mem", "/dev/kmsg", "/dev/loop0", "../fuse"] {
            assert!(bad(policy(&[], &[], &[disk]))
                .to_string()
                .contains("cannot be granted"));
        }
        // Allowed, but not on this host.
        assert!(bad(policy(&[], &[], &["/dev/fuse"]))
            .to_string()
            .contains("does not exist"));
        // Dropping anything known is fine.
        assert!(validate(&policy(&[], &["CAP_SYS_ADMIN"], &[]), tun_only).is_ok());
    }

    #[test]
    fn the_default_policy_gives_the_default_set() {
        let p = effective(&PrivilegesPolicy::default(), tun_only, "t");
        assert_eq!(p.capabilities, sprite_runtime::spec::CAPABILITIES.to_vec());
        assert!(p.devices.is_empty());
    }

    #[test]
    fn a_policy_adds_drops_and_grants() {
        let p = effective(
            &policy(
                &["CAP_NET_RAW"],
                &["CAP_CHOWN"],
                &["/dev/net/tun", "/dev/fuse"],
            ),
            tun_only,
            "t",
        );
        assert!(p.capabilities.contains(&Capability::NetRaw));
        assert!(!p.capabilities.contains(&Capability::Chown));
        // The host lost /dev/fuse since the policy was set: left out.
        assert_eq!(
            p.devices,
            [Device {
                path: "/dev/net/tun".into(),
                major: 10,
                minor: 200,
                mode: 0o666
            }]
        );
    }
}
