//! WebDAV backend for syncengine: a [`WebDavClient`] keeps a WebDAV collection in sync.
//!
//! ```no_run
//! use bytes::Bytes;
//! use syncengine_backend_webdav::WebDavBuilder;
//! use syncengine_core::{RelPath, StorageClientExt};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Credentials from SYNCENGINE_WEBDAV_USER / SYNCENGINE_WEBDAV_PASSWORD (over plain http,
//! // Basic needs SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC=1).
//! let client = WebDavBuilder::from_env()
//!     .with_url("webdav://127.0.0.1:8082/notes")
//!     .build()?;
//! client.put(&RelPath::new("todo.txt")?, Bytes::from("milk")).await?;
//! let listed = client.list_all(None).await?;
//! assert_eq!(listed[0].path.as_str(), "todo.txt");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # URLs and authentication
//! `webdav://host[:port]/path` speaks plain HTTP, `webdavs://host[:port]/path` HTTPS (rustls,
//! the platform's trust store); `http://` and `https://` URLs are accepted as they are.
//! Credentials come from the builder, from `user:password@` in the URL, or from
//! `SYNCENGINE_WEBDAV_USER` / `SYNCENGINE_WEBDAV_PASSWORD` ([`WebDavBuilder::from_env`]), and
//! are sent as HTTP Basic or Digest authentication ([`WebDavAuth`], chosen with
//! [`WebDavBuilder::with_auth`] or `SYNCENGINE_WEBDAV_AUTH=basic|digest|auto`):
//! - **auto** (the default) sends no credentials until the server answers 401, then answers
//!   its challenge: Digest when offered (RFC 7616/2617: the strongest of SHA-512-256, SHA-256
//!   and MD5 offered, `-sess` variants too, `qop=auth`), else Basic. The challenge is cached
//!   and answers every later request with an advancing nonce count, so a client pays one extra
//!   round trip when it starts, not one per request. A 401 with `stale=true` (or a new nonce)
//!   is answered once more with the new nonce; a second refusal is `PermissionDenied`, never a
//!   retry loop.
//! - **basic** sends Basic credentials with every request (use `webdavs://` anywhere but
//!   loopback) and never answers a Digest challenge.
//! - **digest** answers Digest challenges only.
//!
//! **Basic over plain http is refused unless you opt in.** Basic sends the password in the
//! clear, so a client on an `http://` / `webdav://` URL that would send Basic credentials (in
//! basic mode, or answering a server that offers only Basic) fails with an error naming the
//! cause and the fix, and the password never goes out. Use `webdavs://`, or a server that
//! offers Digest; on a network you trust (such as loopback) opt in with
//! [`WebDavBuilder::with_allow_insecure_basic`] or `SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC=1`
//! (read by [`WebDavBuilder::from_env`], which the `syncengine` CLI uses). Digest and https
//! are not affected.
//!
//! **Your own CA**: [`WebDavBuilder::with_ca_file`] (or `SYNCENGINE_WEBDAV_CA_FILE`, else
//! `SSL_CERT_FILE`, read by [`WebDavBuilder::from_env`]) adds the CA certificates of a PEM
//! file to the platform's trust store for `webdavs://`. Certificates are always checked; a
//! certificate that does not check out is an error, never retried as transient.
//!
//! Upload bodies stream and cannot be replayed after a 401, so before an upload a client
//! whose credentials the server has not yet accepted makes one `PROPFIND Depth: 0` of the root
//! to answer the challenge first; an upload that still meets a fresh challenge fails as
//! `Transient` (a retry answers it). Passwords never appear in `Debug`, `Display` or logs, the
//! `Authorization` header (Basic or Digest) is marked sensitive; redirects are not followed,
//! so credentials never travel to another origin.
//!
//! # Behavior
//! - **Listing** walks the tree with `PROPFIND Depth: 1` (many servers refuse
//!   `Depth: infinity`), sorting each collection's members by name, a collection as `name/`,
//!   depth-first: the stream is in canonical order without sorting the whole tree. A few
//!   collections ahead are fetched concurrently ([`WebDavBuilder::with_list_concurrency`]).
//!   Each answer is parsed by a real XML parser ([`multistatus`]); hrefs are percent-decoded
//!   segment by segment (upper- or lower-case escapes, `+` stays `+`); absolute-URL hrefs are
//!   accepted for the server's own origin only. A member whose decoded href is not exactly one
//!   segment below the listed collection, or whose name fails [`RelPath`](syncengine_core::RelPath) validation, fails
//!   that collection's listing — it is never followed.
//! - **Unknown collections**: a sub-collection whose own `PROPFIND` fails (any answer but 207:
//!   a redirect, 400, 404, 409, 5xx), whose answer is malformed, or whose own entry is missing
//!   or not marked as a collection, is reported as unknown
//!   ([`Error::Unlisted`](syncengine_core::Error::Unlisted)) at its place in canonical order
//!   (each collection is read when the walk reaches its plain name), and the walk goes on:
//!   its files are never taken for deleted. Only the start collection's own failure ends the
//!   listing with an error (a missing start collection lists as empty).
//! - **Writes** are atomic: the body streams (`PUT`) to a hidden temporary sibling
//!   `.syncengine-tmp-<random hex>`, gets its mtime, and is `MOVE`d onto the target. A body
//!   of known size (the write's size hint, which the engine always gives) goes with
//!   `Content-Length`, and one that gives more or fewer bytes fails the write before its end
//!   reaches the server; one of unknown size goes chunked. Missing
//!   parents are made with `MKCOL` first (the body is a stream and cannot be replayed after a
//!   409). A failed write deletes its temporary file; a cancelled one (future dropped) spawns
//!   the delete. An upload given up on (no progress for the idle timeout, failed mid-body, or
//!   cancelled) may still complete on the server afterwards, from what the link had buffered
//!   (the last bytes handed over drain unseen): the client remembers its temporary name and
//!   deletes it again when the engine settles the client at the end of the run
//!   ([`StorageClient::settle`](syncengine_core::StorageClient::settle)). Each retry uses a
//!   new name. **Residual:** an upload that completes on the server after that second delete
//!   (a server or link slower than the rest of the run) stays as a temp file until the
//!   stale-temp removal below or `syncengine cleanup`; it never reaches the real path, the
//!   listing or the state. Temporary names are never listed, and writing one is `InvalidPath`. A temp
//!   left by a killed write is removed by `remove_stale_temps` (after a run, never in a dry
//!   run) once the server's last-modified time is a day old (the core's `is_stale_temp`).
//! - **Write modes**: `Create` is `MOVE` with `Overwrite: F` (412 → `AlreadyExists`), atomic on
//!   the server. `Update(etag)` compares the target's current etag, then `MOVE`s with
//!   `Overwrite: T` and a tagged `If: <target> (["etag"])` header: Apache evaluates it on the
//!   destination, so there it is atomic; wsgidav ignores tagged lists on the destination, so
//!   there a concurrent change between the check and the move can slip through. `If-Match` on
//!   `PUT` is not used: the temp file is new, and Apache's ETag is weak (`W/"…"`) for about a
//!   second after a write, which fails strong `If-Match` comparison. Entries carry the ETag
//!   without the `W/`, so an etag read in that second still matches later.
//!   `IfUnchanged(version)` is `Update` with the version's ETag; a version listed without one
//!   (nginx's dav-ext lists no `getetag`) is compared by size and mtime with a `PROPFIND
//!   Depth: 0` of the target made after the body is on the server, right before the `MOVE`:
//!   a missing file or another version is `PreconditionFailed` and the temporary file is
//!   removed. What remains is the round trip between that check and the `MOVE`. Never
//!   `Unsupported`.
//!   `Overwrite` never replaces a collection: `Overwrite: T` onto a directory would delete a
//!   whole tree, so an existing target is checked to be a file first.
//! - **mtimes** are kept, to the nanosecond, in the dead property `mtime` in the namespace
//!   `urn:syncengine:` (nanoseconds since the Unix epoch, decimal), set with `PROPPATCH` on the
//!   temporary file before the `MOVE` (both servers move and copy dead properties with the
//!   file) and read back in the listing's `PROPFIND`. The ETag it is bound to (below) is the
//!   one the `PUT`'s answer carries once the client's first upload saw that a `PROPFIND`
//!   lists the same (Apache and wsgidav), else a `PROPFIND` of the temporary file's: one
//!   request less per file. rclone keeps no mtime on generic WebDAV
//!   servers, so there is no format to share. The value is followed by a space and the ETag
//!   the file had when it was set, and a listing believes it only while the file still has
//!   that ETag: servers keep dead properties when another client overwrites the file with a
//!   plain `PUT`, and our old mtime on the foreign new content would let an older edit win a
//!   newest-wins conflict (Apache's and wsgidav's ETags change with the content, not with a
//!   `PROPPATCH` or a `MOVE`; a `COPY` gets the source's mtime bound to its own ETag).
//!   Values without an ETag (older versions, servers that list none) are believed as before.
//!   Files without the property, or with one bound to another ETag, report
//!   `getlastmodified` (the server's time of the last write, to the second). Servers that
//!   refuse dead properties need [`WebDavBuilder::with_mtime_property`]`(false)`.
//! - **copy** and **rename** are server-side `COPY` / `MOVE` (`Overwrite: F` unless
//!   overwriting; 412 → `AlreadyExists`).
//! - **Names a server mangles**: a server that percent-decodes `Destination` before splitting
//!   off `?` and `;` (wsgidav) gets names with `?`, `;` or control characters by a direct
//!   `PUT` (not atomic; the write mode by `If-None-Match` / `If-Match`, `IfUnchanged` without
//!   an ETag checked before the `PUT` starts), and copies and renames of them through the
//!   client: a rename deletes its source only if it is still the version copied (checked
//!   right before a `DELETE` guarded by its ETag where it has one), else it is left and the
//!   rename fails with `PreconditionFailed`. wsgidav writes a `PUT`'s body in place as it
//!   arrives, so a direct `PUT` that fails (cut, stalled, body error, 5xx) is followed by a
//!   `PROPFIND` of the name and, when what is there is neither the version from before nor
//!   of the body's length, a `DELETE` with `If-Match` on its ETag: no half file is left for
//!   the next run to take for a user's change (the engine trashed the replaced version).
//! - **Fail closed**: the lookup a delete or an overwrite depends on must prove its answer.
//!   Only a 404 is "absent"; a redirect is a collection only when `name/` then answers as one,
//!   and a 400 or 409 is "absent" only when the parent is then seen to be a file (Apache's
//!   answer below a file). Any other failure fails the delete or overwrite: it never reports a
//!   file deleted that is still there, and never sends `Overwrite: T` onto what may be a
//!   collection.
//! - **Deletes** of a missing file are `Ok`; collections the delete (or a rename) left empty
//!   are removed up to, not including, the root, best effort. A `DELETE` of a collection is
//!   recursive, so it is never sent while a file could still arrive in the collection unseen:
//!   where the server gives the collection an ETag (Apache), the `DELETE` carries an `If` on
//!   it, which refuses the delete when a file arrived since it was seen empty; where it gives
//!   none (wsgidav), the collection is first `MOVE`d aside (`Overwrite: F`) to
//!   `.syncengine-tmp-dir-<16 hex>-<name>` in its parent (just `.syncengine-tmp-dir-<16 hex>`
//!   for a name too long or one the server's `MOVE` may mangle), where no writer can find
//!   it, listed there, and deleted only if still empty. One that is not (a file arrived
//!   before the move) is moved back; if its name was taken meanwhile it stays aside, and the
//!   delete or rename that pruned it fails with an error naming it (the file operation
//!   itself was done). A collection that a write or transfer of the same client is putting a
//!   file into (or below) is never pruned: the engine's own actions running side by side do
//!   not race each other.
//! - **Folders left aside** (that case, or a run killed between the move and the delete)
//!   are never synced: a listing checks each one at the place of the folder it came from.
//!   An empty one is removed when the engine asks for stale temporary files to go (after a
//!   run, never in a dry run; it needs no age, as nothing arrives in a folder under a name
//!   no writer knows). One with members, or that cannot be read, makes that path unknown
//!   ([`Error::Unlisted`](syncengine_core::Error::Unlisted), a file or folder listed there
//!   included; the listed folder's contents when its name does not say where it came from),
//!   so the engine deletes nothing there on either side until the user has moved the files
//!   back. One that is gone by the time it is checked (another machine's run just moved it
//!   back) makes the path unknown for that run, unless something is listed there.
//! - **Reads** check the body's length: a `GET` body that ends before its `Content-Length`,
//!   or (without one, ending when the connection closes) before its `Content-Range` or the
//!   size a `PROPFIND` of the file reports, fails the read as `Transient`, never a short file.
//!   A read of one version ([`ReadOptions::version`](syncengine_core::ReadOptions)) checks
//!   the answer's ETag against the listed one (another version: `PreconditionFailed`; no
//!   ETag: `Unsupported`). The engine reads files of 256 MiB and more as 4 such ranges at once
//!   ([`WebDavBuilder::with_parallel_reads`], [`syncengine_core::parallel_read`]).
//! - **Errors**: 404 `NotFound`, 412 `PreconditionFailed`, 401/403 `PermissionDenied`,
//!   408/429/5xx and connection failures `Transient`; the rest `Other`.

mod auth;
mod builder;
mod client;
mod config;
mod error;
pub mod multistatus;

pub use builder::{
    ENV_ALLOW_INSECURE_BASIC, ENV_AUTH, ENV_CA_FILE, ENV_PASSWORD, ENV_USER, WebDavBuilder,
};
pub use client::WebDavClient;
pub use config::{WebDavAuth, WebDavConfig};

/// URL scheme of this backend over plain HTTP (`webdav://host[:port]/path`).
pub const SCHEME: &str = "webdav";

/// URL scheme of this backend over HTTPS (`webdavs://host[:port]/path`).
pub const SCHEME_TLS: &str = "webdavs";
