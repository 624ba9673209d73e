//! Who a command runs as.
//!
//! The agent is linked statically, so glibc's NSS lookups (`getpwnam` and
//! friends) are unavailable: `/etc/passwd` and `/etc/group` are parsed here.

use std::path::Path;

/// The user name commands run as by default, where it exists.
pub const DEFAULT_USER: &str = "sprite";

/// A resolved account: everything needed to drop privileges and set up the
/// environment of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary gid first.
    pub groups: Vec<u32>,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The account databases as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    passwd: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

impl UserDb {
    /// Read `/etc/passwd` and `/etc/group`; a missing or unreadable file
    /// counts as empty.
    pub fn load() -> UserDb {
        UserDb::load_from(Path::new("/etc/passwd"), Path::new("/etc/group"))
    }

    fn load_from(passwd: &Path, group: &Path) -> UserDb {
        let passwd = std::fs::read_to_string(passwd).unwrap_or_default();
        let group = std::fs::read_to_string(group).unwrap_or_default();
        UserDb::parse(&passwd, &group)
    }

    /// Build from the text of the two files.
    pub fn parse(passwd: &str, group: &str) -> UserDb {
        UserDb {
            passwd: passwd.lines().filter_map(parse_passwd_line).collect(),
            groups: group.lines().filter_map(parse_group_line).collect(),
        }
    }

    /// Resolve a user given by name or numeric uid; `None` means the default
    /// (`sprite` where it exists, else root).
    pub fn resolve(&self, spec: Option<&str>) -> Result<Account, String> {
        let spec = spec.map(str::trim).filter(|s| !s.is_empty());
        let entry = match spec {
            None => match self.by_name(DEFAULT_USER) {
                Some(e) => e.clone(),
                None => self.by_uid(0).cloned().unwrap_or_else(root_entry),
            },
            Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => {
                let uid: u32 = s.parse().map_err(|_| format!("uid {s} is out of range"))?;
                match self.by_uid(uid) {
                    Some(e) => e.clone(),
                    None if uid == 0 => root_entry(),
                    // A uid without a passwd entry still runs, as in
                    // `docker run --user 1234`: its own group, home `/`.
                    None => PasswdEntry {
                        name: s.to_string(),
                        uid,
                        gid: uid,
                        home: "/".into(),
                        shell: "/bin/sh".into(),
                    },
                }
            }
            Some(name) => match self.by_name(name) {
                Some(e) => e.clone(),
                None if name == "root" => root_entry(),
                None => return Err(format!("unknown user {name:?}")),
            },
        };
        Ok(self.account(entry))
    }

    /// The uid of a user name.
    pub fn uid_of(&self, name: &str) -> Option<u32> {
        self.by_name(name).map(|e| e.uid)
    }

    /// The gid of a group name.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.name == name).map(|g| g.gid)
    }

    fn by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.name == name)
    }

    fn by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.uid == uid)
    }

    fn account(&self, e: PasswdEntry) -> Account {
        let mut groups = vec![e.gid];
        for g in &self.groups {
            if g.members.contains(&e.name) && !groups.contains(&g.gid) {
                groups.push(g.gid);
            }
        }
        Account {
            name: e.name,
            uid: e.uid,
            gid: e.gid,
            groups,
            home: if e.home.is_empty() {
                "/".into()
            } else {
                e.home
            },
            shell: if e.shell.is_empty() {
                "/bin/sh".into()
            } else {
                e.shell
            },
        }
    }
}

fn root_entry() -> PasswdEntry {
    PasswdEntry {
        name: "root".into(),
        uid: 0,
        gid: 0,
        home: "/root".into(),
        shell: "/bin/sh".into(),
    }
}

/// `name:password:uid:gid:gecos:home:shell`; comments and malformed lines
/// yield `None`.
fn parse_passwd_line(line: &str) -> Option<PasswdEntry> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 || f[0].is_empty() {
        return None;
    }
    Some(PasswdEntry {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].to_string(),
        shell: f[6].to_string(),
    })
}

/// `name:password:gid:member,member`.
fn parse_group_line(line: &str) -> Option<GroupEntry> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 4 || f[0].is_empty() {
        return None;
    }
    Some(GroupEntry {
        name: f[0].to_string(),
        gid: f[2].parse().ok()?,
        members: f[3]
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken line
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
sprite:x:1000:1000:Sprite,,,:/home/sprite:/bin/bash
odd:x:notanumber:1::/:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
sudo:x:27:sprite,alice
docker:x:999: sprite
sprite:x:1000:
staff:x:50:bob
";

    #[test]
    fn default_is_sprite_with_groups() {
        let db = UserDb::parse(PASSWD, GROUP);
        let a = db.resolve(None).expect("default user");
        assert_eq!(a.name, "sprite");
        assert_eq!((a.uid, a.gid), (1000, 1000));
        assert_eq!(a.groups, vec![1000, 27, 999]);
        assert_eq!(a.home, "/home/sprite");
        assert_eq!(a.shell, "/bin/bash");
    }

    #[test]
    fn default_falls_back_to_root() {
        let db = UserDb::parse("root:x:0:0:root:/root:/bin/bash\n", "");
        let a = db.resolve(None).expect("root");
        assert_eq!((a.name.as_str(), a.uid, a.gid), ("root", 0, 0));
        assert_eq!(a.groups, vec![0]);
        let empty = UserDb::parse("", "");
        let r = empty.resolve(None).expect("synthesised root");
        assert_eq!((r.uid, r.home.as_str()), (0, "/root"));
    }

    #[test]
    fn numeric_uids_resolve_with_or_without_an_entry() {
        let db = UserDb::parse(PASSWD, GROUP);
        let n = db.resolve(Some("65534")).expect("nobody");
        assert_eq!(n.name, "nobody");
        assert_eq!(n.home, "/nonexistent");
        let anon = db.resolve(Some("4242")).expect("anonymous uid");
        assert_eq!((anon.uid, anon.gid, anon.home.as_str()), (4242, 4242, "/"));
        assert!(db.resolve(Some("99999999999")).is_err());
    }

    #[test]
    fn names_resolve_and_unknown_names_fail() {
        let db = UserDb::parse(PASSWD, GROUP);
        assert_eq!(db.resolve(Some("daemon")).expect("daemon").uid, 1);
        assert_eq!(db.resolve(Some(" root ")).expect("root").uid, 0);
        assert!(db.resolve(Some("alice")).is_err());
        assert!(
            db.resolve(Some("odd")).is_err(),
            "malformed entries are skipped"
        );
    }

    #[test]
    fn names_map_to_ids() {
        let db = UserDb::parse(PASSWD, GROUP);
        assert_eq!(db.uid_of("sprite"), Some(1000));
        assert_eq!(db.gid_of("sudo"), Some(27));
        assert_eq!(db.gid_of("nope"), None);
        assert_eq!(db.uid_of("nope"), None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(parse_passwd_line("a:b:c"), None);
        assert_eq!(parse_passwd_line("#x:x:0:0::/:/bin/sh"), None);
        assert_eq!(parse_group_line(":x:1:"), None);
        assert_eq!(
            parse_group_line("g:x:7:a, b,,c\r"),
            Some(GroupEntry {
                name: "g".into(),
                gid: 7,
                members: vec!["a".into(), "b".into(), "c".into()]
            })
        );
    }
}
