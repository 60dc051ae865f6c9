//! Single-client storage cases: one per promise of the [`StorageClient`] contract.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::client::{
    ByteStream, ReadOptions, StorageClient, StorageClientExt, TransferOptions, WriteMode,
    WriteOptions, bytes_stream,
};
use crate::entry::{ContentHash, Entry, HashKind, Version, system_time_to_nanos, truncate_nanos};
use crate::error::Error;
use crate::path::RelPath;

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap_or_else(|e| panic!("test path {s:?} is invalid: {e}"))
}

fn skip(client: &dyn StorageClient, case: &str, why: &str) {
    eprintln!("conformance: {client}: skipping {case}: {why}");
}

/// Deterministic, non-repeating-looking content of `len` bytes.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u64::from(seed)) as u8
                ^ (i >> 13) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Splits `data` into a stream of `chunk`-sized pieces.
fn chunked(data: Bytes, chunk: usize) -> ByteStream {
    let pieces: Vec<crate::Result<Bytes>> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
        .collect();
    stream::iter(pieces).boxed()
}

async fn put(client: &dyn StorageClient, path: &str, data: impl Into<Bytes>) -> Entry {
    let data = data.into();
    client
        .put(&p(path), data)
        .await
        .unwrap_or_else(|e| panic!("{client}: writing {path:?} failed: {e}"))
}

async fn read(client: &dyn StorageClient, path: &str) -> Bytes {
    client
        .read_to_bytes(&p(path))
        .await
        .unwrap_or_else(|e| panic!("{client}: reading {path:?} failed: {e}"))
}

async fn read_range(client: &dyn StorageClient, path: &str, range: std::ops::Range<u64>) -> Bytes {
    let stream = client
        .read_opts(&p(path), ReadOptions::default().with_range(range.clone()))
        .await
        .unwrap_or_else(|e| panic!("{client}: reading {path:?} range {range:?} failed: {e}"));
    let chunks: Vec<Bytes> = stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{client}: streaming {path:?} range {range:?} failed: {e}"));
    chunks.concat().into()
}

async fn list(client: &dyn StorageClient, prefix: Option<&str>) -> Vec<Entry> {
    let prefix = prefix.map(p);
    client
        .list_all(prefix.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{client}: listing {prefix:?} failed: {e}"))
}

async fn list_paths(client: &dyn StorageClient, prefix: Option<&str>) -> Vec<String> {
    list(client, prefix)
        .await
        .into_iter()
        .map(|e| e.path.into_string())
        .collect()
}

/// Checks a listing against the expected set of paths: equal to the byte-wise sort when the
/// client promises an ordered listing, a permutation (each path once) otherwise.
fn assert_listing(client: &dyn StorageClient, what: &str, got: &[String], expected: &[&str]) {
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    if client.capabilities().ordered_listing {
        assert_eq!(
            got, want,
            "{client}: {what}: listing must be exactly these paths in canonical (byte-wise) order"
        );
    } else {
        let mut sorted = got.to_vec();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(
            sorted, want,
            "{client}: {what}: unordered listing must hold exactly these paths, each once"
        );
    }
}

fn assert_err<T: std::fmt::Debug>(
    client: &dyn StorageClient,
    what: &str,
    result: crate::Result<T>,
    pred: fn(&Error) -> bool,
    expected: &str,
) {
    match result {
        Err(e) if pred(&e) => {}
        Err(e) => panic!("{client}: {what}: expected {expected}, got error {e:?}"),
        Ok(v) => panic!("{client}: {what}: expected {expected}, got Ok({v:?})"),
    }
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound { .. })
}
fn is_already_exists(e: &Error) -> bool {
    matches!(e, Error::AlreadyExists { .. })
}
fn is_precondition_failed(e: &Error) -> bool {
    matches!(e, Error::PreconditionFailed { .. })
}
fn is_unsupported(e: &Error) -> bool {
    matches!(e, Error::Unsupported { .. })
}

/// Checks that an entry describes `data` (size, and the listed hash where promised).
fn assert_entry_describes(client: &dyn StorageClient, what: &str, entry: &Entry, data: &[u8]) {
    assert_eq!(
        entry.size,
        data.len() as u64,
        "{client}: {what}: entry size must equal the content length"
    );
    if client.capabilities().listed_hash == Some(HashKind::Md5) {
        use md5::{Digest, Md5};
        let want = ContentHash::Md5(Md5::digest(data).into());
        assert_eq!(
            entry.hash.as_ref(),
            Some(&want),
            "{client}: {what}: capabilities promise an MD5 in entries"
        );
    }
    if client.capabilities().etag {
        assert!(
            entry.etag.is_some(),
            "{client}: {what}: capabilities promise an etag in entries"
        );
    }
    if client.capabilities().file_id {
        assert!(
            entry.file_id.is_some(),
            "{client}: {what}: capabilities promise a file_id in entries"
        );
    }
}

async fn round_trip(client: &dyn StorageClient, path: &str, data: Bytes, chunk: usize) {
    let written = client
        .write_opts(
            &p(path),
            chunked(data.clone(), chunk),
            WriteOptions::default().with_size_hint(data.len() as u64),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{client}: writing {} bytes to {path:?} failed: {e}",
                data.len()
            )
        });
    assert_eq!(
        written.path,
        p(path),
        "{client}: write must return the written path"
    );
    assert_entry_describes(client, "entry returned by write", &written, &data);
    let back = read(client, path).await;
    assert!(
        back == data,
        "{client}: {path:?}: read back {} bytes that differ from the {} written",
        back.len(),
        data.len()
    );
    let stat = client
        .stat(&p(path))
        .await
        .unwrap_or_else(|e| panic!("{client}: stat {path:?} failed: {e}"));
    assert_entry_describes(client, "entry returned by stat", &stat, &data);
    let listed = list(client, None).await;
    assert_eq!(
        listed.len(),
        1,
        "{client}: exactly the one written file is listed"
    );
    assert_entry_describes(client, "listed entry", &listed[0], &data);
}

/// An empty (0-byte) file round-trips through write, read, stat and list.
pub async fn round_trip_empty(client: &dyn StorageClient) {
    round_trip(client, "empty", Bytes::new(), 1).await;
    // An empty body stream (no chunk at all) must also produce an empty file.
    client
        .write_opts(
            &p("no-chunks"),
            stream::empty().boxed(),
            WriteOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{client}: writing an empty stream failed: {e}"));
    assert_eq!(
        read(client, "no-chunks").await.len(),
        0,
        "{client}: empty stream gives empty file"
    );
}

/// A 1-byte file round-trips.
pub async fn round_trip_one_byte(client: &dyn StorageClient) {
    round_trip(client, "one", Bytes::from_static(b"x"), 1).await;
}

/// A 5 MiB file, written as many odd-sized chunks, round-trips intact.
pub async fn round_trip_multi_mib(client: &dyn StorageClient) {
    let data = pattern(5 * 1024 * 1024 + 17, 3);
    round_trip(client, "dir/big.bin", data.clone(), 100_003).await;
    let hash = client.md5(&p("dir/big.bin")).await.unwrap();
    use md5::{Digest, Md5};
    assert_eq!(
        hash,
        ContentHash::Md5(Md5::digest(&data).into()),
        "{client}: streamed MD5 of the big file must match"
    );
}

/// Writing an existing path with the default mode replaces its content and size.
pub async fn overwrite_replaces(client: &dyn StorageClient) {
    put(client, "f", "a much longer first version").await;
    let entry = put(client, "f", "short").await;
    assert_entry_describes(client, "overwrite", &entry, b"short");
    assert_eq!(
        read(client, "f").await,
        "short",
        "{client}: overwrite must replace content"
    );
    assert_eq!(
        list_paths(client, None).await,
        ["f"],
        "{client}: overwrite lists one file"
    );
}

/// `stat` and `list` agree on size, mtime, etag, hash and file id.
pub async fn stat_matches_listing(client: &dyn StorageClient) {
    put(client, "a/one", "1").await;
    put(client, "a/two", "22").await;
    for listed in list(client, None).await {
        let stat = client.stat(&listed.path).await.unwrap();
        assert_eq!(stat.path, listed.path, "{client}: stat path");
        assert_eq!(
            stat.size, listed.size,
            "{client}: stat and list sizes differ"
        );
        assert_eq!(
            stat.mtime, listed.mtime,
            "{client}: stat and list mtimes differ"
        );
        assert_eq!(
            stat.etag, listed.etag,
            "{client}: stat and list etags differ"
        );
        assert_eq!(
            stat.hash, listed.hash,
            "{client}: stat and list hashes differ"
        );
        assert_eq!(
            stat.file_id, listed.file_id,
            "{client}: stat and list file ids differ"
        );
    }
}

/// Range reads return the requested bytes, clamped at the end of the file.
pub async fn range_reads(client: &dyn StorageClient) {
    let data = pattern(300_000, 9);
    client
        .write_opts(
            &p("r"),
            chunked(data.clone(), 65_536),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    let len = data.len() as u64;
    for range in [
        0..1,
        0..len,
        5..17,
        70_000..200_001,
        len - 3..len,
        len - 3..len + 1000,
    ] {
        let want = data.slice(range.start as usize..(range.end.min(len)) as usize);
        let got = read_range(client, "r", range.clone()).await;
        assert!(
            got == want,
            "{client}: range {range:?} returned {} wrong bytes",
            got.len()
        );
    }
    for range in [len..len + 10, len + 5..len + 10, 10..10] {
        let got = read_range(client, "r", range.clone()).await;
        assert!(
            got.is_empty(),
            "{client}: range {range:?} must be empty, got {} bytes",
            got.len()
        );
    }
}

const HOSTILE: &[&str] = &[
    "a b",
    "a-b",
    "a.b",
    "a/b",
    "a0",
    "aB",
    "a~",
    "é",
    "#x",
    "q?",
    "it's",
    "\"quoted\"",
    "100%",
    "back\\slash",
    "-leading-dash",
    "日本/語.txt",
    "a/b c/d",
];

/// Hostile names round-trip, and the listing is in canonical byte-wise order (or a permutation
/// of it when the client says its listing is unordered).
pub async fn canonical_order_hostile_names(client: &dyn StorageClient) {
    for name in HOSTILE {
        put(client, name, *name).await;
    }
    for name in HOSTILE {
        assert_eq!(
            read(client, name).await,
            *name,
            "{client}: content of {name:?}"
        );
    }
    let got = list_paths(client, None).await;
    assert_listing(client, "hostile names", &got, HOSTILE);
}

/// Names that some backends cannot hold as they are: control characters, `\\` and the
/// characters rclone encodes it with, trailing and leading spaces and dots, names longer than
/// a file system allows.
fn edgy_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "ctl\u{1}x",
        "tab\tname",
        "cr\rlf",
        "del\u{7f}",
        "back\\slash",
        "dir\\/x",
        "full\u{FF3C}width",
        "quote\u{201B}\u{FF3C}",
        "trail ",
        "trail.",
        " lead",
        "dots..",
        "d./x",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    names.push("n".repeat(255));
    names.push("l".repeat(300));
    names
}

/// The one path rule: a name is either written and then listed, stat-ed and read back under
/// exactly that name, or refused by the write with an error for that file that leaves nothing
/// behind. The engine never creates what its next listing cannot read (an unknown entry) or
/// reads as another name.
pub async fn unholdable_names_are_refused_or_read_back(client: &dyn StorageClient) {
    let mut held = Vec::new();
    for name in edgy_names() {
        match client.put(&p(&name), Bytes::from(name.clone())).await {
            Ok(_) => held.push(name),
            Err(e) => assert!(
                !e.is_transient(),
                "{client}: refusing {name:?} must be a lasting per-file error: {e}"
            ),
        }
    }
    let mut listed = Vec::new();
    let mut entries = client.list(None);
    while let Some(item) = entries.next().await {
        match item {
            Ok(e) => listed.push(e.path.into_string()),
            Err(e) => panic!(
                "{client}: a name the client wrote cannot be listed back ({e}); written: {held:?}"
            ),
        }
    }
    let want: Vec<&str> = held.iter().map(String::as_str).collect();
    assert_listing(client, "edgy names that were written", &listed, &want);
    for name in &held {
        assert_eq!(
            read(client, name).await,
            name.as_bytes(),
            "{client}: {name:?}"
        );
        let entry = client
            .stat(&p(name))
            .await
            .unwrap_or_else(|e| panic!("{client}: stat {name:?}: {e}"));
        assert_eq!(
            entry.path.as_str(),
            name,
            "{client}: stat names the same path"
        );
    }
}

/// A three-level tree where directory and file names interleave lists in canonical order,
/// also below a prefix.
pub async fn canonical_order_nested(client: &dyn StorageClient) {
    let mut paths = vec![
        "a.b", "a/x.y", "a/x/1", "a/x/1.z", "a/x-", "a/x0", "a0", "a-/b", "b/a/a", "b/a.a",
        "b/a/b/c", "b/a/b.c", "b/ab", "z",
    ];
    // Without real directories a path can be a file and a prefix at once.
    if !client.capabilities().real_directories {
        paths.extend(["a", "a/x"]);
    }
    for path in &paths {
        put(client, path, *path).await;
    }
    assert_listing(
        client,
        "nested tree",
        &list_paths(client, None).await,
        &paths,
    );
    let below_b: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|s| s.starts_with("b/"))
        .collect();
    assert_listing(
        client,
        "nested tree below b",
        &list_paths(client, Some("b")).await,
        &below_b,
    );
    let below_ax: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|s| s.starts_with("a/x/"))
        .collect();
    assert_listing(
        client,
        "nested tree below a/x",
        &list_paths(client, Some("a/x")).await,
        &below_ax,
    );
}

/// A prefix is a directory: `a` lists `a/x` and `a/y/z` but neither `a` itself nor `ab`,
/// `a.b` or `a-b`.
pub async fn prefix_boundaries(client: &dyn StorageClient) {
    let mut paths = vec!["a/x", "a/y/z", "ab", "a.b", "a-b", "a0/x", "b/a/x"];
    if !client.capabilities().real_directories {
        paths.push("a");
    }
    for path in &paths {
        put(client, path, *path).await;
    }
    assert_listing(
        client,
        "prefix a",
        &list_paths(client, Some("a")).await,
        &["a/x", "a/y/z"],
    );
    assert_listing(
        client,
        "prefix a/y",
        &list_paths(client, Some("a/y")).await,
        &["a/y/z"],
    );
    assert_listing(
        client,
        "prefix b",
        &list_paths(client, Some("b")).await,
        &["b/a/x"],
    );
    assert_listing(
        client,
        "whole root",
        &list_paths(client, None).await,
        &paths,
    );
}

/// Missing paths: `stat` and `read` give `NotFound`, `delete` is `Ok`, listing a missing
/// prefix (or a prefix that is a file) yields nothing.
pub async fn missing_paths(client: &dyn StorageClient) {
    put(client, "present/file", "x").await;
    for missing in [
        "nope",
        "present/nope",
        "nope/deeper/file",
        "present/file/below",
    ] {
        assert_err(
            client,
            &format!("stat of missing {missing:?}"),
            client.stat(&p(missing)).await,
            is_not_found,
            "NotFound",
        );
        assert_err(
            client,
            &format!("read of missing {missing:?}"),
            client.read(&p(missing)).await.map(|_| ()),
            is_not_found,
            "NotFound",
        );
        client
            .delete(&p(missing))
            .await
            .unwrap_or_else(|e| panic!("{client}: deleting missing {missing:?} must be Ok: {e}"));
    }
    assert!(
        list_paths(client, Some("nope")).await.is_empty(),
        "{client}: missing prefix lists nothing"
    );
    assert!(
        list_paths(client, Some("present/file")).await.is_empty(),
        "{client}: a prefix naming a file lists nothing"
    );
    assert_eq!(
        list_paths(client, None).await,
        ["present/file"],
        "{client}: nothing else appeared"
    );
}

/// A directory is not a file: `stat`/`read` of it give `NotFound`, and deleting it as a file
/// never removes what is below it.
pub async fn directory_is_not_a_file(client: &dyn StorageClient) {
    put(client, "d/x", "x").await;
    put(client, "d/e/y", "y").await;
    assert_err(
        client,
        "stat of a directory",
        client.stat(&p("d")).await,
        is_not_found,
        "NotFound",
    );
    assert_err(
        client,
        "read of a directory",
        client.read(&p("d")).await.map(|_| ()),
        is_not_found,
        "NotFound",
    );
    let _ = client.delete(&p("d")).await;
    let _ = client.delete(&p("d/e")).await;
    assert_listing(
        client,
        "after deleting directory paths as files",
        &list_paths(client, None).await,
        &["d/e/y", "d/x"],
    );
}

/// Writes create missing parent directories, and deleting the last file below them removes
/// them again (where directories are real) without touching siblings.
pub async fn write_creates_parents(client: &dyn StorageClient) {
    put(client, "p/q/r/s/file", "deep").await;
    put(client, "p/sibling", "s").await;
    assert_eq!(
        read(client, "p/q/r/s/file").await,
        "deep",
        "{client}: deep write"
    );
    client.delete(&p("p/q/r/s/file")).await.unwrap();
    assert_eq!(
        list_paths(client, None).await,
        ["p/sibling"],
        "{client}: only the sibling is left"
    );
    // Writing below the now (possibly) removed directories works again.
    put(client, "p/q/again", "again").await;
    assert_listing(
        client,
        "rewrite",
        &list_paths(client, None).await,
        &["p/q/again", "p/sibling"],
    );
}

/// A file can take the place of a directory whose last files were deleted and renamed away:
/// where directories are real, the delete and the rename removed the emptied directories
/// (else a type change from folder to file could never be synced), and the file lists as one.
pub async fn emptied_directory_becomes_a_file(client: &dyn StorageClient) {
    put(client, "d/e/x", "x").await;
    put(client, "d/y", "y").await;
    put(client, "top", "top").await;
    client
        .delete(&p("d/e/x"))
        .await
        .unwrap_or_else(|e| panic!("{client}: deleting the last file of a directory failed: {e}"));
    let mut want = vec!["d", "top"];
    match client.rename(&p("d/y"), &p("moved")).await {
        Ok(_) => want.push("moved"),
        Err(Error::Unsupported { .. }) => client.delete(&p("d/y")).await.unwrap(),
        Err(e) => panic!("{client}: renaming the last file out of a directory failed: {e}"),
    }
    client
        .write_opts(
            &p("d"),
            bytes_stream(Bytes::from("now a file")),
            WriteOptions::default().with_mode(WriteMode::Create),
        )
        .await
        .unwrap_or_else(|e| {
            panic!("{client}: a file could not take the place of an emptied directory: {e}")
        });
    assert_eq!(
        read(client, "d").await,
        "now a file",
        "{client}: the file at the emptied directory's path"
    );
    assert_listing(
        client,
        "a file where an emptied directory was",
        &list_paths(client, None).await,
        &want,
    );
}

/// `WriteMode::Create` writes a new file and refuses an existing one, leaving it intact.
pub async fn write_create_mode(client: &dyn StorageClient) {
    let create = || WriteOptions::default().with_mode(WriteMode::Create);
    client
        .write_opts(&p("c/new"), bytes_stream(Bytes::from("first")), create())
        .await
        .unwrap_or_else(|e| panic!("{client}: Create of a new file failed: {e}"));
    assert_err(
        client,
        "Create on an existing file",
        client
            .write_opts(&p("c/new"), bytes_stream(Bytes::from("second")), create())
            .await,
        is_already_exists,
        "AlreadyExists",
    );
    assert_eq!(
        read(client, "c/new").await,
        "first",
        "{client}: a refused Create must not change content"
    );
    assert_eq!(
        list_paths(client, None).await,
        ["c/new"],
        "{client}: a refused Create leaves nothing behind"
    );
}

/// `WriteMode::Update(etag)` replaces only the expected version (when the backend enforces
/// conditional writes).
pub async fn write_update_mode(client: &dyn StorageClient) {
    let caps = client.capabilities();
    if !caps.conditional_write || !caps.etag {
        skip(
            client,
            "write_update_mode",
            "capabilities.conditional_write or etag is false",
        );
        return;
    }
    let update = |etag: &str| WriteOptions::default().with_mode(WriteMode::Update(etag.to_owned()));
    let v1 = put(client, "u", "v1").await;
    let etag1 = v1.etag.clone().unwrap();
    assert_err(
        client,
        "Update with a wrong etag",
        client
            .write_opts(
                &p("u"),
                bytes_stream(Bytes::from("bad")),
                update("not-the-etag"),
            )
            .await,
        is_precondition_failed,
        "PreconditionFailed",
    );
    assert_eq!(
        read(client, "u").await,
        "v1",
        "{client}: a refused Update must not change content"
    );
    let v2 = client
        .write_opts(&p("u"), bytes_stream(Bytes::from("v2")), update(&etag1))
        .await
        .unwrap_or_else(|e| panic!("{client}: Update with the current etag failed: {e}"));
    assert_eq!(
        read(client, "u").await,
        "v2",
        "{client}: Update must replace content"
    );
    assert_err(
        client,
        "Update with a stale etag",
        client
            .write_opts(&p("u"), bytes_stream(Bytes::from("stale")), update(&etag1))
            .await,
        is_precondition_failed,
        "PreconditionFailed",
    );
    assert_eq!(
        read(client, "u").await,
        "v2",
        "{client}: a stale Update must not change content"
    );
    let etag2 = v2.etag.unwrap();
    assert_err(
        client,
        "Update of a missing file",
        client
            .write_opts(
                &p("missing"),
                bytes_stream(Bytes::from("x")),
                update(&etag2),
            )
            .await,
        is_precondition_failed,
        "PreconditionFailed",
    );
    assert_eq!(
        list_paths(client, None).await,
        ["u"],
        "{client}: a refused Update creates nothing"
    );
}

/// `WriteMode::IfUnchanged(version)` replaces only that version, checked when the write
/// commits: a file saved by someone else while the body was still on its way stays, and so
/// does a missing file stay missing.
pub async fn write_if_unchanged_mode(client: &dyn StorageClient) {
    put(client, "w/doc", "the listed version").await;
    let listed = client
        .stat(&p("w/doc"))
        .await
        .unwrap_or_else(|e| panic!("{client}: stat failed: {e}"));
    let if_unchanged = |entry: &Entry| {
        WriteOptions::default().with_mode(WriteMode::IfUnchanged(Version::of(entry)))
    };

    // The body stops half way until "the user" has saved the file (another size, so that
    // even a backend with one-second mtimes and no inodes sees the change).
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let first = stream::once(async { Ok(Bytes::from("the engine's new ")) });
    let rest = stream::once(async move {
        let _ = reached_tx.send(());
        let _ = go_rx.await;
        Ok(Bytes::from("content"))
    });
    let body: ByteStream = first.chain(rest).boxed();
    let doc = p("w/doc");
    let write = client.write_opts(&doc, body, if_unchanged(&listed));
    let user = async {
        let _ = reached_rx.await;
        put(client, "w/doc", "saved by the user meanwhile").await;
        let _ = go_tx.send(());
    };
    let (written, ()) = futures::join!(write, user);
    match written {
        Err(Error::Unsupported { .. }) => {
            skip(
                client,
                "write_if_unchanged_mode",
                "WriteMode::IfUnchanged is Unsupported",
            );
            return;
        }
        other => assert_err(
            client,
            "IfUnchanged over a file saved during the write",
            other,
            is_precondition_failed,
            "PreconditionFailed",
        ),
    }
    assert_eq!(
        read(client, "w/doc").await,
        "saved by the user meanwhile",
        "{client}: IfUnchanged replaced a file saved while its body was on its way"
    );
    assert_eq!(
        list_paths(client, None).await,
        ["w/doc"],
        "{client}: a refused IfUnchanged leaves nothing behind"
    );

    // The version that is there now is replaced.
    let now = client
        .stat(&p("w/doc"))
        .await
        .unwrap_or_else(|e| panic!("{client}: stat failed: {e}"));
    client
        .write_opts(
            &p("w/doc"),
            bytes_stream(Bytes::from("replaced")),
            if_unchanged(&now),
        )
        .await
        .unwrap_or_else(|e| panic!("{client}: IfUnchanged over the current version failed: {e}"));
    assert_eq!(read(client, "w/doc").await, "replaced");

    // A missing file is not created.
    let mut gone = now.clone();
    gone.path = p("w/missing");
    assert_err(
        client,
        "IfUnchanged on a missing file",
        client
            .write_opts(
                &p("w/missing"),
                bytes_stream(Bytes::from("x")),
                if_unchanged(&gone),
            )
            .await,
        is_precondition_failed,
        "PreconditionFailed",
    );
    assert_eq!(
        list_paths(client, None).await,
        ["w/doc"],
        "{client}: a refused IfUnchanged creates nothing"
    );
}

/// The mtime given to a write is what `stat` and `list` report, at the promised precision.
pub async fn write_sets_mtime(client: &dyn StorageClient) {
    let caps = client.capabilities();
    if !caps.set_mtime {
        skip(
            client,
            "write_sets_mtime",
            "capabilities.set_mtime is false",
        );
        return;
    }
    let precision = caps.mtime_precision;
    // Odd nanoseconds, at two different times in the past.
    for (i, nanos) in [1_600_000_000_123_456_789_i64, 1_234_567_890_987_654_321]
        .into_iter()
        .enumerate()
    {
        let mtime = crate::entry::nanos_to_system_time(nanos);
        let path = format!("m/{i}");
        let written = client
            .write_opts(
                &p(&path),
                bytes_stream(Bytes::from("m")),
                WriteOptions::default().with_mtime(mtime),
            )
            .await
            .unwrap();
        let want = truncate_nanos(nanos, precision);
        let check = |what: &str, entry: &Entry| {
            let got = entry
                .mtime
                .map(|t| truncate_nanos(system_time_to_nanos(t), precision))
                .unwrap_or_else(|| {
                    panic!("{client}: {what}: no mtime although set_mtime is promised")
                });
            assert_eq!(
                got, want,
                "{client}: {what}: mtime differs at precision {precision:?}"
            );
        };
        check("write", &written);
        check("stat", &client.stat(&p(&path)).await.unwrap());
        let listed = list(client, Some("m")).await;
        let entry = listed.iter().find(|e| e.path.as_str() == path).unwrap();
        check("list", entry);
    }
    // Without an mtime the write gets a recent one.
    let before = SystemTime::now() - Duration::from_secs(600);
    let entry = put(client, "m/now", "n").await;
    if let Some(mtime) = entry.mtime {
        assert!(
            mtime > before,
            "{client}: a write without mtime must get a current one"
        );
    }
}

/// A body stream that fails midway aborts the write: `Err` is returned, the old content stays
/// and nothing new is listed.
pub async fn failed_write_keeps_old_content(client: &dyn StorageClient) {
    put(client, "w/f", "old content").await;
    let body: ByteStream = stream::iter(vec![
        Ok(pattern(100_000, 1)),
        Ok(pattern(100_000, 2)),
        Err(Error::other("conformance", "w/f", "body failed on purpose")),
        Ok(pattern(10, 3)),
    ])
    .boxed();
    let result = client
        .write_opts(&p("w/f"), body, WriteOptions::default())
        .await;
    assert!(
        result.is_err(),
        "{client}: a write whose body fails must fail, got {result:?}"
    );
    assert_eq!(
        read(client, "w/f").await,
        "old content",
        "{client}: a failed write damaged the old content"
    );
    // Also a failed write of a new file leaves no file.
    let body: ByteStream = stream::iter(vec![
        Ok(Bytes::from("partial")),
        Err(Error::other(
            "conformance",
            "w/new",
            "body failed on purpose",
        )),
    ])
    .boxed();
    assert!(
        client
            .write_opts(&p("w/new"), body, WriteOptions::default())
            .await
            .is_err()
    );
    assert_eq!(
        list_paths(client, None).await,
        ["w/f"],
        "{client}: a failed write left something behind"
    );
}

/// A body that delivers all its data and then an error in place of its end (what
/// [`verify_body`](crate::verify::verify_body) does on a short or corrupt read) aborts the
/// write: nothing is committed, the old content stays.
pub async fn trailing_body_error_aborts_write(client: &dyn StorageClient) {
    put(client, "t/f", "old content").await;
    for size in [10usize, 3_000_000] {
        let body: ByteStream = chunked(pattern(size, 9), 64 * 1024)
            .chain(stream::iter(vec![Err(Error::transient(
                "conformance",
                "t/f",
                "verification failed on purpose",
            ))]))
            .boxed();
        let result = client
            .write_opts(
                &p("t/f"),
                body,
                WriteOptions::default().with_size_hint(size as u64),
            )
            .await;
        assert!(
            result.is_err(),
            "{client}: a write whose body ends in an error must fail ({size} bytes), got {result:?}"
        );
        assert_eq!(
            read(client, "t/f").await,
            "old content",
            "{client}: a body that failed at its end was committed ({size} bytes)"
        );
    }
    assert_eq!(
        list_paths(client, None).await,
        ["t/f"],
        "{client}: an aborted write left something behind"
    );
}

/// `preserve` keeps the current version under a second name: the copy survives a later
/// overwrite of the original, an existing target is refused, a missing source is `NotFound`.
pub async fn preserve_keeps_a_copy(client: &dyn StorageClient) {
    put(client, "p/f", "old version").await;
    let kept = client
        .preserve(&p("p/f"), &p("keep/deep/f"))
        .await
        .unwrap_or_else(|e| panic!("{client}: preserve failed: {e}"));
    assert_eq!(kept.path, p("keep/deep/f"));
    assert_eq!(kept.size, 11, "{client}: preserve returned a wrong size");
    assert_eq!(
        read(client, "p/f").await,
        "old version",
        "{client}: preserve changed the original"
    );
    put(client, "p/f", "new version!").await;
    assert_eq!(
        read(client, "keep/deep/f").await,
        "old version",
        "{client}: an overwrite of the original changed the preserved copy"
    );
    put(client, "p/g", "g").await;
    assert_err(
        client,
        "preserve onto an existing file",
        client.preserve(&p("p/g"), &p("keep/deep/f")).await,
        is_already_exists,
        "AlreadyExists",
    );
    assert_eq!(read(client, "keep/deep/f").await, "old version");
    assert_err(
        client,
        "preserve of a missing file",
        client.preserve(&p("p/missing"), &p("keep/m")).await,
        is_not_found,
        "NotFound",
    );
    assert_listing(
        client,
        "after preserve",
        &list_paths(client, None).await,
        &["keep/deep/f", "p/f", "p/g"],
    );
}

/// A write whose future is dropped midway (cancelled) leaves the old content and no
/// temporary file in listings.
pub async fn cancelled_write_keeps_old_content(client: &dyn StorageClient) {
    put(client, "w/f", "old content").await;
    let body: ByteStream = stream::iter(vec![Ok(pattern(200_000, 4))])
        .chain(stream::pending())
        .boxed();
    let path = p("w/f");
    let write = client.write_opts(&path, body, WriteOptions::default());
    let outcome = tokio::time::timeout(Duration::from_millis(300), write).await;
    assert!(
        outcome.is_err(),
        "{client}: a write with a body that never ends cannot complete"
    );
    // The dropped write may finish its cleanup on a background thread; give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        read(client, "w/f").await,
        "old content",
        "{client}: a cancelled write damaged the old content"
    );
    assert_eq!(
        list_paths(client, None).await,
        ["w/f"],
        "{client}: a cancelled write left a visible file"
    );
    // The path is still writable afterwards.
    put(client, "w/f", "new content").await;
    assert_eq!(
        read(client, "w/f").await,
        "new content",
        "{client}: write after a cancelled write"
    );
}

/// Deleting removes the file (and only it); deleting again is `Ok`, or `NotFound` when
/// [`DeleteOptions::report_missing`](crate::DeleteOptions::report_missing) asks for it — on
/// every backend with a native rename (their deletes fail on a missing file, so they can
/// tell); a copy-and-delete store may answer `Ok`.
pub async fn delete_is_idempotent(client: &dyn StorageClient) {
    put(client, "d/a", "a").await;
    put(client, "d/b", "b").await;
    client.delete(&p("d/a")).await.unwrap();
    assert_err(
        client,
        "stat after delete",
        client.stat(&p("d/a")).await,
        is_not_found,
        "NotFound",
    );
    client
        .delete(&p("d/a"))
        .await
        .unwrap_or_else(|e| panic!("{client}: deleting twice must be Ok: {e}"));
    let reported = crate::DeleteOptions::default().with_report_missing(true);
    match client.delete_opts(&p("d/a"), reported.clone()).await {
        Err(e) if e.is_not_found() => {}
        Ok(()) if !client.capabilities().native_rename => {}
        other => {
            panic!("{client}: a reported delete of a missing file must be NotFound: {other:?}")
        }
    }
    match client.delete_opts(&p("d/none/x"), reported).await {
        Err(e) if e.is_not_found() => {}
        Ok(()) if !client.capabilities().native_rename => {}
        other => {
            panic!("{client}: a reported delete below a missing folder must be NotFound: {other:?}")
        }
    }
    assert_eq!(
        list_paths(client, None).await,
        ["d/b"],
        "{client}: delete removed the wrong files"
    );
    assert_eq!(
        read(client, "d/b").await,
        "b",
        "{client}: sibling damaged by delete"
    );
}

/// Server-side copy duplicates content, refuses an existing target without overwrite, and
/// reports a missing source; without the capability it is `Unsupported`.
pub async fn copy_semantics(client: &dyn StorageClient) {
    put(client, "src", "source").await;
    if !client.capabilities().server_side_copy {
        assert_err(
            client,
            "copy without server_side_copy",
            client
                .copy_opts(&p("src"), &p("dst"), TransferOptions::default())
                .await,
            is_unsupported,
            "Unsupported",
        );
        return;
    }
    let copied = client
        .copy_opts(&p("src"), &p("new/dir/dst"), TransferOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{client}: copy failed: {e}"));
    assert_entry_describes(client, "entry returned by copy", &copied, b"source");
    assert_eq!(
        read(client, "new/dir/dst").await,
        "source",
        "{client}: copy content"
    );
    assert_eq!(
        read(client, "src").await,
        "source",
        "{client}: copy must keep the source"
    );

    put(client, "other", "other").await;
    assert_err(
        client,
        "copy onto an existing file without overwrite",
        client
            .copy_opts(&p("src"), &p("other"), TransferOptions::default())
            .await,
        is_already_exists,
        "AlreadyExists",
    );
    assert_eq!(
        read(client, "other").await,
        "other",
        "{client}: refused copy changed the target"
    );
    client
        .copy_opts(
            &p("src"),
            &p("other"),
            TransferOptions::default().with_overwrite(true),
        )
        .await
        .unwrap_or_else(|e| panic!("{client}: copy with overwrite failed: {e}"));
    assert_eq!(
        read(client, "other").await,
        "source",
        "{client}: copy with overwrite"
    );
    assert_err(
        client,
        "copy of a missing source",
        client
            .copy_opts(&p("missing"), &p("x"), TransferOptions::default())
            .await,
        is_not_found,
        "NotFound",
    );
    assert_listing(
        client,
        "after copies",
        &list_paths(client, None).await,
        &["new/dir/dst", "other", "src"],
    );
}

/// Rename moves content, refuses an existing target without overwrite, replaces it with
/// overwrite, and reports a missing source.
pub async fn rename_semantics(client: &dyn StorageClient) {
    put(client, "r/a", "a").await;
    let moved = client
        .rename(&p("r/a"), &p("s/t/b"))
        .await
        .unwrap_or_else(|e| panic!("{client}: rename failed: {e}"));
    assert_eq!(
        moved.path,
        p("s/t/b"),
        "{client}: rename returns the new path"
    );
    assert_entry_describes(client, "entry returned by rename", &moved, b"a");
    assert_eq!(
        read(client, "s/t/b").await,
        "a",
        "{client}: renamed content"
    );
    assert_err(
        client,
        "stat of the rename source",
        client.stat(&p("r/a")).await,
        is_not_found,
        "NotFound",
    );

    put(client, "c", "c").await;
    assert_err(
        client,
        "rename onto an existing file without overwrite",
        client.rename(&p("c"), &p("s/t/b")).await,
        is_already_exists,
        "AlreadyExists",
    );
    assert_eq!(
        read(client, "c").await,
        "c",
        "{client}: refused rename changed the source"
    );
    assert_eq!(
        read(client, "s/t/b").await,
        "a",
        "{client}: refused rename changed the target"
    );
    client
        .rename_opts(
            &p("c"),
            &p("s/t/b"),
            TransferOptions::default().with_overwrite(true),
        )
        .await
        .unwrap_or_else(|e| panic!("{client}: rename with overwrite failed: {e}"));
    assert_eq!(
        read(client, "s/t/b").await,
        "c",
        "{client}: rename with overwrite"
    );
    assert_err(
        client,
        "rename of a missing source",
        client.rename(&p("missing"), &p("x")).await,
        is_not_found,
        "NotFound",
    );
    assert_eq!(
        list_paths(client, None).await,
        ["s/t/b"],
        "{client}: after renames"
    );
}

/// The etag changes when the content is rewritten, and `stat` reports the etag `write` returned.
pub async fn etag_changes_on_rewrite(client: &dyn StorageClient) {
    if !client.capabilities().etag {
        skip(
            client,
            "etag_changes_on_rewrite",
            "capabilities.etag is false",
        );
        return;
    }
    let v1 = put(client, "e", "one").await;
    assert_eq!(
        client.stat(&p("e")).await.unwrap().etag,
        v1.etag,
        "{client}: stat etag after write"
    );
    let v2 = put(client, "e", "two").await;
    assert!(v1.etag.is_some(), "{client}: etag promised");
    assert_ne!(
        v1.etag, v2.etag,
        "{client}: etag must change when content changes"
    );
    assert_eq!(
        client.stat(&p("e")).await.unwrap().etag,
        v2.etag,
        "{client}: stat etag after rewrite"
    );
}

/// A file's id survives a rename (so the engine can detect moves by inode).
pub async fn file_id_survives_rename(client: &dyn StorageClient) {
    if !client.capabilities().file_id {
        skip(
            client,
            "file_id_survives_rename",
            "capabilities.file_id is false",
        );
        return;
    }
    let before = put(client, "i/a", "content").await;
    let other = put(client, "i/b", "content").await;
    assert!(before.file_id.is_some(), "{client}: file_id promised");
    assert_ne!(
        before.file_id, other.file_id,
        "{client}: two files share a file_id"
    );
    let after = client.rename(&p("i/a"), &p("j/a")).await.unwrap();
    assert_eq!(
        after.file_id, before.file_id,
        "{client}: rename returned another file_id"
    );
    let stat = client.stat(&p("j/a")).await.unwrap();
    assert_eq!(
        stat.file_id, before.file_id,
        "{client}: file_id changed across rename"
    );
}

/// A file's birth time survives a rename, and a file created later (here after the old one
/// was deleted, so a filesystem may hand it the freed inode) gets a later one: together with
/// the file id that is what tells a renamed file from a new one.
pub async fn birth_time_tells_renamed_from_new(client: &dyn StorageClient) {
    let name = "birth_time_tells_renamed_from_new";
    if !client.capabilities().birth_time {
        skip(client, name, "capabilities.birth_time is false");
        return;
    }
    let before = put(client, "k/a", "content").await;
    let Some(born) = client.stat(&p("k/a")).await.unwrap().birth_time else {
        skip(client, name, "this filesystem keeps no birth times");
        return;
    };
    assert_eq!(
        before.birth_time,
        Some(born),
        "{client}: write and stat disagree"
    );
    let moved = client.rename(&p("k/a"), &p("l/a")).await.unwrap();
    assert_eq!(
        moved.birth_time,
        Some(born),
        "{client}: rename returned another birth time"
    );
    let listed = client.list_all(None).await.unwrap();
    let listed = listed.iter().find(|e| e.path == p("l/a")).unwrap();
    assert_eq!(
        listed.birth_time,
        Some(born),
        "{client}: birth time changed across rename"
    );
    client.delete(&p("l/a")).await.unwrap();
    // Past the coarsest clock tick a filesystem uses for its timestamps.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let new = put(client, "k/b", "content").await;
    assert!(
        new.birth_time.is_some_and(|b| b > born),
        "{client}: a new file must be born later ({:?} vs {born:?})",
        new.birth_time
    );
}

/// Where the capabilities say ETags are MD5s, a file written in one piece lists with an ETag
/// that is the MD5 of its content.
pub async fn etag_md5_is_the_content_md5(client: &dyn StorageClient) {
    let caps = client.capabilities();
    if !caps.etag_is_md5 {
        skip(
            client,
            "etag_md5_is_the_content_md5",
            "capabilities.etag_is_md5 is false",
        );
        return;
    }
    put(client, "m/a", "some content").await;
    let want = client.md5(&p("m/a")).await.unwrap();
    let listed = client.list_all(None).await.unwrap();
    let listed = listed.iter().find(|e| e.path == p("m/a")).unwrap();
    let tag = listed
        .etag
        .as_deref()
        .expect("etag_is_md5 promises an etag");
    assert_eq!(
        crate::entry::md5_of_etag(tag),
        Some(want.clone()),
        "{client}: ETag {tag} is not the MD5 of the content"
    );
    assert_eq!(listed.content_hash(&caps), Some(want));
}
