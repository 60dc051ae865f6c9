//! [`FaultClient`]: a [`StorageClient`] wrapper that injects faults from a seeded schedule.
//!
//! Every call on the wrapper (listing, stat, read, write, delete, copy, rename,
//! `recorded_mtime`, `sync_written`) gets a global call number, starting at 0. For each call
//! the wrapper decides whether to inject a fault:
//!
//! - **scripted** faults ([`FaultClient::fail_at`]) fire at exactly the given call number;
//!   faults scripted by path ([`FaultClient::fail_path`]) fire on the next calls on a path,
//!   whatever their number (the engine's call order may change; the path it reads does not);
//!   [`FaultClient::fail_next`] hits the next call of a kind (say, the next `sync_written`);
//! - **random** faults ([`FaultConfig`]) fire with probability `rate`, of a kind drawn from
//!   the enabled [`Fault`] kinds that apply to the call's [`Op`]. The draw for call `n` depends
//!   only on `(seed, n)`, so a schedule is reproducible whenever the calls arrive in the same
//!   order — which they do on a current-thread runtime over a deterministic inner client such
//!   as [`MemoryClient`](crate::MemoryClient);
//! - **cancellation** ([`FaultClient::cancel_at`]) cancels a [`CancellationToken`] when call
//!   `n` starts, so the engine sees the cancel at whatever await point that call is;
//!   [`Fault::Cancel`] does the same from the random schedule.
//!
//! What was injected is logged ([`FaultClient::injected`]) so a failing test can print it.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use syncengine_core::testing::{Fault, FaultClient, FaultConfig, Op};
//! use syncengine_core::{MemoryClient, RelPath, StorageClient, StorageClientExt};
//! use tokio_util::sync::CancellationToken;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let inner = Arc::new(MemoryClient::new());
//! inner.put(&RelPath::new("a.txt")?, Bytes::from("hello world")).await?;
//!
//! // A scripted fault: call 0 (this read) returns a stream that ends after a few bytes.
//! let faulty = FaultClient::new(inner.clone(), FaultConfig::none());
//! faulty.fail_at(0, Fault::ShortRead);
//! let short = faulty.read_to_bytes(&RelPath::new("a.txt")?).await?;
//! assert!(short.len() < 11);
//!
//! // A seeded random schedule: every tenth call or so fails, reproducibly.
//! let token = CancellationToken::new();
//! let faulty = FaultClient::new(inner, FaultConfig::seeded(42).with_rate(0.1))
//!     .with_cancel_token(token.clone());
//! faulty.cancel_at(5);
//! for _ in 0..6 {
//!     let _ = faulty.stat(&RelPath::new("a.txt")?).await;
//! }
//! assert!(token.is_cancelled());
//! assert_eq!(faulty.calls(), 6);
//! println!("{:?}", faulty.injected());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::capabilities::Capabilities;
use crate::client::{
    ByteStream, DeleteOptions, EntryStream, ReadOptions, StorageClient, TransferOptions,
    WriteOptions,
};
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::path::RelPath;

const BACKEND: &str = "fault";

/// The kinds of call a [`FaultClient`] sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Op {
    /// [`StorageClient::list`].
    List,
    /// [`StorageClient::stat`].
    Stat,
    /// [`StorageClient::read_opts`].
    Read,
    /// [`StorageClient::write_opts`].
    Write,
    /// [`StorageClient::delete_opts`].
    Delete,
    /// [`StorageClient::copy_opts`].
    Copy,
    /// [`StorageClient::rename_opts`].
    Rename,
    /// [`StorageClient::recorded_mtime`].
    RecordedMtime,
    /// [`StorageClient::sync_written`].
    SyncWritten,
}

impl Op {
    /// Every kind of call.
    pub const ALL: [Op; 9] = [
        Op::List,
        Op::Stat,
        Op::Read,
        Op::Write,
        Op::Delete,
        Op::Copy,
        Op::Rename,
        Op::RecordedMtime,
        Op::SyncWritten,
    ];

    fn mutates(self) -> bool {
        matches!(self, Op::Write | Op::Delete | Op::Copy | Op::Rename)
    }
}

/// A fault the [`FaultClient`] can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Fault {
    /// The call fails with [`Error::Other`] before it reaches the inner client (any call).
    Error,
    /// The call fails with [`Error::Transient`] before it reaches the inner client (any call):
    /// a retry may succeed.
    Transient,
    /// A mutating call (write, delete, copy, rename) is carried out by the inner client, then
    /// an error is returned anyway: a reply lost after the server committed.
    ErrorAfter,
    /// A read stream ends early, without an error: a server that closed the connection after
    /// part of the body.
    ShortRead,
    /// A read stream has one byte changed (same length).
    CorruptRead,
    /// A read stream yields part of the content, then an error.
    ReadErrorMidStream,
    /// A write consumes part of its body, then the body yields an error (the inner client
    /// must abort the write and keep the old content).
    WriteBodyError,
    /// A listing yields some entries, then an error.
    ListError,
    /// A listing yields some entries, then just ends: a truncated listing that looks
    /// complete. No client can tell; it tests what the engine's safety rules (and the trash)
    /// make of it.
    ListTruncated,
    /// Cancels the token given to [`FaultClient::with_cancel_token`] when the call starts;
    /// the call itself goes through.
    Cancel,
}

impl Fault {
    /// Every kind of fault.
    pub const ALL: [Fault; 10] = [
        Fault::Error,
        Fault::Transient,
        Fault::ErrorAfter,
        Fault::ShortRead,
        Fault::CorruptRead,
        Fault::ReadErrorMidStream,
        Fault::WriteBodyError,
        Fault::ListError,
        Fault::ListTruncated,
        Fault::Cancel,
    ];

    /// True when this fault can be injected into a call of kind `op`.
    pub fn applies_to(self, op: Op) -> bool {
        match self {
            Fault::Error | Fault::Transient | Fault::Cancel => true,
            Fault::ErrorAfter => op.mutates(),
            Fault::ShortRead | Fault::CorruptRead | Fault::ReadErrorMidStream => op == Op::Read,
            Fault::WriteBodyError => op == Op::Write,
            Fault::ListError | Fault::ListTruncated => op == Op::List,
        }
    }
}

/// The random part of a [`FaultClient`]'s schedule.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FaultConfig {
    /// Seed of the schedule.
    pub seed: u64,
    /// Probability that a call gets a fault (0 disables random faults).
    pub rate: f64,
    /// The kinds of fault that may be drawn.
    pub faults: Vec<Fault>,
    /// The kinds of call that may get one.
    pub ops: Vec<Op>,
}

impl FaultConfig {
    /// No random faults (scripted ones still fire).
    pub fn none() -> Self {
        FaultConfig {
            seed: 0,
            rate: 0.0,
            faults: Fault::ALL.to_vec(),
            ops: Op::ALL.to_vec(),
        }
    }

    /// Random faults of every kind on every call, seeded, at a rate of 5%.
    pub fn seeded(seed: u64) -> Self {
        FaultConfig {
            seed,
            rate: 0.05,
            ..FaultConfig::none()
        }
    }

    /// Sets the probability of a fault per call.
    pub fn with_rate(mut self, rate: f64) -> Self {
        self.rate = rate.clamp(0.0, 1.0);
        self
    }

    /// Restricts the kinds of fault drawn.
    pub fn with_faults(mut self, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.faults = faults.into_iter().collect();
        self
    }

    /// Restricts the kinds of call that get faults.
    pub fn with_ops(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.ops = ops.into_iter().collect();
        self
    }
}

/// One fault that was injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    /// The call number.
    pub call: u64,
    /// The kind of call.
    pub op: Op,
    /// The path of the call (the prefix of a listing; empty for the root or `sync_written`).
    pub path: String,
    /// The fault.
    pub fault: Fault,
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "call {} {:?} {:?}: {:?}",
            self.call, self.op, self.path, self.fault
        )
    }
}

/// What [`FaultClient::at_body_end`] and [`FaultClient::before`] run: the path concerned.
pub type BodyEndHook = Arc<dyn Fn(&RelPath) + Send + Sync>;

#[derive(Default)]
struct Shared {
    script: BTreeMap<u64, Fault>,
    /// Path, fault, and how many more calls on that path get it.
    by_path: Vec<(String, Fault, u32)>,
    /// Part of a path, fault, and how many more calls on a path containing it get it.
    by_part: Vec<(String, Fault, u32)>,
    /// Faults for the next calls of a kind ([`FaultClient::fail_next`]), oldest first.
    next_of: Vec<(Op, Fault)>,
    cancel_at: Vec<u64>,
    log: Vec<Injected>,
    at_body_end: Vec<(RelPath, BodyEndHook)>,
    before: Vec<(Op, RelPath, BodyEndHook)>,
}

/// A [`StorageClient`] that forwards to an inner client and injects faults (see the
/// [module docs](crate::testing::fault)).
///
/// `Display`, `backend`, `capabilities`, `skipped_count`, `local_root` and
/// `remove_stale_temps` are the inner client's, so a pair
/// built on the wrapper has the same identity as one built on the inner client.
pub struct FaultClient {
    inner: Arc<dyn StorageClient>,
    config: FaultConfig,
    cancel: Option<CancellationToken>,
    calls: AtomicU64,
    shared: Mutex<Shared>,
    enabled: std::sync::atomic::AtomicBool,
}

impl FaultClient {
    /// Wraps `inner` with the random schedule `config`.
    pub fn new(inner: Arc<dyn StorageClient>, config: FaultConfig) -> Self {
        FaultClient {
            inner,
            config,
            cancel: None,
            calls: AtomicU64::new(0),
            shared: Mutex::new(Shared::default()),
            enabled: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Sets the token that [`Fault::Cancel`] and [`FaultClient::cancel_at`] cancel.
    pub fn with_cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Injects `fault` at call number `call` (counted from 0 over every call of this client).
    /// A fault that does not apply to that call's kind is ignored (and not logged).
    pub fn fail_at(&self, call: u64, fault: Fault) {
        self.lock().script.insert(call, fault);
    }

    /// Injects `fault` into the next `times` calls on `path` that it applies to (for
    /// [`Fault::ShortRead`], the next `times` reads of `path`), whatever their call numbers.
    /// A fault scripted by call number ([`FaultClient::fail_at`]) takes precedence.
    pub fn fail_path(&self, path: &RelPath, fault: Fault, times: u32) {
        self.lock()
            .by_path
            .push((path.as_str().to_owned(), fault, times));
    }

    /// Injects `fault` into the next `times` calls it applies to on any path that contains
    /// `part`, as [`FaultClient::fail_path`] does for one path: for names the engine makes
    /// up as it runs (a conflict copy: `part` = `".conflict-"`).
    pub fn fail_paths_containing(&self, part: &str, fault: Fault, times: u32) {
        self.lock().by_part.push((part.to_owned(), fault, times));
    }

    /// Injects `fault` into the next call of kind `op` (once; several calls queue up, oldest
    /// first). Unlike [`FaultClient::fail_at`] this needs no call number, so a test does not
    /// depend on how many other calls the engine makes first.
    pub fn fail_next(&self, op: Op, fault: Fault) {
        self.lock().next_of.push((op, fault));
    }

    /// Cancels the token ([`FaultClient::with_cancel_token`]) when call number `call` starts.
    pub fn cancel_at(&self, call: u64) {
        self.lock().cancel_at.push(call);
    }

    /// Runs `hook` once, when the body of the next write to `path` has been read to its end —
    /// after the engine transferred the new content, before the inner client commits it. It
    /// plays a user who saves the file in the middle of a transfer.
    pub fn at_body_end(&self, path: RelPath, hook: BodyEndHook) {
        self.lock().at_body_end.push((path, hook));
    }

    /// Runs `hook` once, right before the next call of kind `op` on `path` reaches the inner
    /// client (for a rename, `path` is where it moves from). It plays a user or another
    /// machine acting in the gap between the engine's check and its change.
    pub fn before(&self, op: Op, path: RelPath, hook: BodyEndHook) {
        self.lock().before.push((op, path, hook));
    }

    /// Switches fault injection off (`false`) or back on; calls are counted either way.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
    }

    /// The number of calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The faults injected so far, in call order.
    pub fn injected(&self) -> Vec<Injected> {
        self.lock().log.clone()
    }

    /// The wrapped client.
    pub fn inner(&self) -> &Arc<dyn StorageClient> {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Every mutation under the lock is a single insert or push: a poisoned lock still
        // guards consistent data.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Numbers a call and decides its fault. Returns the call number, the fault (if any) and
    /// a generator for the fault's details, seeded from `(seed, call)`.
    fn begin(&self, op: Op, path: &str) -> (Option<Fault>, StdRng) {
        let hook = {
            let mut shared = self.lock();
            let at = shared
                .before
                .iter()
                .position(|(o, p, _)| *o == op && p.as_str() == path);
            at.map(|i| shared.before.remove(i))
        };
        if let Some((_, hooked, hook)) = hook {
            hook(&hooked);
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let mut rng = StdRng::seed_from_u64(mix(self.config.seed, call));
        if !self.enabled.load(Ordering::SeqCst) {
            return (None, rng);
        }
        let mut shared = self.lock();
        if shared.cancel_at.contains(&call)
            && let Some(token) = &self.cancel
        {
            token.cancel();
            shared.log.push(Injected {
                call,
                op,
                path: path.to_owned(),
                fault: Fault::Cancel,
            });
        }
        let mut fault = shared.script.get(&call).copied();
        if fault.is_none()
            && let Some((_, f, left)) = shared
                .by_path
                .iter_mut()
                .find(|(p, f, left)| *left > 0 && p == path && f.applies_to(op))
        {
            *left -= 1;
            fault = Some(*f);
        }
        if fault.is_none()
            && let Some((_, f, left)) = shared.by_part.iter_mut().find(|(part, f, left)| {
                *left > 0 && path.contains(part.as_str()) && f.applies_to(op)
            })
        {
            *left -= 1;
            fault = Some(*f);
        }
        if fault.is_none()
            && let Some(i) = shared
                .next_of
                .iter()
                .position(|(o, f)| *o == op && f.applies_to(op))
        {
            fault = Some(shared.next_of.remove(i).1);
        }
        if fault.is_none()
            && self.config.rate > 0.0
            && self.config.ops.contains(&op)
            && rng.random_bool(self.config.rate)
        {
            let candidates: Vec<Fault> = self
                .config
                .faults
                .iter()
                .copied()
                .filter(|f| f.applies_to(op))
                .collect();
            if !candidates.is_empty() {
                fault = Some(candidates[rng.random_range(0..candidates.len())]);
            }
        }
        let fault = fault.filter(|f| f.applies_to(op));
        if let Some(f) = fault {
            if f == Fault::Cancel {
                match &self.cancel {
                    Some(token) => token.cancel(),
                    None => return (None, rng),
                }
            }
            shared.log.push(Injected {
                call,
                op,
                path: path.to_owned(),
                fault: f,
            });
        }
        (fault, rng)
    }

    /// The error of a fault that fails a call before (or after) it runs.
    fn error(fault: Fault, op: Op, path: &str) -> Option<Error> {
        match fault {
            Fault::Error => Some(Error::other(
                BACKEND,
                path,
                format!("injected error on {op:?}"),
            )),
            Fault::Transient => Some(Error::transient(
                BACKEND,
                path,
                format!("injected transient error on {op:?}"),
            )),
            _ => None,
        }
    }

    fn lost_reply(op: Op, path: &str) -> Error {
        Error::other(
            BACKEND,
            path,
            format!("injected: reply to {op:?} lost after the server committed it"),
        )
    }
}

/// A 64-bit mix of the seed and the call number (SplitMix64's finaliser), so neighbouring
/// calls get unrelated generators.
fn mix(seed: u64, call: u64) -> u64 {
    let mut z = seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl fmt::Display for FaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for FaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultClient")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("calls", &self.calls())
            .finish()
    }
}

/// Limits a byte stream to `keep` bytes, then ends it (`then_error` false) or yields an error.
fn cut_stream(body: ByteStream, keep: u64, then_error: Option<Error>) -> ByteStream {
    let mut left = keep;
    let mut done = false;
    let mut error = then_error;
    let truncated = body.scan((), move |(), item| {
        if done {
            return futures::future::ready(None);
        }
        let out = match item {
            Ok(chunk) => {
                let n = chunk.len() as u64;
                if n <= left {
                    left -= n;
                    Some(Ok(chunk))
                } else {
                    done = true;
                    let keep = usize::try_from(left).unwrap_or(usize::MAX);
                    left = 0;
                    Some(Ok(chunk.slice(..keep)))
                }
            }
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    });
    let tail = stream::iter(error.take().map(Err));
    truncated.chain(tail).boxed()
}

/// Flips one bit of byte `at` of the stream (counting from its start).
fn corrupt_stream(body: ByteStream, at: u64) -> ByteStream {
    let mut offset = 0u64;
    body.map(move |item| {
        let chunk = item?;
        let len = chunk.len() as u64;
        let out = if (offset..offset + len).contains(&at) {
            let mut bytes = BytesMut::from(&chunk[..]);
            let i = usize::try_from(at - offset).unwrap_or(0);
            bytes[i] ^= 0x01;
            bytes.freeze()
        } else {
            chunk
        };
        offset += len;
        Ok::<Bytes, Error>(out)
    })
    .boxed()
}

#[async_trait]
impl StorageClient for FaultClient {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn skipped_count(&self) -> u64 {
        self.inner.skipped_count()
    }

    fn local_root(&self) -> Option<std::path::PathBuf> {
        self.inner.local_root()
    }

    async fn remove_stale_temps(&self) -> Result<u64> {
        self.inner.remove_stale_temps().await
    }

    async fn clean_up(
        &self,
        opts: &crate::cleanup::CleanupOptions,
    ) -> Result<crate::cleanup::CleanupReport> {
        self.inner.clean_up(opts).await
    }

    async fn settle(&self, limit: std::time::Duration) {
        self.inner.settle(limit).await
    }

    /// The wrapped client's: a faulty connection to a storage is still that storage (and a
    /// pair id that changed with the wrapper would lose the base).
    async fn location(&self) -> Result<crate::identity::Location> {
        self.inner.location().await
    }

    async fn volume_id(&self) -> Result<Option<String>> {
        self.inner.volume_id().await
    }

    async fn root_exists(&self) -> Result<bool> {
        self.inner.root_exists().await
    }

    async fn sync_written(&self) -> Result<()> {
        let (fault, _) = self.begin(Op::SyncWritten, "");
        if let Some(e) = fault.and_then(|f| Self::error(f, Op::SyncWritten, "")) {
            return Err(e);
        }
        self.inner.sync_written().await
    }

    async fn recorded_mtime(&self, listed: &Entry) -> Result<Option<SystemTime>> {
        let path = listed.path.as_str();
        let (fault, _) = self.begin(Op::RecordedMtime, path);
        if let Some(e) = fault.and_then(|f| Self::error(f, Op::RecordedMtime, path)) {
            return Err(e);
        }
        self.inner.recorded_mtime(listed).await
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        let path = prefix.map(RelPath::as_str).unwrap_or("");
        let (fault, mut rng) = self.begin(Op::List, path);
        if let Some(e) = fault.and_then(|f| Self::error(f, Op::List, path)) {
            return stream::iter([Err(e)]).boxed();
        }
        let listing = self.inner.list(prefix);
        // Cut after a few entries: trees in tests are small, and a cut at 0 (nothing listed)
        // is the harshest case of all.
        let keep = rng.random_range(0..8usize);
        match fault {
            Some(Fault::ListError) => {
                let error = Error::other(BACKEND, path, "injected: listing failed part way");
                listing.take(keep).chain(stream::iter([Err(error)])).boxed()
            }
            Some(Fault::ListTruncated) => listing.take(keep).boxed(),
            _ => listing,
        }
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        let (fault, _) = self.begin(Op::Stat, path.as_str());
        if let Some(e) = fault.and_then(|f| Self::error(f, Op::Stat, path.as_str())) {
            return Err(e);
        }
        self.inner.stat(path).await
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let (fault, mut rng) = self.begin(Op::Read, path.as_str());
        if let Some(e) = fault.and_then(|f| Self::error(f, Op::Read, path.as_str())) {
            return Err(e);
        }
        let body = self.inner.read_opts(path, opts.clone()).await?;
        let Some(fault) = fault else {
            return Ok(body);
        };
        // The stream's length, to cut or corrupt inside it.
        let len = match self.inner.stat(path).await {
            Ok(entry) => match &opts.range {
                Some(r) => r.end.min(entry.size).saturating_sub(r.start),
                None => entry.size,
            },
            Err(_) => 0,
        };
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        Ok(match fault {
            Fault::ShortRead => cut_stream(body, at, None),
            Fault::CorruptRead => corrupt_stream(body, at),
            Fault::ReadErrorMidStream => cut_stream(
                body,
                at,
                Some(Error::transient(
                    BACKEND,
                    path.as_str(),
                    "injected: connection reset while reading",
                )),
            ),
            _ => body,
        })
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        let (fault, mut rng) = self.begin(Op::Write, path.as_str());
        if let Some(e) = fault.and_then(|f| Self::error(f, Op::Write, path.as_str())) {
            return Err(e);
        }
        let hook = {
            let mut shared = self.lock();
            let at = shared.at_body_end.iter().position(|(p, _)| p == path);
            at.map(|i| shared.at_body_end.remove(i).1)
        };
        let body = match hook {
            Some(hook) => {
                let path = path.clone();
                body.chain(stream::once(async move {
                    hook(&path);
                    Ok(Bytes::new())
                }))
                .filter(|chunk| futures::future::ready(!matches!(chunk, Ok(b) if b.is_empty())))
                .boxed()
            }
            None => body,
        };
        match fault {
            Some(Fault::WriteBodyError) => {
                let keep = opts
                    .size_hint
                    .filter(|n| *n > 0)
                    .map_or(0, |n| rng.random_range(0..n));
                let body = cut_stream(
                    body,
                    keep,
                    Some(Error::other(
                        BACKEND,
                        path.as_str(),
                        "injected: the body failed part way",
                    )),
                );
                self.inner.write_opts(path, body, opts).await
            }
            Some(Fault::ErrorAfter) => {
                self.inner.write_opts(path, body, opts).await?;
                Err(Self::lost_reply(Op::Write, path.as_str()))
            }
            _ => self.inner.write_opts(path, body, opts).await,
        }
    }

    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        let (fault, _) = self.begin(Op::Delete, path.as_str());
        if let Some(e) = fault.and_then(|f| Self::error(f, Op::Delete, path.as_str())) {
            return Err(e);
        }
        self.inner.delete_opts(path, opts).await?;
        if fault == Some(Fault::ErrorAfter) {
            return Err(Self::lost_reply(Op::Delete, path.as_str()));
        }
        Ok(())
    }

    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        let (fault, _) = self.begin(Op::Copy, from.as_str());
        if let Some(e) = fault.and_then(|f| Self::error(f, Op::Copy, from.as_str())) {
            return Err(e);
        }
        let entry = self.inner.copy_opts(from, to, opts).await?;
        if fault == Some(Fault::ErrorAfter) {
            return Err(Self::lost_reply(Op::Copy, from.as_str()));
        }
        Ok(entry)
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        let (fault, _) = self.begin(Op::Rename, from.as_str());
        if let Some(e) = fault.and_then(|f| Self::error(f, Op::Rename, from.as_str())) {
            return Err(e);
        }
        let entry = self.inner.rename_opts(from, to, opts).await?;
        if fault == Some(Fault::ErrorAfter) {
            return Err(Self::lost_reply(Op::Rename, from.as_str()));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;
    use crate::client::StorageClientExt;
    use crate::memory::MemoryClient;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    async fn memory_with(files: &[(&str, &str)]) -> Arc<MemoryClient> {
        let client = Arc::new(MemoryClient::new());
        for (path, data) in files {
            client
                .put(&p(path), Bytes::copy_from_slice(data.as_bytes()))
                .await
                .unwrap();
        }
        client
    }

    #[tokio::test]
    async fn no_faults_forwards_everything() {
        let inner = memory_with(&[("a", "alpha"), ("b/c", "gamma")]).await;
        let client = FaultClient::new(inner.clone(), FaultConfig::none());
        assert_eq!(client.list_all(None).await.unwrap().len(), 2);
        assert_eq!(client.read_to_bytes(&p("a")).await.unwrap(), "alpha");
        client.put(&p("d"), Bytes::from("delta")).await.unwrap();
        client.rename(&p("d"), &p("e")).await.unwrap();
        client.delete(&p("a")).await.unwrap();
        assert_eq!(
            inner.files().keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["b/c", "e"]
        );
        assert_eq!(client.calls(), 5);
        assert!(client.injected().is_empty());
        assert_eq!(client.to_string(), inner.to_string());
    }

    #[tokio::test]
    async fn scripted_errors_fire_at_their_call() {
        let inner = memory_with(&[("a", "alpha")]).await;
        let client = FaultClient::new(inner.clone(), FaultConfig::none());
        client.fail_at(1, Fault::Error);
        client.fail_at(2, Fault::Transient);
        assert!(client.stat(&p("a")).await.is_ok());
        let e = client.stat(&p("a")).await.unwrap_err();
        assert!(
            !e.is_transient() && e.to_string().contains("injected"),
            "{e}"
        );
        assert!(client.stat(&p("a")).await.unwrap_err().is_transient());
        assert!(client.stat(&p("a")).await.is_ok());
        let log = client.injected();
        assert_eq!(log.len(), 2);
        assert_eq!(
            (log[0].call, log[0].op, log[0].fault),
            (1, Op::Stat, Fault::Error)
        );
        assert_eq!(log[1].path, "a");
    }

    #[tokio::test]
    async fn faults_scripted_by_path_hit_only_that_path_and_only_calls_they_fit() {
        let content = "0123456789abcdefghij";
        let inner = memory_with(&[("a", content), ("b", content)]).await;
        let client = FaultClient::new(inner, FaultConfig::none());
        client.fail_path(&p("a"), Fault::ShortRead, 2);
        // Neither a stat of `a` nor a read of `b` uses up the faults.
        assert!(client.stat(&p("a")).await.is_ok());
        assert_eq!(client.read_to_bytes(&p("b")).await.unwrap(), content);
        assert!(client.read_to_bytes(&p("a")).await.unwrap().len() < content.len());
        assert!(client.read_to_bytes(&p("a")).await.unwrap().len() < content.len());
        assert_eq!(client.read_to_bytes(&p("a")).await.unwrap(), content);
        let log = client.injected();
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(
            log.iter()
                .all(|i| i.path == "a" && i.op == Op::Read && i.fault == Fault::ShortRead)
        );
    }

    #[tokio::test]
    async fn a_fault_that_does_not_fit_the_call_is_ignored() {
        let inner = memory_with(&[("a", "alpha")]).await;
        let client = FaultClient::new(inner, FaultConfig::none());
        client.fail_at(0, Fault::ShortRead);
        assert!(client.stat(&p("a")).await.is_ok());
        assert!(client.injected().is_empty());
    }

    #[tokio::test]
    async fn read_faults_cut_corrupt_or_fail_the_stream() {
        let content = "0123456789abcdefghij";
        let inner = memory_with(&[("a", content)]).await;
        let client = FaultClient::new(inner, FaultConfig::none());
        client.fail_at(0, Fault::ShortRead);
        client.fail_at(1, Fault::CorruptRead);
        client.fail_at(2, Fault::ReadErrorMidStream);

        let short = client.read_to_bytes(&p("a")).await.unwrap();
        assert!(short.len() < content.len());
        assert_eq!(&short[..], &content.as_bytes()[..short.len()]);

        let corrupt = client.read_to_bytes(&p("a")).await.unwrap();
        assert_eq!(corrupt.len(), content.len());
        assert_ne!(&corrupt[..], content.as_bytes());
        let differing = corrupt
            .iter()
            .zip(content.as_bytes())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, 1);

        let e = client.read_to_bytes(&p("a")).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert_eq!(client.read_to_bytes(&p("a")).await.unwrap(), content);
    }

    #[tokio::test]
    async fn a_failing_write_body_leaves_the_old_content() {
        let inner = memory_with(&[("a", "old")]).await;
        let client = FaultClient::new(inner.clone(), FaultConfig::none());
        client.fail_at(0, Fault::WriteBodyError);
        let data = Bytes::from("new content that is long");
        let e = client.put(&p("a"), data).await.unwrap_err();
        assert!(e.to_string().contains("body failed"), "{e}");
        assert_eq!(inner.read_to_bytes(&p("a")).await.unwrap(), "old");
    }

    #[tokio::test]
    async fn a_lost_reply_commits_then_fails() {
        let inner = memory_with(&[("a", "old")]).await;
        let client = FaultClient::new(inner.clone(), FaultConfig::none());
        client.fail_at(0, Fault::ErrorAfter);
        client.fail_at(1, Fault::ErrorAfter);
        assert!(client.put(&p("a"), Bytes::from("new")).await.is_err());
        assert_eq!(inner.read_to_bytes(&p("a")).await.unwrap(), "new");
        assert!(client.rename(&p("a"), &p("b")).await.is_err());
        assert!(inner.files().contains_key(&p("b")));
    }

    #[tokio::test]
    async fn listings_fail_or_end_early() {
        let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
        let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
        let inner = memory_with(&files).await;
        let client = FaultClient::new(inner, FaultConfig::none());
        client.fail_at(0, Fault::ListError);
        client.fail_at(1, Fault::ListTruncated);
        client.fail_at(2, Fault::Error);
        let items: Vec<Result<Entry>> = client.list(None).collect().await;
        assert!(items.len() < 20);
        assert!(items.last().unwrap().is_err());
        assert!(items[..items.len() - 1].iter().all(Result::is_ok));
        let truncated = client.list_all(None).await.unwrap();
        assert!(truncated.len() < 20, "{}", truncated.len());
        assert!(client.list(None).try_collect::<Vec<_>>().await.is_err());
        assert_eq!(client.list_all(None).await.unwrap().len(), 20);
    }

    #[tokio::test]
    async fn cancellation_fires_at_the_given_call() {
        let inner = memory_with(&[("a", "alpha")]).await;
        let token = CancellationToken::new();
        let client = FaultClient::new(inner, FaultConfig::none()).with_cancel_token(token.clone());
        client.cancel_at(3);
        for _ in 0..3 {
            client.stat(&p("a")).await.unwrap();
            assert!(!token.is_cancelled());
        }
        client.stat(&p("a")).await.unwrap();
        assert!(token.is_cancelled());
        assert_eq!(client.injected()[0].fault, Fault::Cancel);
    }

    #[tokio::test]
    async fn random_schedules_are_reproducible_and_respect_the_switches() {
        async fn run(seed: u64, faults: Vec<Fault>) -> Vec<Injected> {
            let inner = memory_with(&[("a", "alpha"), ("b", "beta")]).await;
            let client = FaultClient::new(
                inner,
                FaultConfig::seeded(seed)
                    .with_rate(0.3)
                    .with_faults(faults)
                    .with_ops([Op::Stat, Op::Read, Op::List]),
            );
            for _ in 0..50 {
                let _ = client.stat(&p("a")).await;
                let _ = client.read_to_bytes(&p("b")).await;
                let _ = client.list_all(None).await;
                client
                    .put(&p("c"), Bytes::from("never faulted"))
                    .await
                    .unwrap();
            }
            client.injected()
        }
        let a = run(7, Fault::ALL.to_vec()).await;
        assert_eq!(a, run(7, Fault::ALL.to_vec()).await);
        assert_ne!(a, run(8, Fault::ALL.to_vec()).await);
        assert!(a.len() > 10, "{}", a.len());
        assert!(a.iter().all(|i| i.op != Op::Write));
        // Cancel needs a token, which this client lacks: never injected.
        assert!(a.iter().all(|i| i.fault != Fault::Cancel));
        let only = run(9, vec![Fault::ShortRead]).await;
        assert!(!only.is_empty());
        assert!(
            only.iter()
                .all(|i| i.fault == Fault::ShortRead && i.op == Op::Read)
        );
    }

    #[tokio::test]
    async fn disabled_client_counts_but_never_faults() {
        let inner = memory_with(&[("a", "alpha")]).await;
        let client = FaultClient::new(
            inner,
            FaultConfig::seeded(1)
                .with_rate(1.0)
                .with_faults([Fault::Error]),
        );
        client.set_enabled(false);
        for _ in 0..10 {
            client.stat(&p("a")).await.unwrap();
        }
        assert_eq!(client.calls(), 10);
        client.set_enabled(true);
        assert!(client.stat(&p("a")).await.is_err());
    }
}
