//! A small fault-injecting wrapper for executor tests: per-path broken reads, failing writes,
//! and a "crash" right after a write committed. Shared by the core and local-disk tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream;
use syncengine_core::testing::{Forwarding, Hooks};
use syncengine_core::{
    ByteStream, Entry, Error, ReadOptions, RelPath, Result, StorageClient, WriteOptions,
};
use tokio_util::sync::CancellationToken;

/// How a read of one path goes wrong.
#[derive(Clone, Debug)]
pub enum ReadFault {
    /// The stream yields `n` bytes, then a (non-transient) error.
    FailAfter(usize),
    /// The stream ends cleanly after `n` bytes (a server that closed early).
    Truncate(usize),
    /// One byte is flipped; the length is right.
    Corrupt,
    /// The stream yields `n` bytes, then never ends.
    Hang(usize),
}

#[derive(Default)]
struct Faults {
    reads: HashMap<String, ReadFault>,
    failing_writes: HashSet<String>,
    crash_after_write: Option<(String, CancellationToken)>,
}

/// Wraps a client and breaks what it is told to.
pub struct Faulty {
    inner: Arc<dyn StorageClient>,
    faults: Mutex<Faults>,
}

impl Faulty {
    pub fn new(inner: Arc<dyn StorageClient>) -> Arc<Forwarding<Faulty>> {
        Arc::new(Forwarding::new(Faulty {
            inner,
            faults: Mutex::new(Faults::default()),
        }))
    }

    pub fn break_read(&self, path: &str, fault: ReadFault) {
        self.faults
            .lock()
            .unwrap()
            .reads
            .insert(path.to_owned(), fault);
    }

    pub fn fail_write(&self, path: &str) {
        self.faults
            .lock()
            .unwrap()
            .failing_writes
            .insert(path.to_owned());
    }

    /// After the next write of `path` commits, cancels `token` and never returns: the run is
    /// stopped between the commit and the base update, as a crash would.
    pub fn crash_after_write(&self, path: &str, token: CancellationToken) {
        self.faults.lock().unwrap().crash_after_write = Some((path.to_owned(), token));
    }

    pub fn heal(&self) {
        *self.faults.lock().unwrap() = Faults::default();
    }
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({:?})", self.inner)
    }
}

#[async_trait]
impl Hooks for Faulty {
    fn inner(&self) -> &dyn StorageClient {
        &*self.inner
    }
    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let fault = self
            .faults
            .lock()
            .unwrap()
            .reads
            .get(path.as_str())
            .cloned();
        let body = self.inner.read_opts(path, opts).await?;
        let Some(fault) = fault else {
            return Ok(body);
        };
        // Collect, then replay broken: test files are small.
        let chunks: Vec<Bytes> = body
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let mut data = chunks.concat();
        let p = path.to_string();
        Ok(match fault {
            ReadFault::FailAfter(n) => {
                data.truncate(n);
                stream::iter(vec![
                    Ok(Bytes::from(data)),
                    Err(Error::other("faulty", p, "read failed on purpose")),
                ])
                .boxed()
            }
            ReadFault::Truncate(n) => {
                data.truncate(n);
                stream::iter(vec![Ok(Bytes::from(data))]).boxed()
            }
            ReadFault::Corrupt => {
                if let Some(b) = data.last_mut() {
                    *b ^= 0x55;
                }
                stream::iter(vec![Ok(Bytes::from(data))]).boxed()
            }
            ReadFault::Hang(n) => {
                data.truncate(n);
                stream::iter(vec![Ok(Bytes::from(data))])
                    .chain(stream::pending())
                    .boxed()
            }
        })
    }
    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        if self
            .faults
            .lock()
            .unwrap()
            .failing_writes
            .contains(path.as_str())
        {
            return Err(Error::other(
                "faulty",
                path.as_str(),
                "write failed on purpose",
            ));
        }
        let entry = self.inner.write_opts(path, body, opts).await?;
        let crash = {
            let mut f = self.faults.lock().unwrap();
            match &f.crash_after_write {
                Some((p, _)) if p == path.as_str() => f.crash_after_write.take(),
                _ => None,
            }
        };
        if let Some((_, token)) = crash {
            token.cancel();
            std::future::pending::<()>().await;
        }
        Ok(entry)
    }
    async fn preserve(
        &self,
        _client: &dyn StorageClient,
        from: &RelPath,
        to: &RelPath,
    ) -> Result<Entry> {
        self.inner.preserve(from, to).await
    }
}
