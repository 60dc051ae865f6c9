//! A hostile HTTP proxy for syncengine's backend tests (never a dependency of the library).
//!
//! [`Proxy`] listens on 127.0.0.1 and forwards every request to a test server (Apache, wsgidav,
//! moto…), and the test chooses requests, by method and path ([`Matcher`]), that it holds until
//! released, delays, answers itself instead of the server, or whose answer it rewrites. That is
//! how a test plays "another machine saves its version at this very moment" against a real
//! server: hold the engine's request, write straight to the server, release.
//!
//! Each connection carries one request: the proxy forwards it with `Connection: close`, so the
//! client opens a new connection for its next request and every request meets the rules.
//! Bodies stream through both ways; only an answer that is rewritten is read whole first.
//!
//! ```no_run
//! use std::time::Duration;
//! use syncengine_test_proxy::{Matcher, Proxy};
//!
//! # async fn example() -> std::io::Result<()> {
//! // In front of the server at this URL (or `host:port`).
//! let proxy = Proxy::start("http://127.0.0.1:8082/dav")?;
//! // The client under test talks to the proxy instead of the server.
//! let through_proxy = format!("{}/dav/my-root", proxy.url());
//! # let _ = through_proxy;
//! proxy.hold(Matcher::method("MOVE").path_ends_with("/doc.txt"));
//! // … start the engine's run in the background (a `tokio::spawn`) …
//! assert!(proxy.held_within(1, Duration::from_secs(30)).await, "the MOVE never came");
//! // … save another version of doc.txt straight to the server …
//! proxy.release();
//! # Ok(())
//! # }
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use tokio::sync::watch;

pub mod edit;

/// The head of a request as the proxy saw it: what a [`Matcher`] and an answer look at.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// The method, as sent (`PUT`, `PROPFIND`…).
    pub method: String,
    /// The request target as sent: the path, percent-encoded, with its query.
    pub target: String,
}

impl Request {
    /// Returns a request head with this method and target.
    pub fn new(method: impl Into<String>, target: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            target: target.into(),
        }
    }
}

/// Chooses requests by method and path (the request target, query included, as sent).
///
/// Conditions add up: `Matcher::method("PUT").path_ends_with("/x.txt").path_lacks(".tmp")`
/// takes a `PUT` of a path ending in `/x.txt` that has no `.tmp` in it. [`or`](Matcher::or)
/// takes a request either side takes; a condition added after it applies to both sides.
#[derive(Clone, Debug)]
pub struct Matcher(Kind);

#[derive(Clone, Debug)]
enum Kind {
    All {
        method: Option<String>,
        ends_with: Vec<String>,
        contains: Vec<String>,
        lacks: Vec<String>,
    },
    Either(Vec<Matcher>),
}

impl Matcher {
    /// Returns a matcher that takes every request.
    pub fn any() -> Self {
        Matcher(Kind::All {
            method: None,
            ends_with: Vec::new(),
            contains: Vec::new(),
            lacks: Vec::new(),
        })
    }

    /// Returns a matcher that takes every request with this method.
    pub fn method(method: &str) -> Self {
        let mut m = Matcher::any();
        if let Kind::All { method: slot, .. } = &mut m.0 {
            *slot = Some(method.to_owned());
        }
        m
    }

    /// Takes only requests whose target ends with `end`.
    pub fn path_ends_with(self, end: &str) -> Self {
        self.with(|ends_with, _, _| ends_with.push(end.to_owned()))
    }

    /// Takes only requests whose target contains `part`.
    pub fn path_contains(self, part: &str) -> Self {
        self.with(|_, contains, _| contains.push(part.to_owned()))
    }

    /// Takes only requests whose target does not contain `part`.
    pub fn path_lacks(self, part: &str) -> Self {
        self.with(|_, _, lacks| lacks.push(part.to_owned()))
    }

    /// Takes the requests this matcher takes and those `other` takes.
    pub fn or(self, other: Matcher) -> Self {
        Matcher(Kind::Either(vec![self, other]))
    }

    /// Returns whether this matcher takes `request`.
    pub fn matches(&self, request: &Request) -> bool {
        match &self.0 {
            Kind::All {
                method,
                ends_with,
                contains,
                lacks,
            } => {
                let t = request.target.as_str();
                method.as_deref().is_none_or(|m| m == request.method)
                    && ends_with.iter().all(|e| t.ends_with(e.as_str()))
                    && contains.iter().all(|c| t.contains(c.as_str()))
                    && !lacks.iter().any(|l| t.contains(l.as_str()))
            }
            Kind::Either(sides) => sides.iter().any(|m| m.matches(request)),
        }
    }

    /// Adds a condition to every side (a condition after `or` applies to both).
    fn with(
        mut self,
        add: impl Fn(&mut Vec<String>, &mut Vec<String>, &mut Vec<String>) + Copy,
    ) -> Self {
        match &mut self.0 {
            Kind::All {
                ends_with,
                contains,
                lacks,
                ..
            } => add(ends_with, contains, lacks),
            Kind::Either(sides) => {
                *sides = std::mem::take(sides)
                    .into_iter()
                    .map(|m| m.with(add))
                    .collect();
            }
        }
        self
    }
}

type AnswerFn = Arc<dyn Fn(&Request) -> String + Send + Sync>;
type EditFn = Arc<dyn Fn(&mut [u8]) + Send + Sync>;

/// The rules the test has set, looked up once per request.
#[derive(Default)]
struct Rules {
    holds: Vec<Matcher>,
    delays: Vec<(Matcher, Duration)>,
    answers: Vec<(Matcher, AnswerFn)>,
    http10: Vec<Matcher>,
    edits: Vec<(Matcher, EditFn)>,
    throttles: Vec<(Matcher, u64)>,
    stalls: Vec<(Matcher, Direction, u64)>,
    cuts: Vec<(Matcher, Direction, u64)>,
}

/// Which way bytes go through the proxy, for [`Proxy::stall_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The request, from client to server (an upload's body).
    Request,
    /// The answer, from server to client (a download's body).
    Answer,
}

/// How one direction of a connection is copied.
#[derive(Clone, Copy, Debug, Default)]
struct Pace {
    /// Bytes per second at most.
    rate: Option<u64>,
    /// Bytes after which nothing more goes through (the connection stays open).
    stall_after: Option<u64>,
    /// Bytes after which the connection is closed both ways, to the client and the server.
    cut_after: Option<u64>,
}

/// What the rules say about one request.
struct Plan {
    answer: Option<AnswerFn>,
    hold: bool,
    delay: Duration,
    http10: bool,
    edits: Vec<EditFn>,
    request_pace: Pace,
    answer_pace: Pace,
}

impl Rules {
    fn pace(&self, request: &Request, direction: Direction) -> Pace {
        Pace {
            rate: self
                .throttles
                .iter()
                .filter(|(m, _)| m.matches(request))
                .map(|(_, r)| *r)
                .min(),
            stall_after: self
                .stalls
                .iter()
                .filter(|(m, d, _)| *d == direction && m.matches(request))
                .map(|(_, _, n)| *n)
                .min(),
            cut_after: self
                .cuts
                .iter()
                .filter(|(m, d, _)| *d == direction && m.matches(request))
                .map(|(_, _, n)| *n)
                .min(),
        }
    }

    fn plan(&mut self, request: &Request) -> Plan {
        let answer = self
            .answers
            .iter()
            .find(|(m, _)| m.matches(request))
            .map(|(_, a)| a.clone());
        // A hold is taken by the one request it holds; an answered request takes none.
        let hold = answer.is_none()
            && match self.holds.iter().position(|m| m.matches(request)) {
                Some(at) => {
                    self.holds.remove(at);
                    true
                }
                None => false,
            };
        Plan {
            answer,
            hold,
            delay: self
                .delays
                .iter()
                .filter(|(m, _)| m.matches(request))
                .map(|(_, d)| *d)
                .sum(),
            http10: self.http10.iter().any(|m| m.matches(request)),
            edits: self
                .edits
                .iter()
                .filter(|(m, _)| m.matches(request))
                .map(|(_, e)| e.clone())
                .collect(),
            request_pace: self.pace(request, Direction::Request),
            answer_pace: self.pace(request, Direction::Answer),
        }
    }
}

struct Shared {
    upstream: String,
    rules: Mutex<Rules>,
    /// Requests held so far; async waiters watch it.
    held: watch::Sender<u32>,
    /// Releases so far: the held request with ticket `n` goes on once this reaches `n`.
    released: Mutex<u32>,
    cv: Condvar,
    drop_released: AtomicBool,
    stopped: AtomicBool,
}

impl Shared {
    fn rules(&self) -> MutexGuard<'_, Rules> {
        // A panicking test thread must not take the other tests' proxy down with it.
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn released(&self) -> MutexGuard<'_, u32> {
        self.released.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A loopback HTTP proxy in front of one test server; see the [crate docs](crate).
///
/// Rules apply to requests that arrive after they are set. Dropping the proxy stops it: it
/// accepts no more connections and drops the requests it holds.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 in front of `upstream`: a `host:port`, or a
    /// server URL whose `host:port` is taken (its path is not: the client's request targets
    /// go to the server as they are).
    ///
    /// # Errors
    /// When no port on 127.0.0.1 can be bound.
    pub fn start(upstream: &str) -> io::Result<Proxy> {
        Proxy::start_on(upstream, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts a proxy on `addr` in front of `upstream` (as [`start`](Proxy::start) does):
    /// how a test brings a server "back" at the address of a proxy it dropped, so that the
    /// pair's remote keeps its identity. The address of a dropped proxy is free again once its
    /// accepting thread has ended, which may take a moment; the caller retries.
    ///
    /// # Errors
    /// When `addr` cannot be bound (in use, or not local).
    pub fn start_on(upstream: &str, addr: SocketAddr) -> io::Result<Proxy> {
        let authority = match upstream.split_once("://") {
            Some((_, rest)) => rest.split_once('/').map_or(rest, |(a, _)| a),
            None => upstream,
        };
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: authority.to_owned(),
            rules: Mutex::default(),
            held: watch::Sender::new(0),
            released: Mutex::new(0),
            cv: Condvar::new(),
            drop_released: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accepting.clone();
                // A thread a connection: a held request blocks only its own.
                thread::spawn(move || {
                    let _ = serve(stream, shared);
                });
            }
        });
        Ok(Proxy { addr, shared })
    }

    /// Returns the proxy's address on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the proxy's base URL, `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds the next request `matcher` takes until [`release`](Proxy::release) lets it go.
    ///
    /// # Behavior
    /// One call holds one request (later ones pass). Holds are numbered in the order they
    /// catch their request, and each release lets the next one go; a release that comes
    /// before its request lets that request through at once.
    pub fn hold(&self, matcher: Matcher) {
        self.shared.rules().holds.push(matcher);
    }

    /// Returns how many requests have been held so far.
    pub fn held(&self) -> u32 {
        *self.shared.held.borrow()
    }

    /// Waits until `n` requests in all have been held; `false` when `timeout` passed first.
    pub async fn held_within(&self, n: u32, timeout: Duration) -> bool {
        let mut held = self.shared.held.subscribe();
        tokio::time::timeout(timeout, held.wait_for(|&h| h >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Lets the longest-held request go on (or the next one to be held, if none is).
    pub fn release(&self) {
        *self.shared.released() += 1;
        self.shared.cv.notify_all();
    }

    /// From now on, a held request is dropped when released (as if its client was killed
    /// while it was on its way), not forwarded.
    pub fn drop_released(&self) {
        self.shared.drop_released.store(true, Ordering::SeqCst);
    }

    /// Delays every request `matcher` takes by `delay` before it is forwarded.
    pub fn delay(&self, matcher: Matcher, delay: Duration) {
        self.shared.rules().delays.push((matcher, delay));
    }

    /// Answers every request `matcher` takes with what `answer` returns (the raw answer:
    /// status line, headers, body) instead of forwarding it; the connection is closed after.
    pub fn answer(
        &self,
        matcher: Matcher,
        answer: impl Fn(&Request) -> String + Send + Sync + 'static,
    ) {
        self.shared
            .rules()
            .answers
            .push((matcher, Arc::new(answer)));
    }

    /// Fails every request `matcher` takes with `status` and an empty body, instead of
    /// forwarding it.
    pub fn fail(&self, matcher: Matcher, status: u16) {
        self.answer(matcher, move |_| {
            format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        });
    }

    /// Sends every request `matcher` takes as HTTP/1.0, so that its answer comes whole, not
    /// chunked, and an [`edit_answers`](Proxy::edit_answers) rule can edit the body in place.
    pub fn send_as_http10(&self, matcher: Matcher) {
        self.shared.rules().http10.push(matcher);
    }

    /// Removes every rule set so far (holds not yet taken, delays, answers, HTTP/1.0 and
    /// edits), so that later requests are forwarded untouched: the server turns well-behaved
    /// again for the next run, behind the same address (a pair's remote keeps its identity).
    /// Requests already held stay held until released, and [`drop_released`] stays on.
    ///
    /// [`drop_released`]: Proxy::drop_released
    pub fn clear(&self) {
        *self.shared.rules() = Rules::default();
    }

    /// Edits the answer (head and body, as received) to every request `matcher` takes before
    /// it goes back to the client. The edit cannot change the answer's length, so its framing
    /// stays valid: blank or rename in place (see [`edit`]).
    pub fn edit_answers(&self, matcher: Matcher, edit: impl Fn(&mut [u8]) + Send + Sync + 'static) {
        self.shared.rules().edits.push((matcher, Arc::new(edit)));
    }

    /// Lets the bytes of every request `matcher` takes through at `bytes_per_second` at most,
    /// both ways (head and body): a slow link.
    pub fn throttle(&self, matcher: Matcher, bytes_per_second: u64) {
        self.shared
            .rules()
            .throttles
            .push((matcher, bytes_per_second.max(1)));
    }

    /// For every request `matcher` takes, lets `bytes` go `direction` (counted from the start
    /// of the request, head included, or of the answer), then nothing more, with the
    /// connection left open until the proxy is dropped: a link that went silent mid-transfer.
    pub fn stall_after(&self, matcher: Matcher, direction: Direction, bytes: u64) {
        self.shared.rules().stalls.push((matcher, direction, bytes));
    }

    /// For every request `matcher` takes, lets `bytes` go `direction` (counted as for
    /// [`stall_after`](Proxy::stall_after)), then closes the connection both ways, to the
    /// client and to the server: a link cut mid-transfer (the server sees its request body,
    /// or the client its answer, end early).
    pub fn cut_after(&self, matcher: Matcher, direction: Direction, bytes: u64) {
        self.shared.rules().cuts.push((matcher, direction, bytes));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        *self.shared.released() = u32::MAX;
        self.shared.cv.notify_all();
        // Wakes the accepting thread, which then sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves one connection: one request, forwarded (or held, delayed, answered) by the rules.
fn serve(client: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let done = line == "\r\n";
        head.push(line);
        if done {
            break;
        }
    }
    let mut parts = head[0].split_whitespace();
    let request = Request::new(parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let plan = shared.rules().plan(&request);
    let mut client = client;
    if let Some(answer) = plan.answer {
        return client.write_all(answer(&request).as_bytes());
    }
    if plan.hold {
        let mut ticket = 0;
        shared.held.send_modify(|held| {
            *held += 1;
            ticket = *held;
        });
        let mut released = shared.released();
        while *released < ticket {
            released = shared
                .cv
                .wait(released)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(released);
        if shared.drop_released.load(Ordering::SeqCst) || shared.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
    if !plan.delay.is_zero() {
        thread::sleep(plan.delay);
    }
    let up = TcpStream::connect(&shared.upstream)?;
    let mut sent_head = Vec::new();
    for (i, line) in head.iter().enumerate() {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            sent_head.extend_from_slice(b"Connection: close\r\n");
        }
        match line.strip_suffix("HTTP/1.1\r\n") {
            Some(start) if i == 0 && plan.http10 => {
                sent_head.extend_from_slice(format!("{start}HTTP/1.0\r\n").as_bytes());
            }
            _ => sent_head.extend_from_slice(line.as_bytes()),
        }
    }
    let mut up_write = up.try_clone()?;
    let request_pace = plan.request_pace;
    let for_request = shared.clone();
    let client_for_request = client.try_clone()?;
    thread::spawn(move || {
        let piped = pipe(
            &mut io::Cursor::new(sent_head).chain(reader),
            &mut up_write,
            request_pace,
            &for_request,
        );
        if matches!(piped, Ok(Piped::Cut)) {
            let _ = up_write.shutdown(Shutdown::Both);
            let _ = client_for_request.shutdown(Shutdown::Both);
        }
    });
    let mut up = up;
    if plan.edits.is_empty() {
        if matches!(
            pipe(&mut up, &mut client, plan.answer_pace, &shared),
            Ok(Piped::Cut)
        ) {
            let _ = up.shutdown(Shutdown::Both);
        }
    } else {
        let mut answer = Vec::new();
        let _ = up.read_to_end(&mut answer);
        for edit in &plan.edits {
            edit(&mut answer);
        }
        let _ = client.write_all(&answer);
    }
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// How a [`pipe`] ended.
enum Piped {
    /// The source ended (or the proxy was dropped during a stall).
    Done,
    /// The pace's `cut_after` was reached: the caller closes the connection.
    Cut,
}

/// Copies `from` to `to` at the pace asked for; when the pace says to stall, waits (bytes
/// unread, connection open) until the proxy is dropped; when it says to cut, stops there.
fn pipe(
    from: &mut impl Read,
    to: &mut impl Write,
    pace: Pace,
    shared: &Shared,
) -> io::Result<Piped> {
    if pace.rate.is_none() && pace.stall_after.is_none() && pace.cut_after.is_none() {
        io::copy(from, to)?;
        return Ok(Piped::Done);
    }
    let started = std::time::Instant::now();
    let mut moved: u64 = 0;
    // A tenth of a second's worth at a time, so the pace is even.
    let step = pace
        .rate
        .map_or(64 * 1024, |r| (r / 10).clamp(1, 64 * 1024)) as usize;
    let mut buf = vec![0u8; step];
    loop {
        if pace.cut_after.is_some_and(|limit| moved >= limit) {
            return Ok(Piped::Cut);
        }
        let room = [pace.stall_after, pace.cut_after]
            .into_iter()
            .flatten()
            .min()
            .map_or(step as u64, |limit| {
                limit.saturating_sub(moved).min(step as u64)
            });
        if room == 0 {
            while !shared.stopped.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
            return Ok(Piped::Done);
        }
        let n = from.read(&mut buf[..room as usize])?;
        if n == 0 {
            return Ok(Piped::Done);
        }
        to.write_all(&buf[..n])?;
        moved += n as u64;
        if let Some(rate) = pace.rate {
            let due = Duration::from_secs_f64(moved as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                thread::sleep(wait);
            }
        }
    }
}

#[cfg(test)]
mod tests;
