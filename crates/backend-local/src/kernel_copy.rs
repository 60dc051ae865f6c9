//! Copies a file's bytes inside the kernel: a reflink (`FICLONE`) where the filesystem shares
//! blocks between files (btrfs, XFS), else `copy_file_range(2)` (no bytes through user space;
//! ext4, tmpfs, and across filesystems of one kind on current kernels), else `pread`/`pwrite`.
//! Holes of a sparse source stay holes.
//!
//! What does not work between two filesystems is remembered per source device
//! ([`KernelCopy`]), so a tree of small files does not pay a failing syscall per file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;

/// Bytes asked of one `copy_file_range` call (and copied between two looks at the
/// cancellation flag).
const RANGE_CHUNK: u64 = 8 << 20;
/// Buffer of the `pread`/`pwrite` fallback.
const BUFFER: u64 = 1 << 20;

/// A way of copying found not to work for a source device.
const NO_CLONE: u8 = 1;
const NO_RANGE: u8 = 2;

/// How many source devices [`KernelCopy`] remembers before it forgets them all.
const DEVICES_KEPT: usize = 64;

/// What each source device (`st_dev`) was found not to support, as a destination client saw
/// it. Forgetting costs a failing syscall per file, nothing else.
#[derive(Debug, Default)]
pub(crate) struct KernelCopy {
    missing: RwLock<Vec<(u64, u8)>>,
}

impl KernelCopy {
    fn lacks(&self, dev: u64, what: u8) -> bool {
        // Read far more often than written (once per device and way): readers never wait.
        self.missing
            .read()
            .is_ok_and(|m| m.iter().any(|&(d, flags)| d == dev && flags & what != 0))
    }

    fn note_missing(&self, dev: u64, what: u8) {
        let Ok(mut m) = self.missing.write() else {
            return;
        };
        if let Some(slot) = m.iter_mut().find(|(d, _)| *d == dev) {
            slot.1 |= what;
            return;
        }
        if m.len() >= DEVICES_KEPT {
            m.clear();
        }
        m.push((dev, what));
    }
}

/// The error of a copy given up because its future was dropped (the run was cancelled).
pub(crate) fn abandoned() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "the copy was cancelled")
}

/// Copies the first `len` bytes of `src` (on device `dev`, `blocks` 512-byte blocks
/// allocated) into the empty file `dst`, and returns how many bytes the source had: `len`,
/// or fewer when it ended early (it shrank meanwhile; the caller checks). `dst` ends up
/// exactly that long. `abandon` is looked at between chunks: once it is set, the copy stops
/// with [`abandoned`].
pub(crate) fn copy_bytes(
    src: &File,
    dst: &File,
    len: u64,
    dev: u64,
    blocks: u64,
    memo: &KernelCopy,
    abandon: &AtomicBool,
) -> io::Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    if !memo.lacks(dev, NO_CLONE) {
        // The whole file, sharing its blocks: instant, and no space used until either changes.
        match rustix::fs::ioctl_ficlone(dst, src) {
            Ok(()) => {
                // A clone takes the source as it is now, which may be longer than `len`.
                let now = dst.metadata()?.len();
                if now > len {
                    dst.set_len(len)?;
                }
                return Ok(now.min(len));
            }
            // No reflinks here (ext4, tmpfs), or between these two filesystems.
            Err(Errno::OPNOTSUPP | Errno::NOTTY | Errno::NOSYS | Errno::XDEV) => {
                memo.note_missing(dev, NO_CLONE);
            }
            // Anything else (a filesystem that refuses this one file): copy it.
            Err(_) => {}
        }
    }
    // Fewer blocks than the size needs: there are holes (or the filesystem compresses); copy
    // only the data, as `cp` does, so a sparse file stays sparse.
    if blocks.saturating_mul(512) < len
        && let Some(copied) = copy_sparse(src, dst, len, dev, memo, abandon)?
    {
        return Ok(copied);
    }
    copy_range(src, dst, 0, len, dev, memo, abandon)
}

/// Copies the data segments of the first `len` bytes of `src` at their offsets and sizes
/// `dst` to the source's length (trailing hole included). `None` when the filesystem cannot
/// tell data from holes: nothing was written, copy it whole.
fn copy_sparse(
    src: &File,
    dst: &File,
    len: u64,
    dev: u64,
    memo: &KernelCopy,
    abandon: &AtomicBool,
) -> io::Result<Option<u64>> {
    use rustix::fs::{SeekFrom, seek};
    let mut at = 0u64;
    while at < len {
        let data = match seek(src, SeekFrom::Data(at)) {
            Ok(data) => data,
            // No data after `at`: the rest is a hole.
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::OPNOTSUPP) if at == 0 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if data >= len {
            break;
        }
        let hole = match seek(src, SeekFrom::Hole(data)) {
            Ok(hole) => hole.min(len),
            Err(Errno::NXIO) => len,
            Err(e) => return Err(e.into()),
        };
        let copied = copy_range(src, dst, data, hole - data, dev, memo, abandon)?;
        if copied < hole - data {
            // The source ended early: it shrank.
            dst.set_len(data + copied)?;
            return Ok(Some(data + copied));
        }
        at = hole;
    }
    // A hole at the end copies nothing: the length makes it. (A source that shrank within
    // it is caught by the caller's second look at the source.)
    dst.set_len(len)?;
    Ok(Some(len))
}

/// Copies `len` bytes at offset `at` of `src` to the same offset of `dst`; returns how many
/// it copied (fewer when the source ends first).
fn copy_range(
    src: &File,
    dst: &File,
    at: u64,
    len: u64,
    dev: u64,
    memo: &KernelCopy,
    abandon: &AtomicBool,
) -> io::Result<u64> {
    let end = at + len;
    let (mut off_in, mut off_out) = (at, at);
    let mut kicks = Kicks::from(off_out);
    if !memo.lacks(dev, NO_RANGE) {
        while off_in < end {
            if abandon.load(Ordering::Relaxed) {
                return Err(abandoned());
            }
            let want = (end - off_in).min(RANGE_CHUNK) as usize;
            match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want)
            {
                Ok(0) => return Ok(off_in - at),
                Ok(_) => kicks.wrote(dst, off_out),
                Err(Errno::INTR) => {}
                // Not between these filesystems (or not at all): the rest through user
                // space. Offsets did not move on the failed call.
                Err(e @ (Errno::XDEV | Errno::OPNOTSUPP | Errno::NOSYS)) => {
                    tracing::debug!("copy_file_range unavailable ({e}); reading and writing");
                    memo.note_missing(dev, NO_RANGE);
                    break;
                }
                // Some filesystems answer EINVAL for files they cannot copy this way.
                Err(Errno::INVAL) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if off_in >= end {
            return Ok(off_in - at);
        }
    }
    let mut buf = vec![0u8; (end - off_in).min(BUFFER) as usize];
    while off_in < end {
        if abandon.load(Ordering::Relaxed) {
            return Err(abandoned());
        }
        let want = ((end - off_in) as usize).min(buf.len());
        let n = match src.read_at(&mut buf[..want], off_in) {
            Ok(0) => return Ok(off_in - at),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all_at(&buf[..n], off_out)?;
        off_in += n as u64;
        off_out += n as u64;
        kicks.wrote(dst, off_out);
    }
    Ok(off_in - at)
}

/// Bytes between two writeback kicks ([`Kicks`]).
pub(crate) const WRITE_BEHIND: u64 = 8 << 20;

/// Where a file's writeback was last kicked. [`Kicks::wrote`] hands the kernel every
/// [`WRITE_BEHIND`] bytes written since, never fewer: a small file's pages wait for the
/// flusher threads (or the barrier), as `cp`'s do. Kicked per small file, each had its blocks
/// allocated and its write submitted in the writing thread: a sixth of a 58 000-file first
/// copy's CPU.
#[derive(Debug)]
pub(crate) struct Kicks(u64);

impl Kicks {
    /// Nothing kicked before offset `at`.
    pub(crate) fn from(at: u64) -> Kicks {
        Kicks(at)
    }

    /// `dst` now holds bytes up to `written`: kicks writeback of those not kicked yet once
    /// there are [`WRITE_BEHIND`] of them.
    pub(crate) fn wrote(&mut self, dst: &File, written: u64) {
        if written.saturating_sub(self.0) >= WRITE_BEHIND {
            write_behind(dst, self.0, written);
            self.0 = written;
        }
    }
}

/// Starts the disk writes of `dst`'s bytes `from..to` without waiting for them (and drops
/// those pages once written), so that the barrier that makes the copy durable finds little
/// left to write: see `WriteBehind` in the client. Advice only; nothing committed changes.
fn write_behind(dst: &File, from: u64, to: u64) {
    if let Some(len) = std::num::NonZeroU64::new(to.saturating_sub(from)) {
        #[cfg(test)]
        tests::KICKS.with(|kicks| kicks.set(kicks.get() + 1));
        let _ = rustix::fs::fadvise(dst, from, Some(len), rustix::fs::Advice::DontNeed);
    }
}

/// Set when the future that started a blocking copy is dropped: the copy stops at its next
/// chunk and commits nothing.
#[derive(Debug, Default)]
pub(crate) struct Abandon(std::sync::Arc<AtomicBool>);

impl Abandon {
    /// The flag the blocking side looks at.
    pub(crate) fn flag(&self) -> std::sync::Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    thread_local! {
        /// Writeback kicks made by this thread ([`write_behind`]).
        pub(super) static KICKS: Cell<u32> = const { Cell::new(0) };
    }

    /// Copies a `len`-byte file within one temporary folder and returns the kicks made.
    fn kicks_copying(len: usize) -> u32 {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        File::create(&from).unwrap().write_all(&body).unwrap();
        let src = File::open(&from).unwrap();
        let dst = File::options()
            .write(true)
            .create_new(true)
            .open(&to)
            .unwrap();
        let listed = src.metadata().unwrap();
        let (dev, blocks) = (listed.dev(), listed.blocks());
        let memo = KernelCopy::default();
        KICKS.with(|kicks| kicks.set(0));
        let got = copy_bytes(
            &src,
            &dst,
            len as u64,
            dev,
            blocks,
            &memo,
            &AtomicBool::new(false),
        );
        assert_eq!(got.unwrap(), len as u64);
        assert_eq!(
            std::fs::read(&to).unwrap(),
            body,
            "the copy holds the source's bytes"
        );
        KICKS.with(Cell::get)
    }

    #[test]
    fn small_copies_leave_writeback_to_the_kernel_and_large_ones_kick_it_per_chunk() {
        // Kicked per file, each small file's blocks were allocated and written in the
        // copying thread: a sixth of a many-small-files copy's CPU.
        assert_eq!(kicks_copying(1024), 0);
        assert_eq!(kicks_copying(RANGE_CHUNK as usize - 1), 0);
        // Reflinks (btrfs, XFS) copy without writing anything to kick.
        if kicks_copying(RANGE_CHUNK as usize) == 0 {
            return;
        }
        assert_eq!(kicks_copying(2 * RANGE_CHUNK as usize + 5), 2);
    }
}
