//! The FUSE side: a directory holding one regular file, `volume.img`, whose
//! reads and writes go to the [`Volume`], mounted directly with mount(2)
//! (root needs no fusermount).
//!
//! Opens get `FOPEN_DIRECT_IO`: the loop device has a page cache of its own,
//! so caching the FUSE file too would hold every block twice (three times
//! with the backing file's cache). The loop driver's plain reads and writes
//! pass straight through to us.
//!
//! The threads serving requests touch only the backing and state files and
//! the store; never the loop device or the filesystem on it, which would
//! deadlock. They mark themselves PR_SET_IO_FLUSHER, as a process serving
//! a block device's I/O should: their allocations must not wait for
//! writeback that waits for them.

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, Session, SessionACL, WriteFlags,
};
use nix::mount::{MntFlags, MsFlags};

use crate::error::{ColdError, Result};
use crate::lazy::volume::Volume;

/// The one file in the mount.
pub(crate) const FILE_NAME: &str = "volume.img";
const FILE_INO: INodeNo = INodeNo(2);
/// Nothing about the file ever changes but its bytes.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Threads serving requests: a fetch on demand blocks its thread.
const FUSE_THREADS: usize = 4;
/// The largest read or write the kernel sends in one request (its own
/// default cap, 256 pages); one chunk.
const MAX_IO: u32 = 1 << 20;
/// PR_SET_IO_FLUSHER from <linux/prctl.h> (Linux 5.6).
const PR_SET_IO_FLUSHER: libc::c_int = 57;

thread_local! {
    static IO_FLUSHER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one that serves block I/O (once).
/// See [`super::stall_syncs`].
pub(crate) static STALL_SYNCS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(crate) fn mark_io_flusher() {
    IO_FLUSHER.with(|done| {
        if done.get() {
            return;
        }
        done.set(true);
        // SAFETY: prctl with integer arguments only; no memory is passed.
        let ret = unsafe { libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) };
        if ret != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "PR_SET_IO_FLUSHER");
        }
    });
}

struct VolumeFs {
    vol: Arc<Volume>,
    file: FileAttr,
    root: FileAttr,
}

impl VolumeFs {
    fn new(vol: Arc<Volume>) -> VolumeFs {
        let now = SystemTime::now();
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let attr = |ino, size: u64, kind, perm, nlink| FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        VolumeFs {
            file: attr(FILE_INO, vol.size(), FileType::RegularFile, 0o600, 1),
            root: attr(INodeNo::ROOT, 0, FileType::Directory, 0o700, 2),
            vol,
        }
    }

    fn attr(&self, ino: INodeNo) -> Option<&FileAttr> {
        if ino == INodeNo::ROOT {
            Some(&self.root)
        } else if ino == FILE_INO {
            Some(&self.file)
        } else {
            None
        }
    }

    fn sync(&self, reply: ReplyEmpty) {
        mark_io_flusher();
        if STALL_SYNCS.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!("failpoint reached; a flush of a self-filling volume waits for ever");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        match self.vol.commit() {
            Ok(()) => reply.ok(),
            Err(e) => {
                tracing::error!(error = %e, "syncing a lazily rebuilt image");
                reply.error(Errno::EIO);
            }
        }
    }
}

impl Filesystem for VolumeFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_IO);
        // Lets a loop device in direct-I/O mode keep several requests in flight.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ASYNC_DIO);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == FILE_NAME {
            reply.entry(&TTL, &self.file, Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let Some(a) = self.attr(ino) else {
            return reply.error(Errno::ENOENT);
        };
        // The image has the manifest's size for good; the rest is ignored.
        if size.is_some_and(|s| s != a.size) {
            return reply.error(Errno::EPERM);
        }
        reply.attr(&TTL, a);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == FILE_INO {
            reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
            );
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        mark_io_flusher();
        if ino != FILE_INO {
            return reply.error(Errno::EISDIR);
        }
        match self.vol.read(offset, size) {
            Ok(data) => reply.data(&data),
            // The failure is recorded for wait_complete; the sprite gets
            // an error, never zeros in place of its data.
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        mark_io_flusher();
        if ino != FILE_INO {
            return reply.error(Errno::EISDIR);
        }
        let Ok(n) = u32::try_from(data.len()) else {
            return reply.error(Errno::EINVAL);
        };
        match self.vol.write(offset, data) {
            Ok(()) => reply.written(n),
            Err(e) => reply.error(Errno::from_i32(e.errno())),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.sync(reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (FILE_INO, FileType::RegularFile, FILE_NAME),
        ];
        for (k, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, k as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = self.vol.size().div_ceil(4096);
        reply.statfs(blocks, 0, 0, 2, 0, 4096, 255, 4096);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        mark_io_flusher();
        if ino != FILE_INO {
            return reply.error(Errno::EISDIR);
        }
        match self.vol.fallocate(offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(Errno::from_i32(e.errno())),
        }
    }
}

/// A mounted [`VolumeFs`] and the thread serving it.
pub(crate) struct FuseMount {
    mountpoint: PathBuf,
    /// In a mutex only so that the mount can be shared between threads.
    ended: std::sync::Mutex<mpsc::Receiver<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Mounts the volume's file at `mountpoint` (created if needed).
pub(crate) fn mount(vol: Arc<Volume>, mountpoint: &Path) -> Result<FuseMount> {
    clear_dead_mount(mountpoint);
    std::fs::create_dir_all(mountpoint).map_err(|e| ColdError::io("mkdir", mountpoint, e))?;
    let dev_path = Path::new("/dev/fuse");
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dev_path)
        .map_err(|e| ColdError::io("open", dev_path, e))?;
    let data = format!(
        "fd={},rootmode=40000,user_id={},group_id={},default_permissions",
        dev.as_raw_fd(),
        nix::unistd::geteuid(),
        nix::unistd::getegid(),
    );
    nix::mount::mount(
        Some("sprite-lazy"),
        mountpoint,
        Some("fuse"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|e| ColdError::io("mount fuse", mountpoint, e.into()))?;
    let mut config = fuser::Config::default();
    config.n_threads = Some(FUSE_THREADS);
    config.clone_fd = true;
    let session = match Session::from_fd(
        VolumeFs::new(vol),
        OwnedFd::from(dev),
        SessionACL::Owner,
        config,
    ) {
        Ok(s) => s,
        Err(e) => {
            let _ = nix::mount::umount2(mountpoint, MntFlags::MNT_FORCE | MntFlags::MNT_DETACH);
            return Err(ColdError::io("fuse handshake", mountpoint, e));
        }
    };
    let (tx, ended) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sprite-lazy-fuse".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                tracing::warn!(error = %e, "FUSE session ended with an error");
            }
            let _ = tx.send(());
        });
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            let _ = nix::mount::umount2(mountpoint, MntFlags::MNT_FORCE | MntFlags::MNT_DETACH);
            return Err(ColdError::io("spawn", mountpoint, e));
        }
    };
    Ok(FuseMount {
        mountpoint: mountpoint.to_path_buf(),
        ended: std::sync::Mutex::new(ended),
        thread: Some(thread),
    })
}

/// A FUSE mount whose daemon died answers ENOTCONN: detach it so the
/// mountpoint can be used again.
fn clear_dead_mount(mountpoint: &Path) {
    if let Err(e) = std::fs::metadata(mountpoint) {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            tracing::warn!(mountpoint = %mountpoint.display(), "detaching a dead FUSE mount");
            let _ = nix::mount::umount2(mountpoint, MntFlags::MNT_DETACH);
        }
    }
}

impl FuseMount {
    /// Unmounts. The file must no longer be in use (the loop device
    /// detached); a device that clears itself just after being detached is
    /// waited for up to `grace`, then the connection is aborted: requests
    /// still pending or sent later fail instead of hanging.
    pub(crate) fn unmount(mut self, grace: Duration) -> Result<()> {
        let deadline = Instant::now() + grace;
        loop {
            match nix::mount::umount2(&self.mountpoint, MntFlags::empty()) {
                Ok(()) => break,
                Err(nix::errno::Errno::EBUSY) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(nix::errno::Errno::EBUSY) => {
                    tracing::warn!(mountpoint = %self.mountpoint.display(),
                        "lazy image still in use at shutdown; aborting its FUSE connection");
                    self.force();
                    break;
                }
                // Not mounted (any more).
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => break,
                Err(e) => {
                    return Err(ColdError::io("umount", &self.mountpoint, e.into()));
                }
            }
        }
        self.join(grace);
        Ok(())
    }

    /// Aborts the connection (MNT_FORCE makes the kernel's FUSE abort it)
    /// and detaches the mount.
    fn force(&self) {
        let _ = nix::mount::umount2(&self.mountpoint, MntFlags::MNT_FORCE | MntFlags::MNT_DETACH);
    }

    /// Waits for the serving thread to end, at most `wait`.
    fn join(&mut self, wait: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        match ended.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(mountpoint = %self.mountpoint.display(),
                    "FUSE session did not end; leaving its thread behind");
            }
        }
    }
}

impl Drop for FuseMount {
    /// Without an orderly unmount: abort, as a crash of the daemon would.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.force();
            self.join(Duration::from_secs(10));
        }
    }
}
