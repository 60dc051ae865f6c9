//! Unfinished S3 multipart uploads: `ListMultipartUploads` and `AbortMultipartUpload`, sent
//! as raw requests signed with object_store's [`AwsAuthorizer`] over the same HTTP client as
//! [`BigCopy`]'s (object_store lists no multipart uploads).
//!
//! An upload that was started and never completed or aborted (a killed run, a lost
//! connection before the abort) is no object: nothing lists or reads it, but its parts stay
//! stored, and billed, until it is aborted. `syncengine cleanup` finds them here.

use chrono::{DateTime, Utc};
use object_store::aws::AwsAuthorizer;
use object_store::client::HttpRequestBody;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::big_copy::BigCopy;
use crate::raw_list::{generic, listed_key};

/// Everything but the unreserved characters (`A-Z a-z 0-9 - _ . ~`), as SigV4 encodes.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One multipart upload in progress, its key exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawUpload {
    pub(crate) key: String,
    pub(crate) upload_id: String,
    pub(crate) initiated: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMultipartUploadsResult {
    #[serde(default)]
    upload: Vec<Upload>,
    #[serde(default)]
    is_truncated: Option<bool>,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default)]
    encoding_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Upload {
    key: String,
    upload_id: String,
    #[serde(default)]
    initiated: Option<String>,
}

/// One page: the uploads, and the markers of the next page (`None` on the last one).
type Page = (Vec<RawUpload>, Option<(String, String)>);

/// Parses one `ListMultipartUploads` answer.
fn parse_page(body: &[u8]) -> object_store::Result<Page> {
    let text = String::from_utf8_lossy(body);
    let page: ListMultipartUploadsResult = quick_xml::de::from_str(&text)
        .map_err(|e| generic(format!("unreadable ListMultipartUploads answer: {e}")))?;
    let encoding = page.encoding_type.clone();
    let decode = |s: String| listed_key(s, encoding.as_deref());
    let mut uploads = Vec::with_capacity(page.upload.len());
    for u in page.upload {
        // An unreadable time is unknown: such an upload is never taken for an old one.
        let initiated = u
            .initiated
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        uploads.push(RawUpload {
            key: decode(u.key)?,
            upload_id: u.upload_id,
            initiated,
        });
    }
    let next = if page.is_truncated == Some(true) {
        match (page.next_key_marker, page.next_upload_id_marker) {
            (Some(k), Some(u)) if !k.is_empty() => Some((decode(k)?, u)),
            _ => {
                return Err(generic(
                    "ListMultipartUploads answer is truncated but has no next markers",
                ));
            }
        }
    } else {
        None
    };
    Ok((uploads, next))
}

impl BigCopy {
    /// Every multipart upload in progress whose key starts with `prefix` (raw), all pages.
    pub(crate) async fn list_uploads(&self, prefix: &str) -> object_store::Result<Vec<RawUpload>> {
        let mut all = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let (uploads, next) = self.list_uploads_page(prefix, markers.as_ref()).await?;
            all.extend(uploads);
            match next {
                // A server that hands back the markers it was given would loop forever.
                Some(n) if Some(&n) != markers.as_ref() => markers = Some(n),
                Some(_) => return Err(generic("ListMultipartUploads repeated its page")),
                None => return Ok(all),
            }
        }
    }

    async fn list_uploads_page(
        &self,
        prefix: &str,
        markers: Option<&(String, String)>,
    ) -> object_store::Result<Page> {
        // The query in SigV4's canonical order and encoding.
        let enc = |v: &str| utf8_percent_encode(v, STRICT).to_string();
        let mut query = String::from("encoding-type=url");
        if let Some((key, id)) = markers {
            query.push_str(&format!("&key-marker={}", enc(key)));
            query.push_str(&format!("&prefix={}", enc(prefix)));
            query.push_str(&format!("&upload-id-marker={}", enc(id)));
        } else {
            query.push_str(&format!("&prefix={}", enc(prefix)));
        }
        query.push_str("&uploads=");
        let url = format!("{}?{query}", self.bucket_endpoint);
        let body = self
            .send_signed(http::Method::GET, &url, "ListMultipartUploads")
            .await?;
        parse_page(&body)
    }

    /// Aborts the upload `upload_id` of `key` (raw). `Ok(false)`: there is no such upload
    /// (any more).
    pub(crate) async fn abort_upload(
        &self,
        key: &str,
        upload_id: &str,
    ) -> object_store::Result<bool> {
        let path: String = key
            .split('/')
            .map(|s| utf8_percent_encode(s, STRICT).to_string())
            .collect::<Vec<_>>()
            .join("/");
        let url = format!(
            "{}/{path}?uploadId={}",
            self.bucket_endpoint,
            utf8_percent_encode(upload_id, STRICT)
        );
        match self
            .send_signed(http::Method::DELETE, &url, "AbortMultipartUpload")
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends one signed request without a body and returns the answer's body; an error
    /// status is an error (404: [`object_store::Error::NotFound`]).
    async fn send_signed(
        &self,
        method: http::Method,
        url: &str,
        what: &str,
    ) -> object_store::Result<bytes::Bytes> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(url)
            .body(HttpRequestBody::empty())
            .map_err(|e| generic(format!("building {what}: {e}")))?;
        if !self.skip_signature {
            let credential = self.s3.credentials().get_credential().await?;
            AwsAuthorizer::new(&credential, "s3", &self.region)
                .try_authorize(&mut request, None)?;
        }
        let response =
            self.http
                .execute(request)
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })?;
        let status = response.status();
        let body =
            response
                .into_body()
                .bytes()
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })?;
        if status.is_success() {
            return Ok(body);
        }
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        let msg = format!("{what} failed: status code: {}: {text}", status.as_u16());
        Err(match status {
            http::StatusCode::NOT_FOUND => object_store::Error::NotFound {
                path: url.to_owned(),
                source: msg.into(),
            },
            http::StatusCode::FORBIDDEN => object_store::Error::PermissionDenied {
                path: url.to_owned(),
                source: msg.into(),
            },
            http::StatusCode::UNAUTHORIZED => object_store::Error::Unauthenticated {
                path: url.to_owned(),
                source: msg.into(),
            },
            _ => generic(msg),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_parse_and_decode() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><NextKeyMarker>p/b%20c</NextKeyMarker><NextUploadIdMarker>id2</NextUploadIdMarker><EncodingType>url</EncodingType><MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated><Upload><Key>p/a</Key><UploadId>id1</UploadId><Initiated>2026-12-03T06:30:33.000Z</Initiated><StorageClass>STANDARD</StorageClass></Upload><Upload><Key>p/b%20c</Key><UploadId>id2</UploadId><Initiated>2026-12-03T06:30:34.000Z</Initiated></Upload></ListMultipartUploadsResult>"#;
        let (uploads, next) = parse_page(xml).unwrap();
        assert_eq!(
            uploads.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(),
            ["p/a", "p/b c"]
        );
        assert_eq!(uploads[1].upload_id, "id2");
        assert_eq!(
            uploads[0].initiated.map(|t| t.timestamp()),
            Some(
                DateTime::parse_from_rfc3339("2026-12-03T06:30:33Z")
                    .unwrap()
                    .timestamp()
            )
        );
        assert_eq!(next, Some(("p/b c".to_owned(), "id2".to_owned())));
        let (uploads, next) = parse_page(
            b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(uploads.is_empty() && next.is_none());
        assert!(
            parse_page(b"<ListMultipartUploadsResult><IsTruncated>true</IsTruncated></ListMultipartUploadsResult>")
                .is_err()
        );
    }
}
