//! GCS listings that see every object name as the service stores it.
//!
//! object_store lists GCS through its XML API (`list-type=2`, the S3 answer format) and
//! parses each name into its `Path`, failing the whole listing for one name with an empty
//! segment (`a//b`), a `.` or `..` segment or a control character. Like [`crate::raw_list`]
//! for S3, this module sends that request itself (with the bearer token of object_store's
//! own credential provider, so every credential object_store supports works) and hands back
//! raw names; the answer is parsed by the S3 parser.

use object_store::client::{HttpClient, HttpConnector, HttpRequestBody};
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};
use percent_encoding::utf8_percent_encode;

use crate::config::S3Config;
use crate::raw_list::{RawPage, STRICT, failed_listing, generic, parse_page};

/// object_store's default GCS address.
const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

/// Lists one bucket's objects raw.
pub(crate) struct GcsLister {
    http: HttpClient,
    /// `<base url>/<bucket>`.
    bucket_url: String,
    /// `None`: unsigned requests.
    credentials: Option<GcpCredentialProvider>,
    max_retries: usize,
}

/// The `gcs_base_url` of a service account key (emulators set it there).
fn key_base_url(key: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Key {
        gcs_base_url: Option<String>,
    }
    serde_json::from_str::<Key>(key).ok()?.gcs_base_url
}

impl GcsLister {
    /// A lister for the bucket of `c`, with the credentials object_store would use; `None`
    /// when they cannot be made (the client then lists through object_store, which reports
    /// the same problem).
    pub(crate) fn new(c: &S3Config) -> Option<Self> {
        let mut b = GoogleCloudStorageBuilder::new()
            .with_bucket_name(&c.bucket)
            .with_skip_signature(c.skip_signature);
        let mut key_url = None;
        if let Some(p) = &c.service_account_path {
            b = b.with_service_account_path(p);
            key_url = std::fs::read_to_string(p)
                .ok()
                .and_then(|k| key_base_url(&k));
        }
        if let Some(k) = &c.service_account_key {
            b = b.with_service_account_key(k.expose());
            key_url = key_base_url(k.expose());
        }
        let base = c
            .endpoint
            .clone()
            .or(key_url)
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let store = b.with_base_url(&base).build().ok()?;
        let options = object_store::ClientOptions::new()
            .with_allow_http(c.allow_http)
            .with_timeout_disabled()
            .with_connect_timeout(c.timeouts.connect);
        let connector = crate::progress_http::ProgressConnector {
            idle: c.timeouts.idle,
        };
        let http = connector.connect(&options).ok()?;
        Some(GcsLister {
            http,
            bucket_url: format!(
                "{}/{}",
                base.trim_end_matches('/'),
                utf8_percent_encode(&c.bucket, STRICT)
            ),
            credentials: (!c.skip_signature).then(|| store.credentials().clone()),
            max_retries: c.max_retries,
        })
    }

    /// Lists one page of objects whose names start with `prefix`, after the page of
    /// `token`. Retries connection failures, 429 and 5xx answers like object_store does.
    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> object_store::Result<RawPage> {
        crate::raw_list::retrying("a GCS listing", self.max_retries, || {
            self.list_page_once(prefix, token)
        })
        .await
    }

    async fn list_page_once(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<RawPage, (object_store::Error, bool)> {
        let enc = |v: &str| utf8_percent_encode(v, STRICT).to_string();
        // `encoding-type=url`: XML cannot carry most control characters.
        let mut url = format!("{}?list-type=2&encoding-type=url", self.bucket_url);
        if !prefix.is_empty() {
            url.push_str(&format!("&prefix={}", enc(prefix)));
        }
        if let Some(t) = token {
            url.push_str(&format!("&continuation-token={}", enc(t)));
        }
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(url.as_str());
        if let Some(credentials) = &self.credentials {
            let credential = credentials.get_credential().await.map_err(|e| (e, false))?;
            if !credential.bearer.is_empty() {
                request = request.header("authorization", format!("Bearer {}", credential.bearer));
            }
        }
        let request = request
            .body(HttpRequestBody::empty())
            .map_err(|e| (generic(format!("building a GCS listing: {e}")), false))?;
        let response = match self.http.execute(request).await {
            Ok(r) => r,
            Err(e) => return Err((transient(e), true)),
        };
        let status = response.status();
        let body = match response.into_body().bytes().await {
            Ok(b) => b,
            Err(e) => return Err((transient(e), true)),
        };
        if status.is_success() {
            return parse_page(&body).map_err(|e| (e, false));
        }
        Err(failed_listing(
            "GCS",
            "a GCS listing",
            prefix,
            status,
            &body,
        ))
    }
}

/// Keeps the HTTP error as the source, so a lost connection stays transient.
fn transient(e: object_store::client::HttpError) -> object_store::Error {
    object_store::Error::Generic {
        store: "GCS",
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_may_name_the_address() {
        assert_eq!(
            key_base_url(r#"{"gcs_base_url":"http://127.0.0.1:4443","disable_oauth":true}"#)
                .as_deref(),
            Some("http://127.0.0.1:4443")
        );
        assert_eq!(key_base_url(r#"{"client_email":"x"}"#), None);
    }
}
