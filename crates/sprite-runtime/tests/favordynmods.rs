//! `favordynmods` on the host's cgroup2 superblock (needs root and a
//! cgroup2 mount, as on this project's hybrid and unified hosts): set where
//! it is not, the mount's flags and other super options kept, and found
//! set by the next call. It stays set afterwards, as the daemon leaves it.

use sprite_runtime::cgroup::{favor_dynmods, Dynmods};

/// (mount point, mount flags, super options) of the first cgroup2 mount.
fn cgroup2() -> Option<(String, Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if right.first() != Some(&"cgroup2") {
            return None;
        }
        let split = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        Some((
            left.get(4)?.to_string(),
            split(left.get(5)?),
            split(right.get(2)?),
        ))
    })
}

#[test]
fn favordynmods_is_set_and_everything_else_kept() {
    let (at, flags, supers) = cgroup2().expect(
        "no cgroup2 is mounted on this host: the test needs one (hybrid or unified cgroups)",
    );
    let had = supers.iter().any(|o| o == "favordynmods");
    let got = favor_dynmods().expect("setting favordynmods");
    let expected = if had {
        Dynmods::Already(at.clone().into())
    } else {
        Dynmods::Set(at.clone().into())
    };
    assert_eq!(got, expected);

    let (at2, flags2, supers2) = cgroup2().expect("cgroup2 still mounted");
    assert_eq!(at2, at);
    assert_eq!(flags2, flags, "the mount's own flags are unchanged");
    assert!(supers2.iter().any(|o| o == "favordynmods"), "{supers2:?}");
    for o in &supers {
        assert!(supers2.contains(o), "{o} was kept: {supers2:?}");
    }
    assert_eq!(
        favor_dynmods().expect("second call"),
        Dynmods::Already(at.into())
    );
}
