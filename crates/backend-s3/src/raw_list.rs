//! S3 listings that see every key as the server stores it.
//!
//! object_store parses each listed key into its `Path`, which drops a trailing `/` (a folder
//! marker `photos/` lists as `photos`), strips a leading `/` (`prefix//x` would list as
//! `prefix/x`) and rejects a whole page for one key with an empty, `.` or `..` segment or a
//! control character — so one odd key would stop every run of the root. This module sends
//! `ListObjectsV2` itself (signed with object_store's [`AwsAuthorizer`], sent with the same
//! HTTP client as [`BigCopy`]'s requests) and hands back raw keys, which the client then
//! sorts into files, folder markers and keys that cannot be a path here.
//!
//! Keys are requested with `encoding-type=url` (XML cannot carry most control characters)
//! and decoded only when the server says it encoded them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
#[cfg(feature = "s3")]
use object_store::aws::AwsAuthorizer;
#[cfg(feature = "s3")]
use object_store::client::HttpRequestBody;
#[cfg(feature = "s3")]
use percent_encoding::utf8_percent_encode;
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
#[cfg(any(feature = "s3", feature = "gcs"))]
use serde::Deserialize;
#[cfg(any(feature = "s3", feature = "gcs"))]
use syncengine_core::path::{NotUtf8, percent_decode};

#[cfg(feature = "s3")]
use crate::big_copy::BigCopy;

/// Where a client's raw listing pages come from: S3's ListObjectsV2, Azure's List Blobs or
/// GCS's XML listing.
#[derive(Clone)]
pub(crate) enum RawLister {
    #[cfg(feature = "s3")]
    S3(Arc<BigCopy>),
    #[cfg(feature = "azure")]
    Azure(Arc<crate::azure_list::AzureLister>),
    #[cfg(feature = "gcs")]
    Gcs(Arc<crate::gcs_list::GcsLister>),
}

impl RawLister {
    /// One page of keys that start with `prefix`, after the page of `token`.
    pub(crate) async fn page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> object_store::Result<RawPage> {
        match self {
            #[cfg(feature = "s3")]
            RawLister::S3(s3) => s3.list_page(prefix, token).await,
            #[cfg(feature = "azure")]
            RawLister::Azure(az) => az.list_page(prefix, token).await,
            #[cfg(feature = "gcs")]
            RawLister::Gcs(gcs) => gcs.list_page(prefix, token).await,
        }
    }
}

/// Everything but the unreserved characters (`A-Z a-z 0-9 - _ . ~`), as SigV4 encodes:
/// query values of every raw listing (S3, Azure, GCS).
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
pub(crate) const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One listed object, its key exactly as stored.
#[derive(Debug, Clone)]
pub(crate) struct RawObject {
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) last_modified: DateTime<Utc>,
    pub(crate) e_tag: Option<String>,
    /// The name came unencoded and holds U+FFFD: servers that cannot put a character in
    /// XML (Go's encoder, fake-gcs-server) send U+FFFD instead, so the name may not be the
    /// stored one. Such an object is reported unknown, never taken for that name.
    pub(crate) lossy: bool,
}

/// One page of a listing.
#[derive(Debug)]
pub(crate) struct RawPage {
    pub(crate) objects: Vec<RawObject>,
    /// The common prefixes of a listing with a delimiter (each ends with it), decoded;
    /// empty without one.
    pub(crate) prefixes: Vec<String>,
    /// The token of the next page; `None` on the last one.
    pub(crate) next: Option<String>,
}

#[cfg(any(feature = "s3", feature = "gcs"))]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<Contents>,
    #[serde(default)]
    common_prefixes: Vec<CommonPrefix>,
    #[serde(default)]
    is_truncated: Option<bool>,
    #[serde(default)]
    next_continuation_token: Option<String>,
    #[serde(default)]
    encoding_type: Option<String>,
}

#[cfg(any(feature = "s3", feature = "gcs"))]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonPrefix {
    prefix: String,
}

#[cfg(any(feature = "s3", feature = "gcs"))]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    size: u64,
    last_modified: String,
    #[serde(default, rename = "ETag")]
    e_tag: Option<String>,
}

pub(crate) fn generic(msg: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: msg.into().into(),
    }
}

#[cfg(any(feature = "s3", feature = "gcs"))]
/// Decodes a key listed with `encoding-type=url` (`+` is a space, as AWS's SDKs read it).
fn url_decode(key: &str) -> Result<String, NotUtf8> {
    percent_decode(&key.replace('+', " "))
}

#[cfg(any(feature = "s3", feature = "gcs"))]
/// A key as a listing answer gives it, decoded when the answer says it is (`EncodingType`
/// `url`); shared by the object and multipart-upload listings.
pub(crate) fn listed_key(key: String, encoding_type: Option<&str>) -> object_store::Result<String> {
    if encoding_type.is_some_and(|t| t.eq_ignore_ascii_case("url")) {
        url_decode(&key).map_err(|e| generic(format!("listed key {key:?} is not UTF-8: {e}")))
    } else {
        Ok(key)
    }
}

#[cfg(any(feature = "s3", feature = "gcs"))]
/// Parses one `ListObjectsV2` answer.
pub(crate) fn parse_page(body: &[u8]) -> object_store::Result<RawPage> {
    let text = String::from_utf8_lossy(body);
    let page: ListBucketResult = quick_xml::de::from_str(&text)
        .map_err(|e| generic(format!("unreadable ListObjectsV2 answer: {e}")))?;
    let encoding = page.encoding_type.clone();
    let encoded = encoding
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("url"));
    let decode = |s: String| listed_key(s, encoding.as_deref());
    let mut objects = Vec::with_capacity(page.contents.len());
    for c in page.contents {
        let last_modified = DateTime::parse_from_rfc3339(&c.last_modified)
            .map_err(|e| generic(format!("bad LastModified {:?}: {e}", c.last_modified)))?
            .with_timezone(&Utc);
        let lossy = !encoded && c.key.contains(char::REPLACEMENT_CHARACTER);
        objects.push(RawObject {
            key: decode(c.key)?,
            size: c.size,
            last_modified,
            e_tag: c.e_tag,
            lossy,
        });
    }
    let next = match (page.is_truncated, page.next_continuation_token) {
        (Some(false), _) => None,
        // Continuation tokens are opaque and never URL-encoded.
        (_, Some(t)) if !t.is_empty() => Some(t),
        (Some(true), _) => {
            return Err(generic(
                "ListObjectsV2 answer is truncated but has no continuation token",
            ));
        }
        _ => None,
    };
    let prefixes = page
        .common_prefixes
        .into_iter()
        .map(|p| decode(p.prefix))
        .collect::<object_store::Result<Vec<_>>>()?;
    Ok(RawPage {
        objects,
        prefixes,
        next,
    })
}

#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
/// A listing request the server answered with an error status: the error (permission,
/// authentication, else generic for `store`), carrying the first 300 characters of the
/// server's answer, which names its reason (`AccessDenied`, `NoSuchBucket`…), and whether it
/// is worth retrying (429, 5xx).
pub(crate) fn failed_listing(
    store: &'static str,
    what: &str,
    prefix: &str,
    status: http::StatusCode,
    body: &[u8],
) -> (object_store::Error, bool) {
    let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
    let msg = format!(
        "{what} of {prefix:?} failed: status code: {}: {text}",
        status.as_u16()
    );
    let retry = status.as_u16() == 429 || status.is_server_error();
    let err = match status {
        http::StatusCode::FORBIDDEN => object_store::Error::PermissionDenied {
            path: prefix.to_owned(),
            source: msg.into(),
        },
        http::StatusCode::UNAUTHORIZED => object_store::Error::Unauthenticated {
            path: prefix.to_owned(),
            source: msg.into(),
        },
        _ => object_store::Error::Generic {
            store,
            source: msg.into(),
        },
    };
    (err, retry)
}

#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
/// Runs one raw listing request (`once`) until it succeeds, fails for good, or has been
/// retried `max_retries` times, waiting 200 ms, then twice as long each time up to 3.2 s:
/// `once` says with each failure whether it is worth retrying (a lost connection, 429, 5xx),
/// as object_store's own client decides.
pub(crate) async fn retrying<F, Fut>(
    what: &str,
    max_retries: usize,
    mut once: F,
) -> object_store::Result<RawPage>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<RawPage, (object_store::Error, bool)>>,
{
    let mut attempt = 0;
    loop {
        match once().await {
            Err((e, retry)) if retry && attempt < max_retries => {
                attempt += 1;
                let wait = std::time::Duration::from_millis(100 << attempt.min(5));
                tracing::debug!(error = %e, attempt, "retrying {what}");
                tokio::time::sleep(wait).await;
            }
            Err((e, _)) => return Err(e),
            Ok(page) => return Ok(page),
        }
    }
}

#[cfg(feature = "s3")]
impl BigCopy {
    /// Lists one page of keys that start with `prefix` (raw, not a `Path`), after the page
    /// of `token`. Retries connection failures, 429 and 5xx answers like object_store does.
    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> object_store::Result<RawPage> {
        self.list_page_delimited(prefix, token, false).await
    }

    /// [`list_page`](Self::list_page), with `delimited`: keys with a `/` after `prefix` are
    /// not listed but rolled into [`RawPage::prefixes`] (S3's `delimiter=/`).
    pub(crate) async fn list_page_delimited(
        &self,
        prefix: &str,
        token: Option<&str>,
        delimited: bool,
    ) -> object_store::Result<RawPage> {
        retrying("ListObjectsV2", self.max_retries, || {
            self.list_page_once(prefix, token, delimited)
        })
        .await
    }

    /// One request; on failure also whether it is worth retrying.
    async fn list_page_once(
        &self,
        prefix: &str,
        token: Option<&str>,
        delimited: bool,
    ) -> Result<RawPage, (object_store::Error, bool)> {
        // The query in SigV4's canonical order and encoding.
        let enc = |v: &str| utf8_percent_encode(v, STRICT).to_string();
        let mut query = String::new();
        if let Some(t) = token {
            query.push_str(&format!("continuation-token={}&", enc(t)));
        }
        if delimited {
            query.push_str("delimiter=%2F&");
        }
        query.push_str("encoding-type=url&list-type=2");
        if self.list_page_keys != 1000 {
            query.push_str(&format!("&max-keys={}", self.list_page_keys));
        }
        if !prefix.is_empty() {
            query.push_str(&format!("&prefix={}", enc(prefix)));
        }
        let url = format!("{}?{query}", self.bucket_endpoint);
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(url.as_str())
            .body(HttpRequestBody::empty())
            .map_err(|e| (generic(format!("building ListObjectsV2: {e}")), false))?;
        if !self.skip_signature {
            let credential = self
                .s3
                .credentials()
                .get_credential()
                .await
                .map_err(|e| (e, false))?;
            AwsAuthorizer::new(&credential, "s3", &self.region)
                .try_authorize(&mut request, None)
                .map_err(|e| (e, false))?;
        }
        let response = match self.http.execute(request).await {
            Ok(r) => r,
            // Keeps the HTTP error as the source, so a lost connection stays transient.
            Err(e) => {
                return Err((
                    object_store::Error::Generic {
                        store: "S3",
                        source: Box::new(e),
                    },
                    true,
                ));
            }
        };
        let status = response.status();
        let body = match response.into_body().bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err((
                    object_store::Error::Generic {
                        store: "S3",
                        source: Box::new(e),
                    },
                    true,
                ));
            }
        };
        if status.is_success() {
            return parse_page(&body).map_err(|e| (e, false));
        }
        Err(failed_listing("S3", "ListObjectsV2", prefix, status, &body))
    }
}

#[cfg(all(test, feature = "s3"))]
mod tests {
    use super::*;

    #[test]
    fn pages_parse_and_decode() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>true</IsTruncated><Contents><Key>p//lead</Key><LastModified>2026-12-03T06:30:33.000Z</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size></Contents><Contents><Key>p/ctl%01x+y%2B</Key><LastModified>2026-12-03T06:30:33Z</LastModified><Size>6</Size></Contents><EncodingType>url</EncodingType><NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
        let page = parse_page(xml).unwrap();
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p//lead", "p/ctl\u{1}x y+"]);
        assert_eq!(
            page.objects[0].e_tag.as_deref(),
            Some("\"d41d8cd98f00b204e9800998ecf8427e\"")
        );
        assert_eq!(page.objects[1].size, 6);
        assert_eq!(page.next.as_deref(), Some("tok"));
        // Not encoded: keys stay as they are.
        let xml = br#"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a+b%41</Key><LastModified>2026-12-03T06:30:33Z</LastModified><Size>1</Size></Contents></ListBucketResult>"#;
        let page = parse_page(xml).unwrap();
        assert_eq!(page.objects[0].key, "a+b%41");
        assert!(!page.objects[0].lossy);
        assert!(page.next.is_none());
        // Unencoded with U+FFFD (a Go server's stand-in for a control character): lossy.
        let xml = "<ListBucketResult><Contents><Key>ctl\u{FFFD}x</Key><LastModified>2026-12-03T06:30:33Z</LastModified><Size>1</Size></Contents></ListBucketResult>";
        assert!(parse_page(xml.as_bytes()).unwrap().objects[0].lossy);
        // An empty listing.
        let page =
            parse_page(b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>")
                .unwrap();
        assert!(page.objects.is_empty() && page.next.is_none());
    }
}
