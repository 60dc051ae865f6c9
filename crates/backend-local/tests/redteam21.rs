//! Red team 21: the held `syncfs` descriptor (4003cfb, `WritebackWatch`) and streamed writes
//! with one batch in flight (a34e842).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use syncengine_backend_local::LocalClient;
use syncengine_core::{StorageClient, StorageClientExt};

/// Runs `root_exists` and a listing of a client rooted at `root` on a thread of its own and
/// returns what they gave, or `None` if they had not returned after `patience` (a guard
/// against a hang, not a speed check: the calls do no I/O beyond a few syscalls).
fn probe(root: &Path, patience: Duration) -> Option<(String, String)> {
    let (tx, rx) = mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let client = LocalClient::new(&root);
            let exists = format!("{:?}", client.root_exists().await);
            let listed = format!("{:?}", client.list_all(None).await);
            (exists, listed)
        });
        let _ = tx.send(got);
    });
    rx.recv_timeout(patience).ok()
}

/// A root that is a named pipe (a typo, or a path swapped meanwhile) is an error, never a
/// hang: looking at the root opens the barrier's descriptor, and opening a FIFO for reading
/// waits for a writer (on the runtime's thread: nothing else of the run moves either).
#[test]
fn a_root_that_is_a_named_pipe_does_not_hang_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for root in [fifo.clone(), fifo.join("below")] {
        let got = probe(&root, Duration::from_secs(60));
        if got.is_none() {
            // Release the stuck open (a writer arrives) so the thread ends, then fail.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        }
        assert!(
            got.is_some(),
            "root_exists/list of {} never returned: blocked opening the FIFO",
            root.display()
        );
    }
}
