//! Red team 25: `read_chunks` (large local files streamed in 128 KiB chunks, each read when
//! asked for) feeding a local write. A source cut short, grown, or cut and grown back while
//! it is copied: the checked body fails and the old destination stays, with no temp left; a
//! read concurrent with a write of the same file reads one version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use syncengine_backend_local::LocalClient;
use syncengine_core::verify::{Expected, verify_body};
use syncengine_core::{RelPath, StorageClient, StorageClientExt, WriteOptions};

const MIB: usize = 1024 * 1024;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_add(seed))
        .collect()
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A source changed after 1 MiB of it was read: cut to half, cut to half and written back
/// to its size with zeros ahead (read past the cut sees a short file), or grown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_changed_mid_copy_never_replaces_the_destination() {
    for how in ["cut", "grow", "cut-then-rename-over"] {
        let src_dir = tempfile::tempdir().unwrap();
        let dst_dir = tempfile::tempdir().unwrap();
        let size = 3 * MIB + 999;
        let path = RelPath::new("f.bin").unwrap();
        std::fs::write(src_dir.path().join("f.bin"), pattern(1, size)).unwrap();
        std::fs::write(dst_dir.path().join("f.bin"), b"old destination").unwrap();
        let src = LocalClient::new(src_dir.path());
        let dst = LocalClient::new(dst_dir.path());
        let listed = src.stat(&path).await.unwrap();
        let file = src_dir.path().join("f.bin");
        let body = src.read(&path).await.unwrap();
        let mut seen = 0usize;
        let body = body
            .inspect(move |c| {
                if let Ok(c) = c {
                    let before = seen;
                    seen += c.len();
                    if before < MIB && seen >= MIB {
                        let f = std::fs::OpenOptions::new()
                            .write(true)
                            .append(how == "grow")
                            .open(&file)
                            .unwrap();
                        match how {
                            "grow" => std::io::Write::write_all(&mut &f, &[9u8; 4096]).unwrap(),
                            _ => f.set_len((size / 2) as u64).unwrap(),
                        }
                        if how == "cut-then-rename-over" {
                            let tmp = file.with_file_name("new");
                            std::fs::write(&tmp, pattern(2, size)).unwrap();
                            std::fs::rename(&tmp, &file).unwrap();
                        }
                    }
                }
            })
            .boxed();
        let body = verify_body(
            body,
            Expected::of(&listed, &src.capabilities()),
            src.backend(),
            path.as_str(),
        );
        let opts = WriteOptions::default().with_size_hint(listed.size);
        let result = dst.write_opts(&path, body, opts).await;
        match how {
            // The open descriptor reads the old inode whole: the listed version.
            "grow" => {
                let entry = result.unwrap();
                assert_eq!(entry.size, size as u64);
                assert!(std::fs::read(dst_dir.path().join("f.bin")).unwrap() == pattern(1, size));
            }
            _ => {
                assert!(result.is_err(), "{how}: a short read was committed");
                assert_eq!(
                    std::fs::read(dst_dir.path().join("f.bin")).unwrap(),
                    b"old destination",
                    "{how}"
                );
            }
        }
        assert_eq!(
            names(dst_dir.path()),
            ["f.bin"],
            "{how}: something left behind"
        );
    }
}
