//! `sprite cp SRC DEST`: copy files between this machine and a sprite.
//!
//! The sprite side is written `SPRITE:PATH`, or `:PATH` for the sprite of
//! `-s`/`.sprite`; everything else is local (a local name with a colon in
//! it: `./a:b`). `-` is stdin or stdout. As with `cp`, a destination that
//! is an existing directory (or ends in `/`) receives the source under its
//! own name; directories need `-r`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use sprites_client::sprites_api::name;

use super::Context;
use crate::cli::CpArgs;
use crate::transfer;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Local(PathBuf),
    /// `sprite`: `None` for `:PATH` (the current sprite).
    Remote {
        sprite: Option<String>,
        path: PathBuf,
    },
}

impl Place {
    pub fn parse(arg: &OsStr) -> Place {
        let b = arg.as_bytes();
        let local = || Place::Local(PathBuf::from(arg));
        if b == b"-" || b.starts_with(b"/") || b.starts_with(b"./") || b.starts_with(b"../") {
            return local();
        }
        let Some(colon) = b.iter().position(|&c| c == b':') else {
            return local();
        };
        let (name, rest) = (&b[..colon], &b[colon + 1..]);
        let path = if rest.is_empty() { &b"."[..] } else { rest };
        let path = PathBuf::from(OsStr::from_bytes(path));
        if name.is_empty() {
            return Place::Remote { sprite: None, path };
        }
        match std::str::from_utf8(name) {
            Ok(n) if name::validate(n).is_ok() => Place::Remote {
                sprite: Some(n.to_string()),
                path,
            },
            _ => local(),
        }
    }
}

pub async fn run(ctx: &Context, args: CpArgs) -> Result<i32> {
    let (src, dst) = (Place::parse(&args.source), Place::parse(&args.dest));
    let (sprite, upload, local, remote) = match (src, dst) {
        (Place::Local(l), Place::Remote { sprite, path }) => (sprite, true, l, path),
        (Place::Remote { sprite, path }, Place::Local(l)) => (sprite, false, l, path),
        (Place::Local(_), Place::Local(_)) => bail!(
            "neither {:?} nor {:?} is in a sprite: write the sprite side as SPRITE:PATH, \
             or :PATH for the current sprite",
            args.source,
            args.dest
        ),
        (Place::Remote { .. }, Place::Remote { .. }) => {
            bail!("copying from one sprite to another is not supported: copy through a local file")
        }
    };
    let handle = match sprite {
        Some(n) => ctx.client()?.sprite(n),
        None => ctx.sprite()?,
    };
    let name = handle.name().to_string();
    let mut fs = handle.fs();
    if let Some(u) = &args.user {
        fs = fs.user(u.clone());
    }
    let moved = if upload {
        upload_to(&fs, &local, &remote, &args).await
    } else {
        download_from(&fs, &remote, &local, &args).await
    };
    moved.map_err(|e| transfer::explain(e, &name))?;
    Ok(0)
}

async fn upload_to(
    fs: &sprites_client::Filesystem,
    local: &Path,
    remote: &Path,
    args: &CpArgs,
) -> Result<transfer::Moved> {
    let is_dir = local != Path::new("-") && local.is_dir();
    if is_dir && !args.recursive {
        bail!("{} is a directory (use -r)", local.display());
    }
    let into_dir =
        ends_with_slash(remote.as_os_str()) || transfer::remote_is_dir(fs, remote).await?;
    let target = match (into_dir, local.file_name()) {
        (true, Some(n)) if local != Path::new("-") => remote.join(n),
        _ => remote.to_path_buf(),
    };
    if is_dir {
        transfer::upload_tree(fs, local, &target).await
    } else {
        transfer::upload_file(fs, local, &target, args.mode).await
    }
}

async fn download_from(
    fs: &sprites_client::Filesystem,
    remote: &Path,
    local: &Path,
    args: &CpArgs,
) -> Result<transfer::Moved> {
    let is_dir = transfer::remote_is_dir(fs, remote).await?;
    if is_dir && !args.recursive {
        bail!("{} in the sprite is a directory (use -r)", remote.display());
    }
    if is_dir && local == Path::new("-") {
        bail!("a directory cannot go to stdout");
    }
    let into_dir =
        local != Path::new("-") && (ends_with_slash(local.as_os_str()) || local.is_dir());
    let target = match (into_dir, remote.file_name()) {
        (true, Some(n)) => local.join(n),
        _ => local.to_path_buf(),
    };
    if is_dir {
        transfer::download_tree(fs, remote, &target).await
    } else {
        transfer::download_file(fs, remote, &target).await
    }
}

fn ends_with_slash(p: &OsStr) -> bool {
    p.as_bytes().last() == Some(&b'/')
}

/// `LOCAL:REMOTE` of `exec --file` (split at the first colon; without
/// one, the file keeps its name in the working directory).
pub fn file_spec(spec: &OsString) -> Result<(PathBuf, PathBuf)> {
    let b = spec.as_bytes();
    let (local, remote) = match b.iter().position(|&c| c == b':') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b""[..]),
    };
    if local.is_empty() {
        bail!("--file {spec:?}: the local file before ':' is missing");
    }
    let local = PathBuf::from(OsStr::from_bytes(local));
    let remote = if remote.is_empty() {
        match local.file_name() {
            Some(n) => PathBuf::from(n),
            None => bail!("--file {spec:?}: name the file in the sprite (LOCAL:REMOTE)"),
        }
    } else {
        PathBuf::from(OsStr::from_bytes(remote))
    };
    Ok((local, remote))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Place {
        Place::parse(OsStr::new(s))
    }

    fn remote(sprite: Option<&str>, path: &str) -> Place {
        Place::Remote {
            sprite: sprite.map(String::from),
            path: PathBuf::from(path),
        }
    }

    #[test]
    fn places_parse() {
        assert_eq!(
            p("demo:/etc/hostname"),
            remote(Some("demo"), "/etc/hostname")
        );
        assert_eq!(p(":notes.txt"), remote(None, "notes.txt"));
        assert_eq!(p("demo:"), remote(Some("demo"), "."));
        assert_eq!(p("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(p("/tmp/a:b"), Place::Local("/tmp/a:b".into()));
        assert_eq!(p("Not_A_Sprite:x"), Place::Local("Not_A_Sprite:x".into()));
        assert_eq!(p("a.txt"), Place::Local("a.txt".into()));
        assert_eq!(p("-"), Place::Local("-".into()));
        let raw = Place::parse(OsStr::from_bytes(b"box:caf\xe9"));
        assert_eq!(
            raw,
            Place::Remote {
                sprite: Some("box".into()),
                path: PathBuf::from(OsStr::from_bytes(b"caf\xe9"))
            }
        );
    }

    #[test]
    fn file_specs_parse() {
        let f = |s: &str| file_spec(&OsString::from(s));
        assert_eq!(
            f("./run.sh:/tmp/run.sh").expect("ok"),
            (PathBuf::from("./run.sh"), PathBuf::from("/tmp/run.sh"))
        );
        assert_eq!(
            f("dir/data.csv").expect("ok"),
            (PathBuf::from("dir/data.csv"), PathBuf::from("data.csv"))
        );
        assert!(f(":x").is_err());
    }
}
