//! S3 requests object_store does not offer: server-side copies of objects larger than
//! CopyObject allows (5 GiB), and conditional deletes (`DeleteObject` with `If-Match`).
//!
//! A big copy is a multipart upload whose parts are `UploadPartCopy` requests, so no byte
//! passes through this machine. Each part names the source version it copies
//! (`x-amz-copy-source-if-match`), and the source is checked once more before the upload is
//! completed (for servers that ignore that header): a source replaced while it is copied
//! aborts the copy instead of completing a mix of two versions.
//!
//! object_store 0.14 has no public `UploadPartCopy` with a byte range (its own multipart copy
//! copies a whole object as one part, which is limited to 5 GiB too). So: the upload is
//! created (with the source's metadata) and completed through object_store's
//! [`MultipartStore`]; each part is an `UploadPartCopy` presigned with object_store's
//! [`Signer`], the copy source and range bound to the signature, and sent with an HTTP
//! client built from the same client options as the store. A failed copy aborts the upload.
//!
//! A conditional delete is a `DELETE` with `If-Match`, signed with object_store's
//! [`AwsAuthorizer`] and sent with the same HTTP client (object_store's own delete is an
//! unconditional bulk `POST ?delete`).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpRequestBody};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{Attributes, ObjectStoreExt, PutMultipartOptions};

use crate::config::COPY_OBJECT_LIMIT;

/// S3's smallest part (all parts but the last).
const MIN_PART: u64 = 5 * 1024 * 1024;
/// S3's largest number of parts per upload.
const MAX_PARTS: u64 = 10_000;
/// How long one presigned part request stays valid.
const PRESIGN_FOR: Duration = Duration::from_secs(3600);

/// Copies big objects within one bucket.
pub(crate) struct BigCopy {
    pub(crate) s3: Arc<AmazonS3>,
    pub(crate) http: HttpClient,
    pub(crate) bucket: String,
    /// The region requests are signed for.
    pub(crate) region: String,
    /// Requests go unsigned (anonymous access).
    pub(crate) skip_signature: bool,
    /// Objects larger than this are copied in parts; also the part size.
    pub(crate) threshold: u64,
    /// The bucket's URL, as object_store addresses it (listings go there).
    pub(crate) bucket_endpoint: String,
    /// Retries of a listing request that failed for a transient reason.
    pub(crate) max_retries: usize,
    /// Keys asked for per listing request (`max-keys`; sent only when not 1000).
    pub(crate) list_page_keys: usize,
}

/// What a conditional delete did.
#[derive(Debug)]
pub(crate) enum Deleted {
    /// The object was that version and is gone (or was already gone).
    Yes,
    /// The object is another version, or was written meanwhile: left alone.
    Changed,
    /// The server does not support conditional deletes (501): nothing was deleted.
    Unsupported,
    /// The server answered with another error status (a 5xx, 403…): it did not delete the
    /// object. Unlike a failure without an answer (a timeout, a lost connection), no request
    /// of this delete is left that could still land. Carries the error to report.
    Refused(object_store::Error),
}

fn precondition(path: &Path, msg: impl Into<String>) -> object_store::Error {
    object_store::Error::Precondition {
        path: path.to_string(),
        source: msg.into().into(),
    }
}

fn generic(msg: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: msg.into().into(),
    }
}

/// Percent-encodes an object key for `x-amz-copy-source` (unreserved characters and `/` stay).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The ETag in an `UploadPartCopy` answer (`<CopyPartResult><ETag>"…"</ETag>…`).
fn etag_of(body: &str) -> Option<String> {
    let start = body.find("<ETag>")? + "<ETag>".len();
    let end = start + body[start..].find("</ETag>")?;
    Some(
        body[start..end]
            .replace("&quot;", "\"")
            .replace("&#34;", "\""),
    )
}

impl BigCopy {
    /// Sends `request` (empty body), signed with object_store's [`AwsAuthorizer`] when
    /// `sign` (and the store signs at all), and returns the status and the body as text.
    /// `what` names the request in errors.
    async fn send(
        &self,
        request: http::request::Builder,
        sign: bool,
        what: &str,
    ) -> object_store::Result<(http::StatusCode, String)> {
        let mut request = request
            .body(HttpRequestBody::empty())
            .map_err(|e| generic(format!("building {what}: {e}")))?;
        if sign && !self.skip_signature {
            let credential = self.s3.credentials().get_credential().await?;
            AwsAuthorizer::new(&credential, "s3", &self.region)
                .try_authorize(&mut request, None)?;
        }
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| generic(format!("{what}: {e}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| generic(format!("{what}: {e}")))?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// The part size for an object of `size` bytes: the threshold, within S3's limits.
    pub(crate) fn part_size(&self, size: u64) -> u64 {
        self.threshold
            .clamp(MIN_PART, COPY_OBJECT_LIMIT)
            .max(size.div_ceil(MAX_PARTS))
    }

    /// Copies `from` (`size` bytes, version `e_tag`) to `to`, with `attributes` (the source's
    /// metadata). Fails with a precondition error, the upload aborted, when the source is no
    /// longer version `e_tag` (when given) at any part or before the upload completes.
    pub(crate) async fn copy(
        &self,
        from: &Path,
        to: &Path,
        size: u64,
        e_tag: Option<&str>,
        attributes: Attributes,
    ) -> object_store::Result<()> {
        let opts = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let id = self.s3.create_multipart_opts(to, opts).await?;
        let copied = async {
            let part = self.part_size(size);
            let mut parts = Vec::new();
            let mut start = 0;
            while start < size {
                let end = (start + part).min(size) - 1;
                let number = parts.len() + 1;
                parts.push(
                    self.copy_part(from, to, &id, number, (start, end), e_tag)
                        .await?,
                );
                start = end + 1;
            }
            // Servers that ignore `x-amz-copy-source-if-match` copy whatever the source is at
            // each part: complete only if it is still the version the copy began with.
            if let Some(expected) = e_tag {
                let now = self.s3.head(from).await?;
                if now.e_tag.as_deref() != Some(expected) {
                    return Err(precondition(
                        from,
                        "the source changed while it was copied in parts",
                    ));
                }
            }
            self.s3.complete_multipart(to, &id, parts).await
        }
        .await;
        match copied {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Err(abort) = self.s3.abort_multipart(to, &id).await {
                    tracing::warn!(error = %abort, "aborting a failed multipart copy failed; parts may remain");
                }
                Err(e)
            }
        }
    }

    async fn copy_part(
        &self,
        from: &Path,
        to: &Path,
        upload_id: &str,
        number: usize,
        (start, end): (u64, u64),
        e_tag: Option<&str>,
    ) -> object_store::Result<PartId> {
        let source = format!("{}/{}", self.bucket, encode_key(from.as_ref()));
        let range = format!("bytes={start}-{end}");
        let header = |v: &str| {
            http::HeaderValue::from_str(v).map_err(|e| generic(format!("copy header {v:?}: {e}")))
        };
        let copy_source = http::HeaderName::from_static("x-amz-copy-source");
        let copy_range = http::HeaderName::from_static("x-amz-copy-source-range");
        let copy_if = http::HeaderName::from_static("x-amz-copy-source-if-match");
        let mut signed = SignedUrlOptions::new()
            .with_query([
                ("partNumber", number.to_string()),
                ("uploadId", upload_id.to_owned()),
            ])
            .with_signed_header(copy_source.clone(), header(&source)?)
            .with_signed_header(copy_range.clone(), header(&range)?);
        if let Some(tag) = e_tag {
            signed = signed.with_signed_header(copy_if.clone(), header(tag)?);
        }
        let url = self
            .s3
            .signed_url_opts(http::Method::PUT, to, PRESIGN_FOR, &signed)
            .await?;
        let mut request = http::Request::builder()
            .method(http::Method::PUT)
            .uri(url.as_str())
            .header(copy_source, header(&source)?)
            .header(copy_range, header(&range)?)
            .header(http::header::CONTENT_LENGTH, "0");
        if let Some(tag) = e_tag {
            request = request.header(copy_if, header(tag)?);
        }
        // Presigned with its copy headers: no signature to add.
        let (status, text) = self
            .send(request, false, &format!("UploadPartCopy {number} of {to}"))
            .await?;
        if status == http::StatusCode::PRECONDITION_FAILED {
            return Err(precondition(from, "the source changed while it was copied"));
        }
        // S3 may answer 200 and still report an error in the body.
        match etag_of(&text) {
            Some(e_tag) if status.is_success() && !text.contains("<Error>") => {
                Ok(PartId { content_id: e_tag })
            }
            _ => Err(generic(format!(
                "UploadPartCopy {number} of {to} (bytes {start}-{end}) failed: {status}: {}",
                text.chars().take(300).collect::<String>()
            ))),
        }
    }
}

/// What a [`BigCopy::copy_object`] did.
#[derive(Debug)]
pub(crate) enum Copied {
    /// The copy is in place; its ETag, when the server sent one.
    Yes(Option<String>),
    /// The server refused a condition (412): nothing was written.
    ConditionFailed(String),
    /// The server does not support the request or one of its headers (501, 400
    /// `NotImplemented`), or refuses it (403): nothing was written.
    Declined(String),
}

impl BigCopy {
    /// `CopyObject` of `from` in `source_bucket` (version `e_tag` only:
    /// `x-amz-copy-source-if-match`) to `to` in this bucket, the metadata replaced by
    /// `content_type` and `meta` (`x-amz-meta-` headers), with `condition` (`If-None-Match: *`
    /// or `If-Match`) on the target. Signed with object_store's [`AwsAuthorizer`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn copy_object(
        &self,
        source_bucket: &str,
        from: &Path,
        to: &Path,
        e_tag: &str,
        content_type: &str,
        meta: &[(&str, String)],
        condition: Option<(http::HeaderName, String)>,
    ) -> object_store::Result<Copied> {
        let mut url = self
            .s3
            .signed_url(http::Method::PUT, to, PRESIGN_FOR)
            .await?;
        url.set_query(None);
        let header = |v: &str| {
            http::HeaderValue::from_str(v).map_err(|e| generic(format!("copy header {v:?}: {e}")))
        };
        let source = format!("/{source_bucket}/{}", encode_key(from.as_ref()));
        let mut request = http::Request::builder()
            .method(http::Method::PUT)
            .uri(url.as_str())
            .header("x-amz-copy-source", header(&source)?)
            .header("x-amz-copy-source-if-match", header(e_tag)?)
            .header("x-amz-metadata-directive", "REPLACE")
            .header(http::header::CONTENT_TYPE, header(content_type)?)
            .header(http::header::CONTENT_LENGTH, "0");
        for (k, v) in meta {
            request = request.header(format!("x-amz-meta-{k}"), header(v)?);
        }
        if let Some((name, value)) = condition {
            request = request.header(name, header(&value)?);
        }
        let (status, text) = self
            .send(request, true, &format!("CopyObject {source} to {to}"))
            .await?;
        let short = || text.chars().take(300).collect::<String>();
        if status == http::StatusCode::PRECONDITION_FAILED {
            return Ok(Copied::ConditionFailed(format!("{status}: {}", short())));
        }
        // A policy may refuse a copy between buckets that plain reads and writes pass.
        if status == http::StatusCode::NOT_IMPLEMENTED
            || status == http::StatusCode::FORBIDDEN
            || text.contains("<Code>NotImplemented</Code>")
        {
            return Ok(Copied::Declined(format!("{status}: {}", short())));
        }
        if status == http::StatusCode::NOT_FOUND {
            return Err(object_store::Error::NotFound {
                path: from.to_string(),
                source: format!("CopyObject: {}", short()).into(),
            });
        }
        // S3 may answer 200 and still report an error in the body.
        if status.is_success() && !text.contains("<Error>") {
            return Ok(Copied::Yes(etag_of(&text)));
        }
        Err(generic(format!(
            "CopyObject {source} to {to} failed: status code: {}: {}",
            status.as_u16(),
            short()
        )))
    }
}

impl BigCopy {
    /// Deletes `key` only if it is still version `e_tag` (`DeleteObject` with `If-Match`).
    ///
    /// AWS S3, moto and SeaweedFS answer 412 when the object is another version (SeaweedFS
    /// also when it is missing; moto then answers 404, taken as already deleted).
    pub(crate) async fn delete_if_match(
        &self,
        key: &Path,
        e_tag: &str,
    ) -> object_store::Result<Deleted> {
        // The object's URL in the store's own addressing style and encoding: a presigned
        // URL without its query.
        let mut url = self
            .s3
            .signed_url(http::Method::DELETE, key, PRESIGN_FOR)
            .await?;
        url.set_query(None);
        let if_match = http::HeaderValue::from_str(e_tag)
            .map_err(|e| generic(format!("If-Match {e_tag:?}: {e}")))?;
        let request = http::Request::builder()
            .method(http::Method::DELETE)
            .uri(url.as_str())
            .header(http::header::IF_MATCH, if_match);
        let (status, text) = self
            .send(request, true, &format!("DeleteObject {key}"))
            .await?;
        match status {
            s if s.is_success() || s == http::StatusCode::NOT_FOUND => Ok(Deleted::Yes),
            // 409: AWS, when a write or delete of the object won the race with this one.
            http::StatusCode::PRECONDITION_FAILED | http::StatusCode::CONFLICT => {
                Ok(Deleted::Changed)
            }
            http::StatusCode::NOT_IMPLEMENTED => Ok(Deleted::Unsupported),
            s => Ok(Deleted::Refused(generic(format!(
                "DeleteObject {key} failed: status code: {}: {}",
                s.as_u16(),
                text.chars().take(300).collect::<String>()
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_etags() {
        assert_eq!(encode_key("a b/é?.txt"), "a%20b/%C3%A9%3F.txt");
        assert_eq!(
            etag_of(
                "<CopyPartResult><LastModified>x</LastModified><ETag>&quot;abc&quot;</ETag></CopyPartResult>"
            ),
            Some("\"abc\"".to_owned())
        );
        assert_eq!(etag_of("<Error><Code>x</Code></Error>"), None);
    }
}
