//! Loop devices attached in-process with ioctls (no `losetup`).
//!
//! Devices are configured with `LO_FLAGS_AUTOCLEAR`: once the caller has
//! mounted the device and dropped the handle, unmounting the filesystem frees
//! the device. Nothing has to remember which device backs which file.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StoreError};

const LOOP_CONTROL: &str = "/dev/loop-control";
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;
/// How often to retry when another process grabs the free device first.
const ATTACH_ATTEMPTS: u32 = 32;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>` (Linux 5.8+).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

impl LoopInfo64 {
    fn new(backing: &Path, flags: u32) -> Self {
        let mut name = [0u8; LO_NAME_SIZE];
        let bytes = backing.as_os_str().as_encoded_bytes();
        let n = bytes.len().min(LO_NAME_SIZE - 1);
        name[..n].copy_from_slice(&bytes[..n]);
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name: name,
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

/// An attached loop device. Dropping it closes our handle; with autoclear the
/// kernel detaches the device as soon as nothing (no mount) holds it.
#[derive(Debug)]
pub(crate) struct LoopDevice {
    path: PathBuf,
    _file: File,
}

impl LoopDevice {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn ioctl_result(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Attaches `backing` to a free loop device with autoclear set.
pub(crate) fn attach(backing: &Path, read_only: bool) -> Result<LoopDevice> {
    let backing_file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(libc::O_CLOEXEC)
        .open(backing)
        .ctx("open", backing)?;
    let flags = LO_FLAGS_AUTOCLEAR | if read_only { LO_FLAGS_READ_ONLY } else { 0 };
    on_free_device(backing, read_only, |path, device| {
        match configure(&device, &backing_file, backing, flags) {
            Ok(()) => {
                tracing::debug!(device = %path.display(), backing = %backing.display(), "loop attached");
                Ok(Some(LoopDevice {
                    path: path.to_path_buf(),
                    _file: device,
                }))
            }
            // Another process configured this device between GET_FREE and us.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(None),
            Err(e) => Err(StoreError::io("LOOP_CONFIGURE", path, e)),
        }
    })
}

/// Offers free loop devices (opened, read-write unless `read_only`) to
/// `take` until it takes one: `Ok(None)` when another process configured
/// the device first, which is then retried with the next.
fn on_free_device<T>(
    backing: &Path,
    read_only: bool,
    mut take: impl FnMut(&Path, File) -> Result<Option<T>>,
) -> Result<T> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(LOOP_CONTROL)
        .ctx("open", Path::new(LOOP_CONTROL))?;
    for _ in 0..ATTACH_ATTEMPTS {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and only returns a
        // device number; the fd is a valid open /dev/loop-control.
        let number = ioctl_result(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) })
            .ctx("LOOP_CTL_GET_FREE", Path::new(LOOP_CONTROL))?;
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = match OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            // The node may lag behind the allocation for an instant; retry.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(StoreError::io("open", &path, e)),
        };
        if let Some(taken) = take(&path, device)? {
            return Ok(taken);
        }
    }
    Err(StoreError::io(
        "attach loop device",
        backing,
        std::io::Error::new(
            std::io::ErrorKind::ResourceBusy,
            format!("no free loop device after {ATTACH_ATTEMPTS} attempts"),
        ),
    ))
}

/// Attaches `backing` (a file this process serves over FUSE) to a free
/// loop device and mounts it with `mount` (made for the device's path),
/// both in a child process (see `outside`): configuring a loop device syncs
/// its file, which only this process's FUSE server can answer. With
/// autoclear, the device goes with the mount, or with our handle if the
/// mount fails.
pub(crate) fn attach_and_mount_outside(
    backing: &Path,
    mount: impl Fn(&Path) -> Result<crate::outside::Call>,
    mount_error: impl Fn(&Path, nix::errno::Errno) -> StoreError,
) -> Result<()> {
    use crate::outside::{c_path, run_with, Call};
    // Not opened here: closing a served file sends its server a flush
    // that, were this process killed with it open, nobody could answer.
    let backing_c = c_path(backing).map_err(|e| StoreError::io("open", backing, e.into()))?;
    on_free_device(backing, false, |path, device| {
        // In the child the device is descriptor 1 and the file, opened
        // there, 2.
        let config = LoopConfig {
            fd: 2,
            block_size: 0,
            info: LoopInfo64::new(backing, LO_FLAGS_AUTOCLEAR),
            reserved: [0; 8],
        };
        let calls = [
            Call::Open {
                path: backing_c.clone(),
                flags: libc::O_RDWR | libc::O_CLOEXEC,
            },
            Call::Ioctl {
                fd: 1,
                request: LOOP_CONFIGURE,
                arg: (&config as *const LoopConfig).cast(),
            },
            mount(path)?,
        ];
        match run_with(&[device.as_raw_fd()], &calls) {
            Ok(()) => {
                tracing::debug!(device = %path.display(), backing = %backing.display(), "loop attached and mounted by a child");
                Ok(Some(()))
            }
            Err((0, e)) => Err(StoreError::io("open", backing, e.into())),
            // Another process configured this device between GET_FREE and us.
            Err((1, nix::errno::Errno::EBUSY)) => Ok(None),
            Err((1, e)) => Err(StoreError::io("LOOP_CONFIGURE", path, e.into())),
            Err((_, e)) => Err(mount_error(path, e)),
        }
    })
}

fn configure(
    device: &File,
    backing: &File,
    backing_path: &Path,
    flags: u32,
) -> std::io::Result<()> {
    let backing_fd = u32::try_from(backing.as_raw_fd())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    let config = LoopConfig {
        fd: backing_fd,
        block_size: 0,
        info: LoopInfo64::new(backing_path, flags),
        reserved: [0; 8],
    };
    // SAFETY: `config` is a fully initialised `struct loop_config` that lives
    // across the call; the kernel only reads it. `device` is an open loop device.
    let ret = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            LOOP_CONFIGURE,
            &config as *const LoopConfig,
        )
    };
    match ioctl_result(ret) {
        Ok(_) => Ok(()),
        // Kernels before 5.8 lack LOOP_CONFIGURE: the two-step way.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTTY)) => {
            configure_legacy(device, backing, backing_path, flags)
        }
        Err(e) => Err(e),
    }
}

fn configure_legacy(
    device: &File,
    backing: &File,
    backing_path: &Path,
    flags: u32,
) -> std::io::Result<()> {
    // SAFETY: LOOP_SET_FD takes the backing file descriptor by value; both fds are open.
    ioctl_result(unsafe { libc::ioctl(device.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) })?;
    let info = LoopInfo64::new(backing_path, flags);
    // SAFETY: `info` is a fully initialised `struct loop_info64` that outlives
    // the call; the kernel only reads it.
    let ret = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            LOOP_SET_STATUS64,
            &info as *const LoopInfo64,
        )
    };
    if let Err(e) = ioctl_result(ret) {
        // SAFETY: LOOP_CLR_FD takes no argument; undoes our LOOP_SET_FD.
        unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD) };
        return Err(e);
    }
    Ok(())
}

/// How long a just-unmounted device may take to clear itself (autoclear runs
/// after the last reference drops, not inside umount: a copy of the mount in
/// a namespace another process is setting up holds it meanwhile).
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Fails with `Busy` if `file` (or a file under it) is still attached to a
/// loop device after a short wait. Mounting the same image through a second
/// device while the first is alive (e.g. held by a container's mount
/// namespace) would run two filesystem instances on one disk and corrupt
/// it; reading it meanwhile would miss the last writes.
pub(crate) fn ensure_not_attached(file: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    loop {
        let attached = devices_backed_under(file);
        if attached.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(file = %file.display(), devices = ?attached, "image still attached");
            return Err(StoreError::Busy(file.to_path_buf()));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Whether the filesystem mounted at `mnt` lives on a loop device backed by
/// `file` as it is now: not by a file since replaced by a rename or removed
/// (sysfs names that one with ` (deleted)` after its old path), nor by
/// another file, nor on no loop device at all. `file` is compared as given:
/// a path under the store's data dir, which is canonical (as the kernel
/// names backing files).
pub(crate) fn mount_is_backed_by(mnt: &Path, file: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mnt).ctx("stat", mnt)?.dev();
    let device = PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    ));
    match backing_file(&device) {
        Ok(backing) => Ok(backing == file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("read the backing file of", &device, e)),
    }
}

/// The file behind loop device `device` (its sysfs directory).
fn backing_file(device: &Path) -> std::io::Result<PathBuf> {
    let text = std::fs::read_to_string(device.join("loop/backing_file"))?;
    Ok(PathBuf::from(text.trim_end()))
}

/// Loop devices whose backing file lies at or under `dir` (from sysfs), as
/// (device, backing file) pairs, for checks and cleanup.
///
/// Every mount asks this. A host keeps each loop device it ever made
/// (hundreds where hundreds of sprites ran), most of them unbound: reading
/// each one's `backing_file` took ~2 ms per mount with 500. The bound ones
/// are those of non-zero size, all listed in one read of `/proc/partitions`
/// (a device clears its backing file before its size as it is released, so
/// none holding a file is left out); sysfs is read whole only where that
/// list cannot be had.
pub fn devices_backed_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let names = match std::fs::read_to_string("/proc/partitions") {
        Ok(text) => sized_loop_devices(&text),
        Err(_) => every_loop_device(),
    };
    let mut found = Vec::new();
    for name in names {
        let Ok(backing) = backing_file(&Path::new("/sys/block").join(&name)) else {
            continue;
        };
        if backing.starts_with(dir) {
            found.push((PathBuf::from(format!("/dev/{name}")), backing));
        }
    }
    found
}

/// The loop devices of non-zero size in `/proc/partitions`' text
/// (`major minor #blocks name` under a header).
fn sized_loop_devices(partitions: &str) -> Vec<String> {
    partitions
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let blocks = fields.nth(2)?;
            let name = fields.next()?;
            (name.starts_with("loop") && blocks != "0").then(|| name.to_string())
        })
        .collect()
}

/// Every loop device sysfs lists, bound or not.
fn every_loop_device() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| name.starts_with("loop"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_loop_devices_are_read_from_proc_partitions() {
        let text = "major minor  #blocks  name\n\n   7        0  268435456 loop0\n   7        1          0 loop1\n 259        0   52428800 nvme0n1\n   7       12    1048576 loop12\n";
        assert_eq!(sized_loop_devices(text), ["loop0", "loop12"]);
        assert!(sized_loop_devices("").is_empty());
    }

    /// The shortcut finds what reading every device's backing file finds:
    /// a device attached here (among however many unbound ones the host
    /// keeps), and no longer once it is released. (Other tests attach and
    /// release devices meanwhile, so only ours is compared.)
    #[test]
    fn an_attached_image_is_found_and_a_released_one_is_not() {
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(8 << 20))
            .expect("image");
        let every_bound = || -> Vec<String> {
            let mut names: Vec<String> = every_loop_device()
                .into_iter()
                .filter(|n| {
                    std::fs::read_to_string(
                        Path::new("/sys/block").join(n).join("loop/backing_file"),
                    )
                    .is_ok()
                })
                .collect();
            names.sort();
            names
        };
        let sized = || {
            let text = std::fs::read_to_string("/proc/partitions").expect("/proc/partitions");
            let mut names = sized_loop_devices(&text);
            names.sort();
            names
        };

        let device = attach(&image, false).expect("attach");
        let found = devices_backed_under(dir.path());
        assert_eq!(found, [(device.path().to_path_buf(), image.clone())]);
        let name = device
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        assert!(sized().contains(&name), "{name} not in /proc/partitions");
        assert!(every_bound().contains(&name));

        drop(device);
        // Autoclear releases it once our handle is gone.
        ensure_not_attached(&image).expect("released");
        assert!(devices_backed_under(dir.path()).is_empty());
    }
}
