//! A strict parser for `207 Multi-Status` answers to `PROPFIND`, and the href decoding it relies on.
//!
//! The parser is a namespace-aware pull parser (`quick-xml`), not string matching: `D:`, `ns0:`,
//! `lp1:` and default-namespace spellings of `DAV:` elements all read the same. It is built to
//! meet hostile answers without panicking or escaping the root:
//!
//! - the body is refused above [`MAX_BODY_BYTES`] and nesting above [`MAX_DEPTH`];
//! - it must be well-formed UTF-8 XML (unknown entities, mismatched or unclosed tags are errors;
//!   nothing external is ever loaded);
//! - every `href` is decoded into path segments by [`decode_href`], which accepts an absolute
//!   path or an absolute URL on the request's own origin only, and rejects `.`/`..` segments
//!   (also percent-encoded ones), encoded `/` or NUL, empty segments, queries and fragments.
//!
//! Deciding whether a decoded href lies where it should (below the listed collection) is the
//! caller's job; this module only guarantees that what it returns is a clean list of segments.

use std::time::SystemTime;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use syncengine_core::path::percent_decode;
use url::Url;

/// The largest PROPFIND answer accepted (64 MiB, a few hundred thousand entries).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The deepest element nesting accepted; a multistatus needs six levels.
pub const MAX_DEPTH: usize = 32;

/// The namespace of the dead property that keeps modification times.
pub const MTIME_NAMESPACE: &str = "urn:syncengine:";

/// The local name of the dead property that keeps modification times (nanoseconds since the
/// Unix epoch as a decimal string).
pub const MTIME_PROPERTY: &str = "mtime";

/// Why a multistatus body or an href was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("response larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// Elements nest deeper than [`MAX_DEPTH`].
    #[error("XML nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The body is not well-formed XML (or not UTF-8).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The XML is well-formed but not a usable multistatus.
    #[error("unexpected multistatus structure: {0}")]
    Structure(String),
    /// An href that cannot name a path below the server root.
    #[error("refused href {href:?}: {reason}")]
    Href {
        /// The href as the server sent it (truncated when long).
        href: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

/// One `<D:response>` of a multistatus, with the properties of its successful propstats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resource {
    /// The decoded path segments of the href, from the server root (not the client root).
    pub segments: Vec<String>,
    /// `resourcetype` contains `collection`.
    pub is_collection: bool,
    /// `getcontentlength`.
    pub size: Option<u64>,
    /// `getetag` exactly as the server sent it (possibly weak `W/"…"`, possibly unquoted).
    pub etag: Option<String>,
    /// `getlastmodified`.
    pub last_modified: Option<SystemTime>,
    /// The `urn:syncengine:` `mtime` dead property, in nanoseconds since the Unix epoch.
    pub mtime_nanos: Option<i64>,
    /// The ETag the file had when the `mtime` property was set (written after the
    /// nanoseconds, separated by a space), so that the property is believed only for that
    /// version: a server keeps dead properties when another client overwrites the file with
    /// a plain `PUT`. `None` for a property written without one (older writers, servers that
    /// list no ETag).
    pub mtime_etag: Option<String>,
    /// A response-level `<D:status>` code (no propstat), e.g. 404 for a vanished member.
    pub status: Option<u16>,
    /// The codes of the propstats that were not 2xx (404 for a property the resource lacks;
    /// 403 or 409 for a refused `PROPPATCH`).
    pub failed_propstats: Vec<u16>,
}

/// Parses a multistatus body. `origin` is the URL the request went to: absolute-URL hrefs must
/// share its scheme, host and port.
///
/// # Errors
/// A [`ParseError`] for anything but a well-formed multistatus whose hrefs all decode cleanly.
pub fn parse(body: &[u8], origin: &Url) -> Result<Vec<Resource>, ParseError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ParseError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|e| ParseError::Xml(format!("not UTF-8: {e}")))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut parser = Parser::default();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| ParseError::Xml(e.to_string()))?;
        let is_dav = matches!(ns, ResolveResult::Bound(Namespace(b"DAV:")));
        let is_ours =
            matches!(ns, ResolveResult::Bound(Namespace(n)) if n == MTIME_NAMESPACE.as_bytes());
        match event {
            Event::Start(e) => {
                let tag = Tag::of(is_dav, is_ours, e.local_name().as_ref());
                parser.open(tag)?;
            }
            Event::Empty(e) => {
                let tag = Tag::of(is_dav, is_ours, e.local_name().as_ref());
                parser.open(tag)?;
                parser.close(origin)?;
            }
            Event::End(_) => parser.close(origin)?,
            Event::Text(t) => {
                let s = t.decode().map_err(|e| ParseError::Xml(e.to_string()))?;
                parser.text(&s)?;
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| ParseError::Xml(e.to_string()))?;
                parser.text(&s)?;
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| ParseError::Xml(e.to_string()))?
                        .ok_or_else(|| ParseError::Xml("bad character reference".into()))?
                } else {
                    let name = r.decode().map_err(|e| ParseError::Xml(e.to_string()))?;
                    match name.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => return Err(ParseError::Xml(format!("unknown entity &{name};"))),
                    }
                };
                parser.text(c.encode_utf8(&mut [0; 4]))?;
            }
            Event::DocType(_) => {
                return Err(ParseError::Xml("DOCTYPE not allowed".into()));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    parser.finish()
}

/// The elements the parser cares about; everything else is `Other` and ignored (its text too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Multistatus,
    Response,
    Href,
    Propstat,
    Prop,
    Status,
    ResourceType,
    Collection,
    ContentLength,
    LastModified,
    Etag,
    Mtime,
    Other,
}

impl Tag {
    fn of(is_dav: bool, is_ours: bool, local: &[u8]) -> Tag {
        if is_ours {
            return if local == MTIME_PROPERTY.as_bytes() {
                Tag::Mtime
            } else {
                Tag::Other
            };
        }
        if !is_dav {
            return Tag::Other;
        }
        match local {
            b"multistatus" => Tag::Multistatus,
            b"response" => Tag::Response,
            b"href" => Tag::Href,
            b"propstat" => Tag::Propstat,
            b"prop" => Tag::Prop,
            b"status" => Tag::Status,
            b"resourcetype" => Tag::ResourceType,
            b"collection" => Tag::Collection,
            b"getcontentlength" => Tag::ContentLength,
            b"getlastmodified" => Tag::LastModified,
            b"getetag" => Tag::Etag,
            _ => Tag::Other,
        }
    }
}

/// Properties collected inside one propstat, kept only if its status is 2xx.
#[derive(Default)]
struct Props {
    is_collection: bool,
    size: Option<String>,
    etag: Option<String>,
    last_modified: Option<String>,
    mtime: Option<String>,
    status: Option<String>,
}

#[derive(Default)]
struct Parser {
    stack: Vec<Tag>,
    text: String,
    out: Vec<Resource>,
    href: Option<String>,
    current: Option<Resource>,
    response_status: Option<String>,
    props: Option<Props>,
    saw_multistatus: bool,
}

/// The text of a text-holding element is capped: no legitimate value is this long.
const MAX_TEXT: usize = 64 * 1024;

impl Parser {
    fn parent(&self) -> Option<Tag> {
        self.stack.last().copied()
    }

    fn open(&mut self, tag: Tag) -> Result<(), ParseError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        let parent = self.parent();
        match (parent, tag) {
            (None, Tag::Multistatus) => self.saw_multistatus = true,
            (None, _) => {
                return Err(ParseError::Structure(
                    "root element is not DAV:multistatus".into(),
                ));
            }
            (Some(Tag::Multistatus), Tag::Response) => {
                self.current = Some(Resource::default());
                self.href = None;
                self.response_status = None;
            }
            (Some(Tag::Response), Tag::Propstat) => self.props = Some(Props::default()),
            (Some(Tag::Prop), Tag::ResourceType) => {}
            (Some(Tag::ResourceType), Tag::Collection) => {
                if let Some(p) = self.props.as_mut() {
                    p.is_collection = true;
                }
            }
            _ => {}
        }
        self.stack.push(tag);
        self.text.clear();
        Ok(())
    }

    fn text(&mut self, s: &str) -> Result<(), ParseError> {
        if self.text.len() + s.len() > MAX_TEXT {
            return Err(ParseError::Structure("element text too long".into()));
        }
        self.text.push_str(s);
        Ok(())
    }

    fn close(&mut self, origin: &Url) -> Result<(), ParseError> {
        let tag = self
            .stack
            .pop()
            .ok_or_else(|| ParseError::Xml("unbalanced end tag".into()))?;
        let parent = self.parent();
        let text = std::mem::take(&mut self.text);
        let value = text.trim().to_owned();
        match (parent, tag) {
            (Some(Tag::Response), Tag::Href) => {
                if self.href.is_some() {
                    return Err(ParseError::Structure("response with several hrefs".into()));
                }
                self.href = Some(value);
            }
            (Some(Tag::Response), Tag::Status) => self.response_status = Some(value),
            (Some(Tag::Propstat), Tag::Status) => {
                if let Some(p) = self.props.as_mut() {
                    p.status = Some(value);
                }
            }
            (Some(Tag::Prop), Tag::ContentLength) => self.set(|p| &mut p.size, value),
            (Some(Tag::Prop), Tag::Etag) => self.set(|p| &mut p.etag, value),
            (Some(Tag::Prop), Tag::LastModified) => self.set(|p| &mut p.last_modified, value),
            (Some(Tag::Prop), Tag::Mtime) => self.set(|p| &mut p.mtime, value),
            (Some(Tag::Response), Tag::Propstat) => {
                let props = self.props.take().unwrap_or_default();
                self.merge(props)?;
            }
            (Some(Tag::Multistatus), Tag::Response) => self.finish_response(origin)?,
            _ => {}
        }
        Ok(())
    }

    fn set(&mut self, field: impl FnOnce(&mut Props) -> &mut Option<String>, value: String) {
        if let Some(p) = self.props.as_mut() {
            *field(p) = Some(value);
        }
    }

    fn merge(&mut self, props: Props) -> Result<(), ParseError> {
        let status = props
            .status
            .as_deref()
            .map(status_code)
            .transpose()?
            .ok_or_else(|| ParseError::Structure("propstat without status".into()))?;
        let Some(res) = self.current.as_mut() else {
            return Err(ParseError::Structure("propstat outside a response".into()));
        };
        if !(200..300).contains(&status) {
            res.failed_propstats.push(status);
            return Ok(());
        }
        res.is_collection |= props.is_collection;
        if let Some(size) = props.size.filter(|s| !s.is_empty()) {
            res.size =
                Some(size.parse().map_err(|_| {
                    ParseError::Structure(format!("bad getcontentlength {size:?}"))
                })?);
        }
        if let Some(etag) = props.etag.filter(|s| !s.is_empty()) {
            res.etag = Some(etag);
        }
        if let Some(lm) = props.last_modified.filter(|s| !s.is_empty()) {
            // An unparseable date is not worth failing a listing for: the mtime is just unknown.
            res.last_modified = httpdate::parse_http_date(&lm).ok();
        }
        if let Some(m) = props.mtime.filter(|s| !s.is_empty()) {
            // Written by us as a decimal, optionally followed by a space and the ETag it is
            // bound to; anything else is someone else's property: ignore it.
            let m = m.trim();
            let (nanos, etag) = match m.split_once(' ') {
                Some((n, e)) => (n, Some(e.trim()).filter(|e| !e.is_empty())),
                None => (m, None),
            };
            res.mtime_nanos = nanos.parse().ok();
            res.mtime_etag = res.mtime_nanos.and(etag.map(str::to_owned));
        }
        Ok(())
    }

    fn finish_response(&mut self, origin: &Url) -> Result<(), ParseError> {
        let mut res = self
            .current
            .take()
            .ok_or_else(|| ParseError::Structure("response end without start".into()))?;
        let href = self
            .href
            .take()
            .ok_or_else(|| ParseError::Structure("response without href".into()))?;
        res.segments = decode_href(&href, origin)?.0;
        if let Some(status) = self.response_status.take() {
            res.status = Some(status_code(&status)?);
        }
        self.out.push(res);
        Ok(())
    }

    fn finish(self) -> Result<Vec<Resource>, ParseError> {
        if !self.stack.is_empty() {
            return Err(ParseError::Xml(
                "truncated document (unclosed elements)".into(),
            ));
        }
        if !self.saw_multistatus {
            return Err(ParseError::Structure("no DAV:multistatus element".into()));
        }
        Ok(self.out)
    }
}

/// Reads the code out of a status line such as `HTTP/1.1 200 OK`.
fn status_code(line: &str) -> Result<u16, ParseError> {
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| ParseError::Structure(format!("bad status line {:?}", truncate(line))))
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Decodes an href into its path segments from the server root, and whether it ended in `/`.
///
/// Accepted: an absolute path (`/dav/a%20b/`) or an absolute `http(s)` URL with the same
/// scheme, host and port as `origin`. Each segment is percent-decoded on its own (upper- or
/// lower-case escapes; `+` stays `+`) and must be UTF-8.
///
/// # Errors
/// [`ParseError::Href`] for relative hrefs, other origins, queries or fragments, empty, `.` or
/// `..` segments (also as `%2e%2e`), and segments that decode to contain `/` or NUL.
pub fn decode_href(href: &str, origin: &Url) -> Result<(Vec<String>, bool), ParseError> {
    let refuse = |reason: &'static str| ParseError::Href {
        href: truncate(href),
        reason,
    };
    if href.contains(['?', '#']) {
        return Err(refuse("query or fragment in href"));
    }
    let path = if href.starts_with('/') {
        if href.starts_with("//") {
            return Err(refuse("network-path href"));
        }
        href
    } else {
        let lower = href.get(..8).unwrap_or(href).to_ascii_lowercase();
        let rest_at = if lower.starts_with("https://") {
            8
        } else if lower.starts_with("http://") {
            7
        } else {
            return Err(refuse("relative href"));
        };
        let rest = &href[rest_at..];
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // Only the authority goes through the URL parser: it would resolve `..` in the path.
        let scheme = &href[..rest_at - 3];
        let other = Url::parse(&format!("{scheme}://{authority}/"))
            .map_err(|_| refuse("unparseable URL"))?;
        if other.scheme() != origin.scheme()
            || other.host_str() != origin.host_str()
            || other.port_or_known_default() != origin.port_or_known_default()
            || !other.username().is_empty()
            || other.password().is_some()
        {
            return Err(refuse("URL on another origin"));
        }
        path
    };
    let mut raw: Vec<&str> = path[1..].split('/').collect();
    let trailing_slash = raw.last() == Some(&"");
    if trailing_slash {
        raw.pop();
    }
    let mut segments = Vec::with_capacity(raw.len());
    for seg in raw {
        if seg.is_empty() {
            return Err(refuse("empty path segment"));
        }
        let decoded =
            percent_decode(seg).map_err(|_| refuse("segment is not UTF-8 after decoding"))?;
        match decoded.as_str() {
            "." | ".." => return Err(refuse("dot segment")),
            d if d.contains(['/', '\0']) => return Err(refuse("encoded '/' or NUL in a segment")),
            _ => segments.push(decoded),
        }
    }
    Ok((segments, trailing_slash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Url {
        Url::parse("http://127.0.0.1:8082/root/").unwrap()
    }

    fn ms(responses: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">{responses}</D:multistatus>"#
        )
    }

    fn file(href: &str) -> String {
        format!(
            "<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype/>\
             <D:getcontentlength>3</D:getcontentlength></D:prop>\
             <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
        )
    }

    #[test]
    fn parses_apache_answer() {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns1="urn:syncengine:" xmlns:ns0="DAV:">
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/" xmlns:g0="DAV:" xmlns:g1="urn:syncengine:">
<D:href>/root/</D:href>
<D:propstat><D:prop>
<lp1:resourcetype><D:collection/></lp1:resourcetype>
<lp1:getlastmodified>Tue, 24 Nov 2026 21:10:22 GMT</lp1:getlastmodified>
<lp1:getetag>W/"1000-6610c2376bbe1"</lp1:getetag>
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><g0:getcontentlength/><g1:mtime/></D:prop>
<D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
</D:response>
<D:response xmlns:lp1="DAV:" xmlns:g0="urn:syncengine:">
<D:href>/root/a%20b+c%c3%a9.txt</D:href>
<D:propstat><D:prop><lp1:resourcetype/><lp1:getcontentlength>3</lp1:getcontentlength>
<lp1:getetag>"3-6610"</lp1:getetag><g0:mtime>1600000000123456789</g0:mtime></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat>
</D:response>
</D:multistatus>"#;
        let res = parse(body.as_bytes(), &origin()).unwrap();
        assert_eq!(res.len(), 2);
        assert!(res[0].is_collection);
        assert_eq!(res[0].segments, ["root"]);
        assert_eq!(res[0].etag.as_deref(), Some("W/\"1000-6610c2376bbe1\""));
        assert!(res[0].last_modified.is_some());
        assert_eq!(res[0].size, None, "a 404 propstat contributes nothing");
        assert_eq!(res[0].failed_propstats, [404]);
        assert!(!res[1].is_collection);
        assert_eq!(res[1].segments, ["root", "a b+cé.txt"]);
        assert_eq!(res[1].size, Some(3));
        assert_eq!(res[1].mtime_nanos, Some(1_600_000_000_123_456_789));
    }

    #[test]
    fn parses_an_mtime_bound_to_an_etag() {
        let one = |prop: &str| {
            let body = format!(
                r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:" xmlns:S="urn:syncengine:">
<D:response><D:href>/root/f</D:href><D:propstat><D:prop><D:resourcetype/>
<S:mtime>{prop}</S:mtime></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
</D:response></D:multistatus>"#
            );
            let res = parse(body.as_bytes(), &origin()).unwrap();
            (res[0].mtime_nanos, res[0].mtime_etag.clone())
        };
        assert_eq!(
            one("1600000000123456789 W/&quot;3-66&amp;10&quot;"),
            (
                Some(1_600_000_000_123_456_789),
                Some("W/\"3-66&10\"".to_owned())
            )
        );
        assert_eq!(
            one("1600000000123456789"),
            (Some(1_600_000_000_123_456_789), None)
        );
        assert_eq!(one("soon \"x\""), (None, None), "not ours: ignored");
    }

    #[test]
    fn parses_wsgidav_answer_with_default_namespace_and_uppercase_escapes() {
        let body = r#"<?xml version="1.0" encoding="utf-8" ?>
<multistatus xmlns="DAV:"><response><href>http://127.0.0.1:8082/root/a%20b%2Bc%C3%A9.txt</href>
<propstat><prop><resourcetype /><getcontentlength>3</getcontentlength><getetag>1-2-3</getetag></prop>
<status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"#;
        let res = parse(body.as_bytes(), &origin()).unwrap();
        assert_eq!(res[0].segments, ["root", "a b+cé.txt"]);
        assert_eq!(res[0].etag.as_deref(), Some("1-2-3"));
    }

    #[test]
    fn entities_and_cdata_are_decoded() {
        let body = ms(
            "<D:response><D:href>/root/a&amp;b<![CDATA[c]]>&#100;</D:href><D:status>HTTP/1.1 200 OK</D:status></D:response>",
        );
        let res = parse(body.as_bytes(), &origin()).unwrap();
        assert_eq!(res[0].segments, ["root", "a&bcd"]);
        assert_eq!(res[0].status, Some(200));
    }

    #[test]
    fn hostile_hrefs_are_refused() {
        for href in [
            "/root/../etc/passwd",
            "/root/%2e%2e/etc",
            "/root/%2E%2E/etc",
            "/root/.",
            "/root/a%2Fb",
            "/root/a%00b",
            "/root//x",
            "//evil.example/root/x",
            "http://evil.example/root/x",
            "http://127.0.0.1:9999/root/x",
            "https://127.0.0.1:8082/root/x",
            "http://user@127.0.0.1:8082/root/x",
            "relative/x",
            "/root/x?q=1",
            "/root/x#frag",
            "/root/%ff%fe",
            "javascript:alert(1)",
        ] {
            let body = ms(&file(href));
            let err = parse(body.as_bytes(), &origin()).expect_err(href);
            assert!(matches!(err, ParseError::Href { .. }), "{href}: {err}");
        }
    }

    #[test]
    fn same_origin_absolute_url_is_accepted() {
        let (segs, slash) = decode_href("HTTP://127.0.0.1:8082/root/d%c3%a9/", &origin()).unwrap();
        assert_eq!(segs, ["root", "dé"]);
        assert!(slash);
        let default_port = Url::parse("http://h/").unwrap();
        assert_eq!(
            decode_href("http://h:80/x", &default_port).unwrap().0,
            ["x"]
        );
    }

    #[test]
    fn malformed_documents_are_errors() {
        for body in [
            "",
            "not xml at all",
            "<D:multistatus xmlns:D=\"DAV:\">",
            "<D:multistatus xmlns:D=\"DAV:\"><D:response></D:multistatus>",
            "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/root/x</D:href></D:response>",
            "<other xmlns=\"urn:x\"/>",
            "<D:multistatus xmlns:D=\"DAV:\"><D:response></D:response></D:multistatus>",
            "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/a</D:href><D:href>/b</D:href></D:response></D:multistatus>",
            "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><D:multistatus xmlns:D=\"DAV:\">&a;</D:multistatus>",
            "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/&ext;</D:href></D:response></D:multistatus>",
            "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/x</D:href><D:propstat><D:prop><D:getcontentlength>-1</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>",
            "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/x</D:href><D:propstat><D:prop/></D:propstat></D:response></D:multistatus>",
            "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/x</D:href><D:status>garbage</D:status></D:response></D:multistatus>",
        ] {
            assert!(
                parse(body.as_bytes(), &origin()).is_err(),
                "accepted: {body:?}"
            );
        }
    }

    #[test]
    fn non_utf8_is_an_error() {
        let mut body = ms(&file("/root/x")).into_bytes();
        body.extend_from_slice(&[0xff, 0xfe, 0x80]);
        assert!(matches!(parse(&body, &origin()), Err(ParseError::Xml(_))));
        let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/root/\xe9</D:href><D:status>HTTP/1.1 200 OK</D:status></D:response></D:multistatus>";
        assert!(parse(latin1, &origin()).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let depth = 100_000;
        let body = format!(
            "<D:multistatus xmlns:D=\"DAV:\">{}{}</D:multistatus>",
            "<x>".repeat(depth),
            "</x>".repeat(depth)
        );
        assert!(matches!(
            parse(body.as_bytes(), &origin()),
            Err(ParseError::TooDeep)
        ));
    }

    #[test]
    fn huge_answers_are_refused() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(parse(&body, &origin()), Err(ParseError::TooLarge)));
        // A long text node inside an ignored element is capped too.
        let body = ms(&format!(
            "<D:response><D:href>/root/{}</D:href></D:response>",
            "a".repeat(MAX_TEXT + 1)
        ));
        assert!(parse(body.as_bytes(), &origin()).is_err());
        // Many well-formed responses below the cap parse (the walk bounds them per collection).
        let many: String = (0..10_000).map(|i| file(&format!("/root/f{i}"))).collect();
        assert_eq!(
            parse(ms(&many).as_bytes(), &origin()).unwrap().len(),
            10_000
        );
    }
}
