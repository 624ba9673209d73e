//! A user namespace of its own owner for each sandbox, so that the
//! kernel's per-user counts are the sandbox's own.
//!
//! The kernel charges what a process in a user namespace creates (inotify
//! instances and watches, user namespaces, mqueue bytes, ...) to its uid in
//! that namespace *and* to the namespace's owner (the euid that created it)
//! in every namespace above, each level against that level's limit. When
//! runc creates a sandbox's namespace, the owner is host root: every
//! sandbox then shares host root's counts in the initial namespace
//! (`fs.inotify.max_user_instances` is 128), and one sandbox opening
//! inotify instances in a loop leaves none for the host or the others.
//!
//! So the driver makes the namespace itself, as an owner uid no one else
//! has (one per running sandbox, from [`OWNER_BASE`]), writes its id map
//! and hands it to runc to join. Each sandbox is then held to the host's
//! per-user limits as if it were a user of its own, and host root's counts
//! are untouched. The owner runs nothing: a child process takes that uid
//! only to create the namespace and exits at once.
//!
//! The same slot gives the sandbox a host id range of its own (from
//! [`RANGE_BASE`]): no two running sandboxes share a host id, so a process
//! that escaped its namespaces still owns nothing of another sandbox. Its
//! files stay stored in the shared range and are shown to it under its own
//! through idmapped mounts (sprite-store's `idmap`).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Result, RuntimeError};
use crate::sandbox::IdMap;

/// First uid used as a namespace owner; the sandbox in slot `n` (see
/// [`Slots`]) gets `OWNER_BASE + n`. Above every id range handed to a
/// sandbox, and far above host users.
pub const OWNER_BASE: u32 = 2_000_000_000;
/// First host id of the ranges sandboxes run as, one of [`RANGE_SIZE`]
/// per slot: `RANGE_BASE + n * RANGE_SIZE`. Above the ranges `subuid`
/// hands out on ordinary hosts and the shared range (100000).
pub const RANGE_BASE: u32 = 1_000_000_000;
/// Ids per sandbox: 0..65535 inside, as a Linux userland expects.
pub const RANGE_SIZE: u32 = 65_536;
/// How many sandboxes can run at once (their ranges end below the owners).
pub const SLOTS: u32 = (OWNER_BASE - RANGE_BASE) / RANGE_SIZE;
// The ranges end below the owners, with room for every sandbox a host runs.
const _: () = assert!(RANGE_BASE + SLOTS * RANGE_SIZE <= OWNER_BASE && SLOTS >= 10_000);

/// `NS_GET_OWNER_UID` (linux/nsfs.h): `_IO(0xb7, 0x4)`.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// An open user namespace, made for one sandbox.
#[derive(Debug)]
pub struct UserNs {
    fd: OwnedFd,
    owner: u32,
    /// A network namespace owned by it, made with it (see
    /// [`UserNs::create_with_net`]).
    net: Option<OwnedFd>,
}

impl UserNs {
    /// A path that opens the namespace (for runc's `linux.namespaces`)
    /// while `self` lives.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }

    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// A path that opens the network namespace made with it, if one was.
    pub fn net_path(&self) -> Option<PathBuf> {
        let net = self.net.as_ref()?;
        Some(PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            net.as_raw_fd()
        )))
    }

    /// Creates a user namespace owned by `owner` whose ids `0..map.size`
    /// are host ids `map.host_base..`.
    pub fn create(owner: u32, map: IdMap) -> Result<UserNs> {
        let line = format!("0 {} {}\n", map.host_base, map.size);
        let fd = sprite_store::userns::create(Some(owner), &line)
            .map_err(|e| RuntimeError::io("make", "user namespace", e))?;
        Ok(UserNs {
            fd,
            owner,
            net: None,
        })
    }

    /// [`UserNs::create`], with a network namespace the user namespace
    /// owns: the sandbox joins both, and its network can be set up while
    /// it starts (a namespace of the host's would keep it from mounting
    /// sysfs).
    pub fn create_with_net(owner: u32, map: IdMap) -> Result<UserNs> {
        let line = format!("0 {} {}\n", map.host_base, map.size);
        let (fd, net) = sprite_store::userns::create_with_net(Some(owner), &line)
            .map_err(|e| RuntimeError::io("make", "user and network namespaces", e))?;
        Ok(UserNs {
            fd,
            owner,
            net: Some(net),
        })
    }
}

/// The owner uid of the user namespace at `path`.
pub fn owner_of(path: &Path) -> Option<u32> {
    let f = File::open(path).ok()?;
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which
    // points at a live local; `f` is open for the call.
    let r = unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            NS_GET_OWNER_UID,
            &mut uid as *mut libc::uid_t,
        )
    };
    (r == 0).then_some(uid)
}

/// Each running sandbox's slot `n`, so that no two share one: its
/// namespace's owner is `OWNER_BASE + n` and, where the driver gives
/// sandboxes ranges of their own, its ids are the `n`th range from
/// [`RANGE_BASE`].
#[derive(Debug, Default)]
pub struct Slots {
    /// `None` until the sandboxes already running are looked at.
    taken: Mutex<Option<HashMap<String, u32>>>,
}

/// What a running sandbox's slot is learned from: its init's pid.
pub fn slot_of_init(pid: u32) -> Option<u32> {
    // Its own range says it (the first line of its uid map: `0 base size`)...
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok()?;
    let mut words = map.split_whitespace().map(|w| w.parse::<u32>().ok());
    let (inside, base) = (words.next()??, words.next()??);
    if inside == 0 && base >= RANGE_BASE && (base - RANGE_BASE).is_multiple_of(RANGE_SIZE) {
        let slot = (base - RANGE_BASE) / RANGE_SIZE;
        if slot < SLOTS {
            return Some(slot);
        }
    }
    // ... or, sharing the shared range, its namespace's owner.
    let owner = owner_of(Path::new(&format!("/proc/{pid}/ns/user")))?;
    (OWNER_BASE..OWNER_BASE + SLOTS)
        .contains(&owner)
        .then(|| owner - OWNER_BASE)
}

impl Slots {
    /// The slot of sandbox `id`: the one it has, or one no other running
    /// sandbox has. `running` lists the sandboxes that may already run,
    /// with their slots; it is asked once, the first time.
    pub fn take(&self, id: &str, running: impl FnOnce() -> Vec<(String, u32)>) -> Option<u32> {
        let mut guard = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let taken = guard.get_or_insert_with(|| running().into_iter().collect());
        if let Some(slot) = taken.get(id) {
            return Some(*slot);
        }
        let used: std::collections::HashSet<u32> = taken.values().copied().collect();
        let slot = (0..SLOTS).find(|n| !used.contains(n))?;
        taken.insert(id.to_string(), slot);
        Some(slot)
    }

    /// Sandbox `id` is gone: its slot may be reused.
    pub fn release(&self, id: &str) {
        let mut guard = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(taken) = guard.as_mut() {
            taken.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_unique_kept_and_reused_after_release() {
        let slots = Slots::default();
        let a = slots.take("a", Vec::new).expect("a");
        let b = slots.take("b", || panic!("asked once")).expect("b");
        assert_eq!((a, b), (0, 1));
        // Asked again (its root mounted, then its start): the same one.
        assert_eq!(slots.take("b", || panic!("asked once")), Some(1));
        slots.release("a");
        assert_eq!(slots.take("c", || panic!("asked once")), Some(0));
        slots.release("b");
        let b2 = slots.take("b", || panic!("asked once")).expect("b2");
        assert_ne!(b2, 0, "c has 0");
    }

    /// After a restart of the daemon, the running sandboxes' slots are
    /// taken before any new one is handed out.
    #[test]
    fn slots_of_running_sandboxes_are_never_handed_out() {
        let slots = Slots::default();
        let running = || vec![("x".to_string(), 0), ("y".to_string(), 2)];
        assert_eq!(slots.take("y", running), Some(2));
        assert_eq!(slots.take("new", Vec::new), Some(1));
        assert_eq!(slots.take("newer", Vec::new), Some(3));
    }

    /// Many made at once (sprites starting together): each helper sees its
    /// own end of file, none waits for another's.
    #[test]
    fn namespaces_made_side_by_side_all_finish() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test makes user namespaces as other uids: run it as root"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        for t in 0..6u32 {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..15u32 {
                    let made = UserNs::create(
                        OWNER_BASE + 1000 + t * 100 + i,
                        IdMap {
                            host_base: 100_000,
                            size: 65536,
                        },
                    );
                    let _ = tx.send(made.map(|ns| ns.owner()).map_err(|e| e.to_string()));
                }
            });
        }
        drop(tx);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut done = 0;
        while done < 90 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(made) => {
                    made.expect("a user namespace");
                    done += 1;
                }
                Err(e) => panic!("{done} of 90 namespaces made, then: {e}"),
            }
        }
    }

    #[test]
    fn a_namespace_made_here_has_its_owner_and_map() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test makes user namespaces as other uids: run it as root"
        );
        let ns = UserNs::create(
            OWNER_BASE + 12345,
            IdMap {
                host_base: 100_000,
                size: 65536,
            },
        )
        .expect("user namespace");
        assert_eq!(owner_of(&ns.path()), Some(OWNER_BASE + 12345));
        assert_eq!(ns.owner(), OWNER_BASE + 12345);
    }

    #[test]
    fn a_network_namespace_made_with_it_belongs_to_it() {
        use std::os::fd::FromRawFd;
        use std::os::unix::fs::MetadataExt;
        let ns = UserNs::create_with_net(
            OWNER_BASE + 12346,
            IdMap {
                host_base: 100_000,
                size: 65536,
            },
        )
        .expect("user and network namespaces");
        assert!(UserNs::create(OWNER_BASE + 12347, IdMap::default())
            .expect("user namespace")
            .net_path()
            .is_none());
        let net = File::open(ns.net_path().expect("a network namespace")).expect("open");
        /// `NS_GET_USERNS` (linux/nsfs.h): `_IO(0xb7, 0x1)`.
        const NS_GET_USERNS: libc::c_ulong = 0xb701;
        // SAFETY: NS_GET_USERNS takes no argument and returns a new fd.
        let owner = unsafe { libc::ioctl(net.as_raw_fd(), NS_GET_USERNS) };
        assert!(owner >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor the ioctl returned, owned by no one else.
        let owner = File::from(unsafe { OwnedFd::from_raw_fd(owner) });
        let user = File::open(ns.path()).expect("open");
        let id = |f: &File| {
            let m = f.metadata().expect("stat");
            (m.dev(), m.ino())
        };
        assert_eq!(
            id(&owner),
            id(&user),
            "owned by the sandbox's user namespace"
        );
        let host = File::open("/proc/self/ns/net").expect("host netns");
        assert_ne!(id(&net), id(&host), "not the host's");
    }
}
