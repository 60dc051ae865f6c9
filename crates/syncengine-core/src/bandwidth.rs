//! Bandwidth limits (rclone's `--bwlimit`): a [`BandwidthLimit`] parsed as rclone parses it,
//! a shared [`Bandwidth`] budget of token buckets, and the client wrapper that spends it.
//!
//! # The limit
//! `RATE` or `UP:DOWN`, in **bytes** per second with rclone's binary units: `512k` is
//! 512 KiB/s, `1M` and `1MiB` are 1 MiB/s, `1.5M` is 1.5 MiB/s, `100B` is 100 bytes/s, a bare
//! number is KiB/s (`100` is 100 KiB/s, as in rclone), `off` (or `0`) is no limit. UP is what
//! is sent to a remote side (uploads), DOWN what is received from one (downloads); a single
//! `RATE` limits each direction to it. `10M:off` limits uploads only. rclone's timetables
//! (`08:00,512k 18:00,off`) are not supported.
//!
//! # Where it applies
//! [`Bandwidth::throttle_pair`] (which [`SyncEngine::with_bandwidth`](crate::SyncEngine)
//! applies to every pair it runs) wraps each **remote** side of a pair (every client that is
//! not local disk: [`StorageClient::local_root`] is `None`) in [`Bandwidth::throttle`]: the
//! bytes of its reads spend the DOWN budget, the bytes of its writes the UP budget. A copy
//! from one remote side to another (S3 to WebDAV) spends both, as the bytes come in and go
//! out again. Local sides are not throttled: a download to local disk spends DOWN once, not
//! DOWN and UP. A `--backup-dir` or `--trash-dir` on a remote store is throttled the same way.
//!
//! A **local↔local** pair has no remote side; rclone limits its transfers all the same. Here
//! its *destination* (the second location) plays the remote: copies to it spend UP, copies
//! from it (two-way) spend DOWN. So `--bwlimit 1M` holds every transfer of the pair to
//! 1 MiB/s in either direction, and `10M:off` limits only what goes to the destination.
//! The kernel copy between two local roots (a reflink or `copy_file_range`, see
//! [`StorageClient::copy_from_same_store`]) would bypass the limit, so the throttled client
//! takes no part in it: such copies stream through the limit instead.
//!
//! What moves no bytes between this machine and a remote is not limited, as in rclone (which
//! does not limit server-side copies): listings and `stat`s, renames, deletes, server-side
//! copies (an S3 `CopyObject` between two buckets of one endpoint, a side's trash copies),
//! hard links. The one exception we know of: an SFTP server without the
//! `hardlink@openssh.com` extension keeps an overwritten file's old version in the trash by
//! a copy through this machine, inside the SFTP client, and that copy is not throttled.
//!
//! # Safety
//! Throttling only delays the chunks of a byte stream; it never changes, drops or adds a byte
//! and never changes what a write commits: the executor's length and MD5 checks, retries,
//! staged writes and cancellation work on a throttled stream exactly as on any other. A
//! waiter holds no tokens: a transfer that fails or is cancelled while it waits for its turn
//! takes nothing from the others, and a cancelled run stops at once, mid-wait.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use syncengine_core::bandwidth::{Bandwidth, BandwidthLimit};
//! use syncengine_core::{MemoryClient, RelPath, StorageClientExt, SyncEngine, SyncMode, SyncPair};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limit: BandwidthLimit = "10M:512k".parse()?;
//! assert_eq!(limit.up(), Some(10 << 20));
//! assert_eq!(limit.down(), Some(512 << 10));
//! assert_eq!(limit.to_string(), "10Mi:512Ki");
//!
//! // One budget, shared by every transfer of every pair the engine runs (a service's
//! // engines may share it too: clones share the buckets).
//! let budget = Bandwidth::new("1M".parse()?);
//! let state = tempfile::tempdir()?;
//! let engine = SyncEngine::new(state.path()).with_bandwidth(budget.clone());
//!
//! let src = Arc::new(MemoryClient::new());
//! src.put(&RelPath::new("a.txt")?, Bytes::from("hello")).await?;
//! let dst = Arc::new(MemoryClient::new());
//! let stats = engine.sync_pair(&SyncPair::new(src, dst.clone(), SyncMode::TwoWay)).await?;
//! assert_eq!(stats.uploaded, 1);
//! assert_eq!(dst.read_to_bytes(&RelPath::new("a.txt")?).await?, "hello");
//! # Ok(()) }
//! ```

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use crate::capabilities::Capabilities;
use crate::client::{
    ByteStream, DeleteOptions, EntryStream, PruneFn, ReadOptions, StorageClient, TransferOptions,
    WriteOptions,
};
use crate::entry::Entry;
use crate::error::Result;
use crate::identity::Location;
use crate::pair::{Recovery, SyncPair};
use crate::path::RelPath;

/// A bandwidth limit: bytes per second sent to remote sides (UP) and received from them
/// (DOWN); `None` is no limit. Parsed and shown as rclone's `--bwlimit` (see the
/// [module docs](self)).
///
/// ```
/// use syncengine_core::bandwidth::BandwidthLimit;
///
/// let one: BandwidthLimit = "1M".parse().unwrap();
/// assert_eq!((one.up(), one.down()), (Some(1 << 20), Some(1 << 20)));
/// let up_only: BandwidthLimit = "10M:off".parse().unwrap();
/// assert_eq!((up_only.up(), up_only.down()), (Some(10 << 20), None));
/// assert_eq!("100".parse::<BandwidthLimit>().unwrap().up(), Some(100 << 10)); // KiB/s
/// assert!("off".parse::<BandwidthLimit>().unwrap().is_off());
/// let err = "10MB".parse::<BandwidthLimit>().unwrap_err();
/// assert!(err.to_string().contains("10M"), "{err}");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BandwidthLimit {
    up: Option<NonZeroU64>,
    down: Option<NonZeroU64>,
}

impl BandwidthLimit {
    /// No limit either way.
    pub const OFF: BandwidthLimit = BandwidthLimit {
        up: None,
        down: None,
    };

    /// A limit of `up` bytes per second sent and `down` received; `None` or 0: no limit
    /// that way.
    pub fn new(up: Option<u64>, down: Option<u64>) -> Self {
        BandwidthLimit {
            up: up.and_then(NonZeroU64::new),
            down: down.and_then(NonZeroU64::new),
        }
    }

    /// The same limit, `bytes_per_second`, each way.
    pub fn both(bytes_per_second: u64) -> Self {
        BandwidthLimit::new(Some(bytes_per_second), Some(bytes_per_second))
    }

    /// Bytes per second sent to remote sides, if limited.
    pub fn up(&self) -> Option<u64> {
        self.up.map(NonZeroU64::get)
    }

    /// Bytes per second received from remote sides, if limited.
    pub fn down(&self) -> Option<u64> {
        self.down.map(NonZeroU64::get)
    }

    /// True when neither way is limited.
    pub fn is_off(&self) -> bool {
        self.up.is_none() && self.down.is_none()
    }
}

/// Why a bandwidth limit could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid bandwidth limit {text:?}: {reason} (examples: 1M, 512k, 1.5M, 10M:off, off)")]
pub struct ParseBandwidthError {
    text: String,
    reason: String,
}

impl FromStr for BandwidthLimit {
    type Err = ParseBandwidthError;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let fail = |reason: String| ParseBandwidthError {
            text: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        if trimmed.contains([',', ' ', ';', '\t']) {
            return Err(fail(
                "timetables (rclone's `HH:MM,RATE …`) are not supported; give one RATE or UP:DOWN"
                    .into(),
            ));
        }
        let (up, down) = match trimmed.split_once(':') {
            Some((up, down)) => (up, down),
            None => (trimmed, trimmed),
        };
        let up = parse_rate(up).map_err(&fail)?;
        let down = parse_rate(down).map_err(&fail)?;
        Ok(BandwidthLimit::new(up, down))
    }
}

/// The multiplier of a unit letter (binary, as rclone's `SizeSuffix`).
fn multiplier(letter: u8) -> Option<u64> {
    let shift = match letter.to_ascii_lowercase() {
        b'k' => 10,
        b'm' => 20,
        b'g' => 30,
        b't' => 40,
        b'p' => 50,
        b'e' => 60,
        _ => return None,
    };
    Some(1 << shift)
}

/// One rate as rclone's `SizeSuffix::Set` reads it: `off`, or a number with an optional unit
/// (`B`, `K`/`Ki`/`KiB`, `M`…, `E`; none: KiB). `None` is no limit.
fn parse_rate(text: &str) -> std::result::Result<Option<u64>, String> {
    if text.is_empty() {
        return Err("a rate is empty".into());
    }
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bytes = text.as_bytes();
    let last = bytes[bytes.len() - 1];
    let (number, unit) = match last {
        b'0'..=b'9' | b'.' => (text, 1 << 10),
        b'b' | b'B' if bytes.len() > 2 && bytes[bytes.len() - 2].eq_ignore_ascii_case(&b'i') => {
            let letter = bytes[bytes.len() - 3];
            let unit = multiplier(letter).ok_or_else(|| unknown_unit(text))?;
            (&text[..text.len() - 3], unit)
        }
        b'b' | b'B' => {
            let number = &text[..text.len() - 1];
            if number
                .as_bytes()
                .last()
                .and_then(|l| multiplier(*l))
                .is_some()
            {
                return Err(format!(
                    "write {} or {}iB: rates are bytes per second in binary units, as in rclone",
                    number, number
                ));
            }
            (number, 1)
        }
        b'i' | b'I' if bytes.len() > 1 => {
            let unit = multiplier(bytes[bytes.len() - 2]).ok_or_else(|| unknown_unit(text))?;
            (&text[..text.len() - 2], unit)
        }
        letter => {
            let unit = multiplier(letter).ok_or_else(|| unknown_unit(text))?;
            (&text[..text.len() - 1], unit)
        }
    };
    // Only plain decimals: Rust's float parser would also take `inf`, `NaN` and `1e3`.
    if number.is_empty()
        || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || number.bytes().filter(|b| *b == b'.').count() > 1
        || number == "."
    {
        return Err(if number.starts_with('-') {
            format!("{text:?} is negative")
        } else {
            format!("{number:?} is not a number")
        });
    }
    let too_large = || format!("{text:?} is too large");
    // Whole numbers exactly (a float would round rates above 2^53 bytes per second).
    if !number.contains('.') {
        let whole: u128 = number.parse().map_err(|_| too_large())?;
        let rate = whole
            .checked_mul(u128::from(unit))
            .and_then(|r| u64::try_from(r).ok())
            .ok_or_else(too_large)?;
        return Ok((rate > 0).then_some(rate));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    let rate = value * unit as f64;
    if rate == 0.0 {
        return Ok(None);
    }
    if rate < 1.0 {
        return Err(format!(
            "{text:?} is less than 1 byte per second (use off for no limit)"
        ));
    }
    // 2^64 is the first value past u64::MAX; every f64 below it converts exactly enough.
    if rate >= 18_446_744_073_709_551_616.0 {
        return Err(too_large());
    }
    Ok(Some(rate as u64))
}

fn unknown_unit(text: &str) -> String {
    format!("{text:?} has an unknown unit (B, K, M, G, T, P or E, optionally with i or iB)")
}

/// A rate as rclone shows it (`1Mi`, `1.500Mi`, `512Ki`), always in a form that parses back
/// to the same number of bytes.
fn show_rate(rate: Option<NonZeroU64>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Some(rate) = rate.map(NonZeroU64::get) else {
        return f.write_str("off");
    };
    for (shift, suffix) in [
        (60, "Ei"),
        (50, "Pi"),
        (40, "Ti"),
        (30, "Gi"),
        (20, "Mi"),
        (10, "Ki"),
    ] {
        let unit = 1u64 << shift;
        if rate < unit {
            continue;
        }
        for decimals in 0..=3 {
            let shown = format!("{:.*}{suffix}", decimals, rate as f64 / unit as f64);
            if parse_rate(&shown) == Ok(Some(rate)) {
                return f.write_str(&shown);
            }
        }
    }
    write!(f, "{rate}B")
}

impl fmt::Display for BandwidthLimit {
    /// `RATE` when both ways are alike, else `UP:DOWN` (rclone's form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_rate(self.up, f)?;
        if self.down != self.up {
            f.write_str(":")?;
            show_rate(self.down, f)?;
        }
        Ok(())
    }
}

impl serde::Serialize for BandwidthLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BandwidthLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A token bucket of bytes, shared by everything that holds a clone of it.
///
/// # Behavior
/// - It fills at [`rate`](Self::rate) bytes per second and holds at most one second's worth
///   ([`burst`](Self::burst)); it starts empty, so even the first second runs at the rate.
/// - [`acquire`](Self::acquire) waits until the bucket holds the bytes asked for (or a full
///   burst, for a request larger than that: the bucket then goes into debt, which the next
///   waiters pay off), so over any stretch of time no more than `rate × time + burst` bytes
///   pass.
/// - Waiters are served first come, first served: many transfers sharing a bucket all
///   progress, each in turn. A waiter that is dropped (a cancelled or failed transfer) leaves
///   the queue and takes no token with it.
/// - Time is tokio's ([`tokio::time::Instant`]), so tests can run it on a paused clock.
#[derive(Clone)]
pub struct TokenBucket {
    inner: Arc<Bucket>,
}

struct Bucket {
    rate: f64,
    burst: f64,
    /// Tokens and when they were last counted. Never held across an await.
    level: Mutex<Level>,
    /// The queue of waiters: tokio's mutex is fair (FIFO), and the waiter holding it is the
    /// one being served.
    turn: tokio::sync::Mutex<()>,
}

struct Level {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A bucket filling at `bytes_per_second`, starting empty.
    pub fn new(bytes_per_second: NonZeroU64) -> Self {
        let rate = bytes_per_second.get() as f64;
        TokenBucket {
            inner: Arc::new(Bucket {
                rate,
                burst: rate,
                level: Mutex::new(Level {
                    tokens: 0.0,
                    at: Instant::now(),
                }),
                turn: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.inner.rate as u64
    }

    /// The most bytes that can pass at once after a pause: one second's worth.
    pub fn burst(&self) -> u64 {
        self.inner.burst as u64
    }

    /// The largest piece a throttled stream hands on at once: a tenth of a second's worth,
    /// at least 1 KiB and at most 256 KiB, so that transfers sharing a bucket take turns
    /// often and a stall watchdog sees bytes move.
    pub fn piece(&self) -> usize {
        (self.rate() / 10).clamp(1 << 10, 256 << 10) as usize
    }

    /// Waits until `bytes` may pass, and takes them from the bucket.
    ///
    /// Cancel-safe: dropping the future before it completes takes nothing.
    pub async fn acquire(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let bucket = &*self.inner;
        let _turn = bucket.turn.lock().await;
        loop {
            let wait = {
                let mut level = bucket.level.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(level.at).as_secs_f64();
                level.tokens = (level.tokens + elapsed * bucket.rate).min(bucket.burst);
                level.at = now;
                let want = bytes as f64;
                let needed = want.min(bucket.burst);
                if level.tokens >= needed {
                    level.tokens -= want;
                    return;
                }
                // At least a millisecond (the timer's resolution): a wait that rounds to
                // zero at a huge rate would spin without time passing on a paused clock.
                Duration::try_from_secs_f64((needed - level.tokens) / bucket.rate)
                    .unwrap_or(Duration::from_secs(3600))
                    .max(Duration::from_millis(1))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("rate", &self.rate())
            .finish_non_exhaustive()
    }
}

/// A bandwidth budget: one [`TokenBucket`] for each limited direction. Cheap to clone, and
/// clones share the buckets, so one `Bandwidth` given to several engines, pairs or a whole
/// service limits all their transfers together.
///
/// ```
/// use std::sync::Arc;
/// use syncengine_core::bandwidth::Bandwidth;
/// use syncengine_core::{MemoryClient, SyncMode, SyncPair};
///
/// let budget = Bandwidth::new("4M:off".parse().unwrap());
/// // Two pairs, one budget: their uploads share 4 MiB/s.
/// let remote = Arc::new(MemoryClient::new()); // not local disk: throttled
/// let a = budget.throttle_pair(&SyncPair::new(Arc::new(MemoryClient::new()), remote.clone(), SyncMode::SourceToDestination));
/// let b = budget.throttle_pair(&SyncPair::new(Arc::new(MemoryClient::new()), remote, SyncMode::SourceToDestination));
/// assert!(format!("{:?}", a.destination).contains("Throttled"));
/// # drop(b);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Bandwidth {
    limit: BandwidthLimit,
    up: Option<TokenBucket>,
    down: Option<TokenBucket>,
}

impl Bandwidth {
    /// A budget limited to `limit`.
    pub fn new(limit: BandwidthLimit) -> Self {
        Bandwidth {
            limit,
            up: limit.up.map(TokenBucket::new),
            down: limit.down.map(TokenBucket::new),
        }
    }

    /// No limit: throttling with it changes nothing.
    pub fn unlimited() -> Self {
        Bandwidth::default()
    }

    /// The limit this budget holds.
    pub fn limit(&self) -> BandwidthLimit {
        self.limit
    }

    /// True when neither direction is limited.
    pub fn is_unlimited(&self) -> bool {
        self.up.is_none() && self.down.is_none()
    }

    /// The bucket of bytes sent to remote sides, if limited.
    pub fn up(&self) -> Option<&TokenBucket> {
        self.up.as_ref()
    }

    /// The bucket of bytes received from remote sides, if limited.
    pub fn down(&self) -> Option<&TokenBucket> {
        self.down.as_ref()
    }

    /// `client` with the bytes of its reads spending the DOWN budget and those of its writes
    /// the UP budget; every other call goes to `client` unchanged (see [`Throttled`]).
    /// Returns `client` itself when this budget is unlimited.
    pub fn throttle(&self, client: Arc<dyn StorageClient>) -> Arc<dyn StorageClient> {
        if self.is_unlimited() {
            return client;
        }
        Arc::new(Throttled {
            inner: client,
            budget: self.clone(),
        })
    }

    /// `pair` with its remote sides throttled (and, of a local↔local pair, the destination),
    /// and a backup or trash dir on a remote store throttled too: see the
    /// [module docs](self). Everything else (mode, options, id) is kept, and the pair's id
    /// and state are those of the unthrottled pair.
    pub fn throttle_pair(&self, pair: &SyncPair) -> SyncPair {
        let mut pair = pair.clone();
        if self.is_unlimited() {
            return pair;
        }
        let local = |c: &Arc<dyn StorageClient>| c.local_root().is_some();
        let both_local = local(&pair.source) && local(&pair.destination);
        if !local(&pair.source) {
            pair.source = self.throttle(pair.source);
        }
        if both_local || !local(&pair.destination) {
            pair.destination = self.throttle(pair.destination);
        }
        for recovery in [
            &mut pair.options.source_recovery,
            &mut pair.options.destination_recovery,
        ] {
            match recovery {
                Recovery::BackupDir(c) | Recovery::TrashDir(c) if !local(c) => {
                    *c = self.throttle(c.clone());
                }
                _ => {}
            }
        }
        pair
    }
}

/// Throttles `body` with `bucket`: chunks larger than the bucket's
/// [`piece`](TokenBucket::piece) are cut (without copying), and each piece waits for its
/// tokens before it is handed on. Errors pass through as they are.
pub fn throttle_stream(body: ByteStream, bucket: TokenBucket) -> ByteStream {
    let piece = bucket.piece();
    futures::stream::unfold(
        (body, Bytes::new(), bucket),
        move |(mut body, mut rest, bucket)| async move {
            if rest.is_empty() {
                rest = match body.next().await? {
                    Ok(chunk) => chunk,
                    Err(e) => return Some((Err(e), (body, Bytes::new(), bucket))),
                };
            }
            let out = rest.split_to(rest.len().min(piece));
            bucket.acquire(out.len() as u64).await;
            Some((Ok(out), (body, rest, bucket)))
        },
    )
    .boxed()
}

/// A client whose reads and writes spend a [`Bandwidth`] budget: see
/// [`Bandwidth::throttle`] and the [module docs](self).
///
/// # Behavior
/// - [`read_opts`](StorageClient::read_opts): the stream's bytes spend DOWN as they are
///   consumed; [`write_opts`](StorageClient::write_opts): the body's bytes spend UP as the
///   inner client takes them. The bytes and the result are the inner client's.
/// - Every other call is forwarded, defaults included, so the wrapper behaves as the inner
///   client; the pair's id and state are unchanged ([`location`](StorageClient::location)
///   and `Display` are the inner client's).
/// - On local disk ([`StorageClient::local_root`] is set), [`as_any`](StorageClient::as_any)
///   is `None` and [`copy_from_same_store`](StorageClient::copy_from_same_store) answers
///   `Ok(None)`: the kernel copy between two local roots moves the bytes here, and would go
///   around the limit. Elsewhere both are forwarded: a same-store copy is made by the server
///   (the trait's contract), with no byte through this machine.
pub struct Throttled {
    inner: Arc<dyn StorageClient>,
    budget: Bandwidth,
}

impl Throttled {
    fn is_local(&self) -> bool {
        self.inner.local_root().is_some()
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttled")
            .field("inner", &self.inner)
            .field("limit", &self.budget.limit.to_string())
            .finish()
    }
}

#[async_trait]
impl StorageClient for Throttled {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        if self.is_local() {
            // Copies into or out of this local root stream through the budget, not the
            // kernel's copy (see `copy_from_same_store`): more of them in flight only holds
            // more buffers, so the run keeps its default.
            caps.same_kind_transfers = None;
        }
        caps
    }

    async fn location(&self) -> Result<Location> {
        self.inner.location().await
    }

    async fn volume_id(&self) -> Result<Option<String>> {
        self.inner.volume_id().await
    }

    async fn check_access(&self) -> Result<()> {
        self.inner.check_access().await
    }

    async fn root_exists(&self) -> Result<bool> {
        self.inner.root_exists().await
    }

    fn skipped_count(&self) -> u64 {
        self.inner.skipped_count()
    }

    async fn sync_written(&self) -> Result<()> {
        self.inner.sync_written().await
    }

    async fn folder_permissions(&self, path: &RelPath) -> Result<Option<u32>> {
        self.inner.folder_permissions(path).await
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

    async fn settle(&self, limit: Duration) {
        self.inner.settle(limit).await
    }

    async fn recorded_mtime(&self, listed: &Entry) -> Result<Option<SystemTime>> {
        self.inner.recorded_mtime(listed).await
    }

    fn list(&self, prefix: Option<&RelPath>) -> EntryStream {
        self.inner.list(prefix)
    }

    fn list_pruned(&self, prefix: Option<&RelPath>, prune: PruneFn) -> EntryStream {
        self.inner.list_pruned(prefix, prune)
    }

    async fn stat(&self, path: &RelPath) -> Result<Entry> {
        self.inner.stat(path).await
    }

    async fn read_opts(&self, path: &RelPath, opts: ReadOptions) -> Result<ByteStream> {
        let body = self.inner.read_opts(path, opts).await?;
        Ok(match &self.budget.down {
            Some(bucket) => throttle_stream(body, bucket.clone()),
            None => body,
        })
    }

    async fn write_opts(
        &self,
        path: &RelPath,
        body: ByteStream,
        opts: WriteOptions,
    ) -> Result<Entry> {
        let body = match &self.budget.up {
            Some(bucket) => throttle_stream(body, bucket.clone()),
            None => body,
        };
        self.inner.write_opts(path, body, opts).await
    }

    async fn delete_opts(&self, path: &RelPath, opts: DeleteOptions) -> Result<()> {
        self.inner.delete_opts(path, opts).await
    }

    // Within this side: a server-side copy, or a kernel copy on local disk (never between
    // the two sides of a pair).
    async fn copy_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.inner.copy_opts(from, to, opts).await
    }

    async fn rename_opts(
        &self,
        from: &RelPath,
        to: &RelPath,
        opts: TransferOptions,
    ) -> Result<Entry> {
        self.inner.rename_opts(from, to, opts).await
    }

    // Within this side: a hard link or a server-side copy (see the module docs for SFTP
    // servers without hard links).
    async fn preserve(&self, from: &RelPath, to: &RelPath) -> Result<Entry> {
        self.inner.preserve(from, to).await
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        if self.is_local() {
            None
        } else {
            self.inner.as_any()
        }
    }

    async fn copy_from_same_store(
        &self,
        source: &dyn StorageClient,
        from: &RelPath,
        listed: &Entry,
        to: &RelPath,
        opts: &WriteOptions,
    ) -> Result<Option<Entry>> {
        if self.is_local() {
            return Ok(None);
        }
        self.inner
            .copy_from_same_store(source, from, listed, to, opts)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<BandwidthLimit, String> {
        text.parse::<BandwidthLimit>().map_err(|e| e.to_string())
    }

    fn rates(text: &str) -> (Option<u64>, Option<u64>) {
        let limit = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (limit.up(), limit.down())
    }

    #[test]
    fn parses_rclone_units() {
        const K: u64 = 1 << 10;
        const M: u64 = 1 << 20;
        let both = |n: u64| (Some(n), Some(n));
        assert_eq!(rates("1M"), both(M));
        assert_eq!(rates("10M"), both(10 * M));
        assert_eq!(rates("1.5M"), both(M + M / 2));
        assert_eq!(rates("512k"), both(512 * K));
        assert_eq!(rates("512K"), both(512 * K));
        assert_eq!(rates("512Ki"), both(512 * K));
        assert_eq!(rates("512KiB"), both(512 * K));
        assert_eq!(rates("1MiB"), both(M));
        assert_eq!(rates("2G"), both(2 << 30));
        assert_eq!(rates("1T"), both(1 << 40));
        assert_eq!(rates("1P"), both(1 << 50));
        assert_eq!(rates("1E"), both(1 << 60));
        // A bare number is KiB/s, as in rclone; B is bytes.
        assert_eq!(rates("100"), both(100 * K));
        assert_eq!(rates("0.5"), both(512));
        assert_eq!(rates("100B"), both(100));
        assert_eq!(rates("100b"), both(100));
        assert_eq!(rates(" 1M "), both(M));
        // UP:DOWN, either may be off.
        assert_eq!(rates("10M:off"), (Some(10 * M), None));
        assert_eq!(rates("off:2M"), (None, Some(2 * M)));
        assert_eq!(rates("512k:2M"), (Some(512 * K), Some(2 * M)));
        assert_eq!(rates("OFF"), (None, None));
        assert_eq!(rates("off:off"), (None, None));
        assert_eq!(rates("0"), (None, None));
        assert_eq!(rates("0:1M"), (None, Some(M)));
        assert!(parse("off:off").unwrap().is_off());
    }

    #[test]
    fn refuses_what_is_not_a_rate_with_a_clear_message() {
        for (text, says) in [
            ("", "empty"),
            ("1M:", "empty"),
            (":1M", "empty"),
            ("-1M", "negative"),
            ("-5", "negative"),
            ("10MB", "write 10M or 10MiB"),
            ("1kb", "write 1k"),
            ("10X", "unknown unit"),
            ("1Xi", "unknown unit"),
            ("1XiB", "unknown unit"),
            ("M", "not a number"),
            ("1.2.3M", "not a number"),
            ("inf", "unknown unit"),
            ("infK", "not a number"),
            ("NaNM", "not a number"),
            ("1e3", "not a number"),
            ("1e3K", "not a number"),
            ("0.0001", "less than 1 byte"),
            ("99999999E", "too large"),
            ("16E", "too large"),
            ("1M:2M:3M", "not a number"),
            ("08:00,512k 18:00,off", "timetables"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.contains("examples"), "{text:?}: {err}");
        }
        // The largest rate that fits is accepted.
        assert_eq!(rates("15E"), (Some(15 << 60), Some(15 << 60)));
    }

    #[test]
    fn shows_as_rclone_and_parses_back() {
        assert_eq!(parse("1M").unwrap().to_string(), "1Mi");
        assert_eq!(parse("10M:off").unwrap().to_string(), "10Mi:off");
        assert_eq!(parse("off:512k").unwrap().to_string(), "off:512Ki");
        assert_eq!(parse("1.5M").unwrap().to_string(), "1.5Mi");
        assert_eq!(parse("100B").unwrap().to_string(), "100B");
        assert_eq!(parse("off").unwrap().to_string(), "off");
        for n in [
            1u64,
            999,
            1023,
            1024,
            1025,
            1_000_000,
            1_572_864,
            123_456_789,
            (1 << 40) + 7,
            u64::MAX / 2,
        ] {
            let limit = BandwidthLimit::new(Some(n), Some(n / 2 + 1));
            let shown = limit.to_string();
            assert_eq!(parse(&shown), Ok(limit), "{n} shown as {shown}");
        }
    }

    #[test]
    fn serde_reads_and_writes_the_text_form() {
        let limit: BandwidthLimit = serde_json::from_str("\"10M:1M\"").unwrap();
        assert_eq!((limit.up(), limit.down()), (Some(10 << 20), Some(1 << 20)));
        assert_eq!(serde_json::to_string(&limit).unwrap(), "\"10Mi:1Mi\"");
        let err = serde_json::from_str::<BandwidthLimit>("\"10MB\"").unwrap_err();
        assert!(err.to_string().contains("write 10M"), "{err}");
    }

    fn bucket(rate: u64) -> TokenBucket {
        TokenBucket::new(NonZeroU64::new(rate).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_holds_its_rate() {
        let b = bucket(1 << 20);
        let start = Instant::now();
        // 10 MiB in 64 KiB requests: 10 s at 1 MiB/s, starting from an empty bucket.
        for _ in 0..160 {
            b.acquire(64 << 10).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(10), "{took:?}");
        assert!(took < Duration::from_millis(10_100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_larger_than_the_burst_goes_into_debt() {
        let b = bucket(1000);
        let start = Instant::now();
        b.acquire(5000).await;
        // Served once a full burst is there; the rest is paid by whoever comes next.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        b.acquire(1).await;
        assert!(
            start.elapsed() >= Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn burst_is_one_second_after_a_pause() {
        let b = bucket(1 << 20);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        // A minute idle buys one second's worth, no more.
        b.acquire(1 << 20).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        b.acquire(512 << 10).await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        assert_eq!(b.burst(), 1 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_acquirers_all_progress_and_share_the_rate() {
        let b = bucket(100 << 10);
        let start = Instant::now();
        let counts: Vec<Arc<std::sync::atomic::AtomicU64>> = (0..20)
            .map(|_| Arc::new(std::sync::atomic::AtomicU64::new(0)))
            .collect();
        let tasks: Vec<_> = counts
            .iter()
            .map(|count| {
                let (b, count) = (b.clone(), count.clone());
                tokio::spawn(async move {
                    for _ in 0..50 {
                        b.acquire(1 << 10).await;
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // After 3 s (300 KiB at 100 KiB/s: 300 pieces among 20 waiters) every one moved.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let seen: Vec<u64> = counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        assert!(seen.iter().all(|n| (10..=20).contains(n)), "{seen:?}");
        assert!(seen.iter().sum::<u64>() <= 301, "{seen:?}");
        for t in tasks {
            t.await.unwrap();
        }
        // 1000 KiB at 100 KiB/s.
        assert!(start.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn huge_and_tiny_rates_neither_spin_nor_overflow() {
        let huge: BandwidthLimit = "15E".parse().unwrap();
        let b = TokenBucket::new(huge.up.unwrap());
        let start = Instant::now();
        for _ in 0..1000 {
            b.acquire(1 << 20).await;
        }
        // Each wait is at least the timer's millisecond; a zero wait would spin forever.
        assert!(
            start.elapsed() <= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(b.piece(), 256 << 10);

        let tiny = bucket(1);
        assert_eq!(tiny.piece(), 1 << 10);
        let start = Instant::now();
        tiny.acquire(1 << 10).await;
        tiny.acquire(1).await;
        // One byte of burst, then 1023 bytes of debt to pay at 1 byte per second.
        assert!(
            start.elapsed() >= Duration::from_secs(1024),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_takes_nothing_and_the_queue_moves_on() {
        let b = bucket(1000);
        let start = Instant::now();
        // A waiter for 1000 bytes is dropped after half a second of waiting.
        let waiting = tokio::time::timeout(Duration::from_millis(500), b.acquire(1000)).await;
        assert!(waiting.is_err());
        // The 500 tokens that came meanwhile are still there: 1000 bytes after 1 s in all.
        b.acquire(1000).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_keeps_bytes_and_errors_and_holds_the_rate() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let chunks = vec![
            Ok(Bytes::copy_from_slice(&data[..100])),
            Ok(Bytes::new()),
            Ok(Bytes::copy_from_slice(&data[100..])),
            Err(crate::error::Error::other("memory", "x", "boom")),
        ];
        let body = futures::stream::iter(chunks).boxed();
        let start = Instant::now();
        let out: Vec<Result<Bytes>> = throttle_stream(body, bucket(100 << 10)).collect().await;
        let took = start.elapsed();
        let (ok, err): (Vec<_>, Vec<_>) = out.into_iter().partition(|r| r.is_ok());
        let got: Vec<u8> = ok.into_iter().flat_map(|r| r.unwrap().to_vec()).collect();
        assert_eq!(got, data);
        assert_eq!(err.len(), 1);
        // 300 000 bytes at 102 400 bytes/s.
        assert!(
            took >= Duration::from_secs_f64(300_000.0 / 102_400.0 - 0.001),
            "{took:?}"
        );
    }
}
