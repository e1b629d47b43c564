//! Choosing between inotify and polling.
//!
//! inotify only sees writes made through the local kernel. On NFS, SMB, a FUSE mount or a
//! cluster filesystem the other master's writes raise no event at all, so `watch.mode: auto`
//! reads the filesystem type (`statfs` f_type) of JENKINS_HOME, and of `jobs/` when that is a
//! different mount or a symlink elsewhere, and polls when either is remote or user-space.

use std::fmt;
use std::path::Path;

use nix::sys::statfs::statfs;
use nix::sys::statvfs::statvfs;

use super::driver::INOTIFY_SAFETY_RESCAN;
use super::WatchError;
use super::WatchMode;

/// The mode the watcher actually runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effective {
    Inotify,
    Poll,
}

impl fmt::Display for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effective::Inotify => "inotify",
            Effective::Poll => "poll",
        })
    }
}

/// Filesystems on which another machine (or a user-space daemon) can change files without the
/// local kernel's inotify noticing: f_type magic → name.
const REMOTE_FILESYSTEMS: &[(u32, &str)] = &[
    (0x0000_6969, "NFS"),
    (0x0000_517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x6573_5546, "FUSE"),
    (0x0102_1997, "9p"),
    (0x00C3_6400, "Ceph"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "kAFS"),
    (0x0BD0_0BD0, "Lustre"),
    (0x4750_4653, "GPFS"),
    (0x7461_636F, "OCFS2"),
    (0x0116_1970, "GFS2"),
    (0x7375_7245, "Coda"),
    (0x0000_564C, "NCP"),
    (0x2003_0528, "OrangeFS"),
    (0x1983_0326, "BeeGFS"),
    (0xAAD7_AAEA, "PanFS"),
    (0x786F_4256, "VirtualBox shared folder"),
    (0x2468_2468, "VMware shared folder"),
];

/// The name of a remote or user-space filesystem, by its `statfs` f_type; `None` for local ones.
pub fn remote_filesystem(f_type: u32) -> Option<&'static str> {
    REMOTE_FILESYSTEMS
        .iter()
        .find(|(magic, _)| *magic == f_type)
        .map(|(_, name)| *name)
}

/// The f_type of the filesystem holding `path`.
fn f_type(path: &Path) -> Result<u32, WatchError> {
    let st = statfs(path).map_err(|source| WatchError::Statfs {
        path: path.to_path_buf(),
        source,
    })?;
    // f_type is a signed or unsigned long or int depending on the platform; the magic numbers
    // are 32-bit, so truncating is exact (and undoes any sign extension).
    #[allow(clippy::unnecessary_cast)]
    Ok(st.filesystem_type().0 as u32)
}

/// Which filesystem a path is on, beyond its device number: its type and its id (`statfs` f_type
/// and f_fsid). The same storage mounted again keeps both, although it may get a new device
/// number (it does while files of the old mount are still open, as a JVM keeps its logs open);
/// the bare mount point left by an unmount is on the parent filesystem, of another type or id.
/// Some filesystems (FUSE, and NFS on some kernels) report an f_fsid of 0: for them the type
/// alone tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsIdentity {
    pub f_type: u32,
    pub fsid: u64,
}

impl fmt::Display for FsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match remote_filesystem(self.f_type) {
            Some(name) => write!(
                f,
                "{name} (f_type {:#x}, fsid {:#x})",
                self.f_type, self.fsid
            ),
            None => write!(f, "f_type {:#x}, fsid {:#x}", self.f_type, self.fsid),
        }
    }
}

/// The [`FsIdentity`] of the filesystem holding `path`.
pub fn fs_identity(path: &Path) -> Result<FsIdentity, WatchError> {
    let vfs = statvfs(path).map_err(|source| WatchError::Statfs {
        path: path.to_path_buf(),
        source,
    })?;
    // c_ulong on every Linux target; u64 holds it.
    #[allow(clippy::unnecessary_cast)]
    let fsid = vfs.filesystem_id() as u64;
    Ok(FsIdentity {
        f_type: f_type(path)?,
        fsid,
    })
}

/// Decides the effective mode for `home` and says why, in one sentence for `status`:
/// "poll: /var/lib/jenkins is on NFS (f_type 0x6969); inotify would miss the other master's
/// writes".
pub fn detect(home: &Path, configured: WatchMode) -> Result<(Effective, String), WatchError> {
    if !home.is_dir() {
        return Err(WatchError::NotADirectory {
            path: home.to_path_buf(),
        });
    }
    let mut checked = vec![(home.to_path_buf(), f_type(home)?)];
    let jobs = home.join("jobs");
    if jobs.is_dir() {
        let t = f_type(&jobs)?;
        if t != checked[0].1 {
            checked.push((jobs, t));
        }
    }
    let remote = checked
        .iter()
        .find_map(|(path, t)| remote_filesystem(*t).map(|name| (path, *t, name)));
    Ok(match (configured, remote) {
        (WatchMode::Poll, _) => (Effective::Poll, "poll: set by watch.mode".to_string()),
        (WatchMode::Inotify, None) => {
            (Effective::Inotify, "inotify: set by watch.mode".to_string())
        }
        (WatchMode::Inotify, Some((path, t, name))) => (
            Effective::Inotify,
            format!(
                "inotify: set by watch.mode, although {} is on {name} (f_type {t:#x}); \
                 changes made by the other master raise no event and are seen only by the \
                 safety rescan every {} min",
                path.display(),
                INOTIFY_SAFETY_RESCAN.as_secs() / 60
            ),
        ),
        (WatchMode::Auto, Some((path, t, name))) => (
            Effective::Poll,
            format!(
                "poll: {} is on {name} (f_type {t:#x}); inotify would miss the other \
                 master's writes",
                path.display()
            ),
        ),
        (WatchMode::Auto, None) => (
            Effective::Inotify,
            format!(
                "inotify: {} is on a local filesystem (f_type {:#x})",
                home.display(),
                checked[0].1
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_magics() {
        assert_eq!(remote_filesystem(0x6969), Some("NFS"));
        assert_eq!(remote_filesystem(0xFF53_4D42), Some("CIFS"));
        assert_eq!(remote_filesystem(0x6573_5546), Some("FUSE"));
        assert_eq!(remote_filesystem(0x0102_1997), Some("9p"));
        // ext4, xfs, btrfs, tmpfs, overlayfs, zfs are local.
        for local in [
            0xEF53,
            0x5846_5342,
            0x9123_683E,
            0x0102_1994,
            0x794C_7630,
            0x2FC1_2FC1,
        ] {
            assert_eq!(remote_filesystem(local), None, "{local:#x}");
        }
    }

    #[test]
    fn sign_extended_magic_is_recognised() {
        // A 32-bit signed f_type holding CIFS's magic, widened to 64 bits, truncates back.
        let widened = (0xFF53_4D42u32 as i32) as i64;
        assert_eq!(remote_filesystem(widened as u32), Some("CIFS"));
    }

    #[test]
    fn configured_modes_win_and_auto_reads_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let (mode, reason) = detect(dir.path(), WatchMode::Poll).unwrap();
        assert_eq!(mode, Effective::Poll);
        assert_eq!(reason, "poll: set by watch.mode");
        let (mode, _) = detect(dir.path(), WatchMode::Inotify).unwrap();
        assert_eq!(mode, Effective::Inotify);
        let (mode, reason) = detect(dir.path(), WatchMode::Auto).unwrap();
        // The temp dir is on whatever filesystem this machine has; the sentence names it.
        assert!(reason.starts_with(&format!("{mode}: ")), "{reason}");
        assert!(reason.contains("f_type 0x"), "{reason}");
    }

    #[test]
    fn a_missing_home_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = detect(&dir.path().join("nope"), WatchMode::Auto).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
    }
}
