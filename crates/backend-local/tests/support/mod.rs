//! Helpers shared by this crate's integration tests.

// Each test binary uses some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use syncengine_backend_local::LocalClient;
use syncengine_core::{Entry, RelPath, StorageClientExt};

/// `s` as a path relative to a root; panics on an invalid one.
pub fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The listed entry of `path` on `client`, as the engine has it when it plans a copy.
pub async fn listed(client: &LocalClient, path: &str) -> Entry {
    client
        .list_all(None)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.path.as_str() == path)
        .unwrap_or_else(|| panic!("{path} is not listed"))
}

/// Mounts with `mount ARGS… target`; false (and says why) where this process may not mount
/// (an unprivileged user, a container without CAP_SYS_ADMIN): the test then checks nothing.
pub fn mount(args: &[&str], target: &Path) -> bool {
    let out = Command::new("mount")
        .args(args)
        .arg(target)
        .output()
        .expect("run mount");
    if !out.status.success() {
        eprintln!(
            "skipped: cannot mount here ({}); run as root with CAP_SYS_ADMIN",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.success()
}

/// Unmounts on drop, also when an assertion fails; lazily (`umount -l`) where the mount is
/// still busy (a client's blocking thread not yet done with it), so no test leaves a mount.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let done = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// The names in `dir`, sorted (UTF-8 names only).
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every file below `dir` (none where it cannot be read).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in read.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Mounts at `at` a new ext4 filesystem of `size` (as `truncate -s` takes it) made in the
/// file `image` with `mkfs.ext4` and `options`; unmounted when the guard drops. `None` (and
/// says why) where this process cannot make or mount it.
pub fn new_ext4(image: &Path, size: &str, options: &[&str], at: &Path) -> Option<Mounted> {
    let made = Command::new("truncate")
        .args(["-s", size])
        .arg(image)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .args(options)
            .arg(image)
            .output()
            .is_ok_and(|o| o.status.success());
    if !made {
        eprintln!("skipped: no mkfs.ext4 here");
        return None;
    }
    std::fs::create_dir_all(at).ok()?;
    if !mount(&["-o", "loop", image.to_str()?], at) {
        return None;
    }
    Some(Mounted(at.to_path_buf()))
}

/// [`new_ext4`] with 128-byte inodes, so it keeps whole seconds (as mke2fs once made small
/// filesystems).
pub fn whole_second_ext4(image: &Path, size: &str, at: &Path) -> Option<Mounted> {
    new_ext4(image, size, &["-I", "128"], at)
}
