//! [`HungMount`]: a filesystem that never answers, for tests of what a hung disk or mount (a
//! frozen network mount, a dead NFS server, which no timeout ends) does to a run.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A FUSE filesystem mounted at a folder with no server behind it: every call that reaches
/// it (a `stat`, an `open`, a listing of the folder) waits until [`HungMount::release`]
/// closes the device, when the kernel fails them all, and unmounts it (also when dropped).
///
/// Mounting needs `CAP_SYS_ADMIN` and `/dev/fuse` (no libfuse): where either is missing,
/// [`HungMount::mount`] says so on stderr and gives `None`, and the test checks nothing.
///
/// ```no_run
/// use syncengine_core::testing::HungMount;
///
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir(dir.path().join("m")).unwrap();
/// let Some(mut hung) = HungMount::mount(&dir.path().join("m")) else { return };
/// // std::fs::metadata(dir.path().join("m/x")) would wait here, until:
/// hung.release();
/// ```
#[derive(Debug)]
pub struct HungMount {
    device: Option<File>,
    at: PathBuf,
}

impl HungMount {
    /// Mounts a FUSE filesystem that never answers at the folder `at`; `None` (said on
    /// stderr) where this process may not.
    pub fn mount(at: &Path) -> Option<HungMount> {
        let device = match OpenOptions::new().read(true).write(true).open("/dev/fuse") {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipped: cannot open /dev/fuse ({e})");
                return None;
            }
        };
        let options = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            device.as_raw_fd()
        );
        let Ok(options) = std::ffi::CString::new(options) else {
            return None;
        };
        if let Err(e) = rustix::mount::mount(
            "syncengine-hung",
            at,
            "fuse",
            rustix::mount::MountFlags::empty(),
            options.as_c_str(),
        ) {
            eprintln!("skipped: cannot mount a FUSE filesystem here ({e}); run as root");
            return None;
        }
        Some(HungMount {
            device: Some(device),
            at: at.to_owned(),
        })
    }

    /// Closes the device (the kernel fails every call waiting on the mount) and unmounts it
    /// (lazily: a call still on its way lets go first).
    pub fn release(&mut self) {
        if self.device.take().is_some() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.at)
                .status();
        }
    }
}

impl Drop for HungMount {
    fn drop(&mut self) {
        self.release();
    }
}
