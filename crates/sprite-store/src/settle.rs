//! Checkpoint images settled: their journal replayed once, ahead of use.
//!
//! A checkpoint is a crash-consistent clone of a mounted volume (see
//! `checkpoint`): its journal may still hold the last transactions, and
//! whatever mounts it read-write replays them first. That replay is a
//! flush of the image, ~5 ms of every restore's and fork's mount here,
//! paid on the path of the request. [`Store::settle_checkpoint`] pays it
//! once, in the background: the kernel replays the journal into a clone
//! of the image (mounted read-only, never attached anywhere: a filesystem
//! context made and closed, `fsopen`), the clone is made durable and takes
//! the image's place in one `RENAME_EXCHANGE`. The result is the
//! filesystem the next mount would have made of the image: the same
//! files, a clean journal.
//!
//! ```text
//! <pool>/sprites/<id>/checkpoints/.<ck>.settle   the clone being replayed (removed by recover)
//! ```
//!
//! A crash at any point leaves the checkpoint as it was (the exchange is
//! atomic, and the clone is durable before it) and a dot-file that
//! `recover` removes; a closed filesystem context leaves no mount behind.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use nix::fcntl::{renameat2, RenameFlags};
use rustix::mount::{fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsopen, FsOpenFlags};

use crate::error::{IoContext, Result, StoreError};
use crate::store::Store;
use crate::{loopdev, reflink, validate_name};

/// What [`Store::settle_checkpoint`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Its journal needed nothing (settled before, or taken unmounted).
    Clean,
    /// Its journal was replayed and the image replaced.
    Replayed,
    /// Not there any more, or replaced by another file meanwhile (deleted,
    /// released to the object store and fetched back): left alone.
    Gone,
}

/// Where the ext4 superblock starts, and the fields read from it.
const SUPERBLOCK: u64 = 1024;
const MAGIC_AT: usize = 0x38;
const INCOMPAT_AT: usize = 0x60;
const EXT4_MAGIC: u16 = 0xEF53;
/// `EXT4_FEATURE_INCOMPAT_RECOVER`: the journal holds transactions that a
/// mount must replay.
const INCOMPAT_RECOVER: u32 = 0x0004;

/// Whether the ext4 image in `file` has a journal to replay; `false` for
/// anything that is not ext4.
pub(crate) fn needs_recovery(file: &File) -> std::io::Result<bool> {
    let mut sb = [0u8; 0x100];
    let n = file.read_at(&mut sb, SUPERBLOCK)?;
    if n < INCOMPAT_AT + 4 {
        return Ok(false);
    }
    let magic = u16::from_le_bytes([sb[MAGIC_AT], sb[MAGIC_AT + 1]]);
    let incompat = u32::from_le_bytes([
        sb[INCOMPAT_AT],
        sb[INCOMPAT_AT + 1],
        sb[INCOMPAT_AT + 2],
        sb[INCOMPAT_AT + 3],
    ]);
    Ok(magic == EXT4_MAGIC && incompat & INCOMPAT_RECOVER != 0)
}

impl Store {
    /// Replays the journal of checkpoint `checkpoint` of sprite `id` once,
    /// so that its restores and forks mount a clean filesystem. The caller
    /// keeps deletes of the checkpoint out meanwhile (the daemon holds the
    /// sprite's views lock); a checkpoint replaced by another file under
    /// it is left alone ([`Settled::Gone`]).
    pub fn settle_checkpoint(&self, id: &str, checkpoint: &str) -> Result<Settled> {
        validate_name(id)?;
        validate_name(checkpoint)?;
        let image = self.layout.checkpoint_image(id, checkpoint);
        let file = match File::open(&image) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settled::Gone),
            Err(e) => return Err(StoreError::io("open", &image, e)),
        };
        if !needs_recovery(&file).ctx("read the superblock of", &image)? {
            return Ok(Settled::Clean);
        }
        let taken = file.metadata().ctx("stat", &image)?;
        let tmp = self
            .layout
            .checkpoints_dir(id)
            .join(format!(".{checkpoint}.settle"));
        let _ = std::fs::remove_file(&tmp);
        let result = (|| {
            let clone = reflink::new_file(&tmp)?;
            reflink::clone_file(&file, &clone).ctx("FICLONE", &tmp)?;
            replay_journal(&tmp)?;
            if needs_recovery(&clone).ctx("read the superblock of", &tmp)? {
                return Err(StoreError::io(
                    "replay the journal of",
                    &tmp,
                    std::io::Error::other("the kernel left the journal unreplayed"),
                ));
            }
            clone.sync_all().ctx("fsync", &tmp)?;
            // Still the file cloned above?
            match std::fs::metadata(&image) {
                Ok(m) if (m.dev(), m.ino()) == (taken.dev(), taken.ino()) => {}
                Ok(_) => return Ok(Settled::Gone),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settled::Gone),
                Err(e) => return Err(StoreError::io("stat", &image, e)),
            }
            match renameat2(None, &tmp, None, &image, RenameFlags::RENAME_EXCHANGE) {
                Ok(()) => {}
                Err(nix::errno::Errno::ENOENT) => return Ok(Settled::Gone),
                Err(e) => return Err(StoreError::io("exchange", &image, e.into())),
            }
            crate::checkpoint::sync_parent(&image)?;
            Ok(Settled::Replayed)
        })();
        // The clone that failed, or the image it replaced.
        let _ = std::fs::remove_file(&tmp);
        result
    }
}

/// Has the kernel replay the journal of the ext4 image `path` into it: a
/// read-only ext4 superblock made on a loop device of it and let go
/// again, never mounted anywhere, so that nothing is left to unmount if
/// this process dies meanwhile (closing the context releases it).
fn replay_journal(path: &Path) -> Result<()> {
    let device = loopdev::attach(path, false)?;
    let fail = |op: &'static str| move |e: rustix::io::Errno| StoreError::io(op, path, e.into());
    let fs = fsopen("ext4", FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail("fsopen ext4 for"))?;
    let made = (|| {
        fsconfig_set_string(fs.as_fd(), "source", device.path())
            .map_err(fail("fsconfig source"))?;
        fsconfig_set_flag(fs.as_fd(), "ro").map_err(fail("fsconfig ro"))?;
        fsconfig_create(fs.as_fd()).map_err(fail("mount (replay the journal of)"))
    })();
    if made.is_err() {
        // The kernel's own words on why it refused, one message per read.
        let mut log = File::from(fs);
        let mut why = String::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = log.read(&mut buf) {
            if n == 0 {
                break;
            }
            why.push_str(String::from_utf8_lossy(&buf[..n]).trim_end());
            why.push_str("; ");
        }
        if !why.is_empty() {
            tracing::warn!(image = %path.display(), kernel = %why, "the journal could not be replayed");
        }
    } else {
        // The superblock goes with the context.
        drop(fs);
    }
    // Then the device, with autoclear.
    drop(device);
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_recover_flag_of_ext4_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("img");
        let mut sb = vec![0u8; 4096];
        sb[1024 + MAGIC_AT..1024 + MAGIC_AT + 2].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
        sb[1024 + INCOMPAT_AT..1024 + INCOMPAT_AT + 4].copy_from_slice(&0x2c6u32.to_le_bytes());
        std::fs::write(&path, &sb).expect("write");
        assert!(needs_recovery(&File::open(&path).expect("open")).expect("read"));
        sb[1024 + INCOMPAT_AT..1024 + INCOMPAT_AT + 4].copy_from_slice(&0x2c2u32.to_le_bytes());
        std::fs::write(&path, &sb).expect("write");
        assert!(!needs_recovery(&File::open(&path).expect("open")).expect("read"));
        // Not ext4 (the flag's bit set where ext4 has it): nothing to do.
        sb[1024 + MAGIC_AT..1024 + MAGIC_AT + 2].copy_from_slice(&0x1234u16.to_le_bytes());
        sb[1024 + INCOMPAT_AT..1024 + INCOMPAT_AT + 4].copy_from_slice(&0x2c6u32.to_le_bytes());
        std::fs::write(&path, &sb).expect("write");
        assert!(!needs_recovery(&File::open(&path).expect("open")).expect("read"));
        // Too short to hold a superblock.
        std::fs::write(&path, b"short").expect("write");
        assert!(!needs_recovery(&File::open(&path).expect("open")).expect("read"));
    }
}
