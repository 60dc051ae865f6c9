//! Azure listings that see every blob name as the service stores it.
//!
//! object_store parses each listed name into its `Path` and fails the whole listing for one
//! name with an empty segment (`a//b`, or a `/` right after the root's prefix), a `.` or
//! `..` segment or a control character — so one odd blob would stop every run of the root.
//! Like [`crate::raw_list`] for S3, this module sends List Blobs itself (signed with
//! object_store's [`AzureAuthorizer`]) and hands back raw names, which the client sorts into
//! files, folder markers and names that cannot be a path here.
//!
//! The lister is made from the client's configuration with the credential object_store
//! would use (the emulator's, an account key, a SAS token, or none for unsigned requests).
//! Any other credential (none configured here: object_store would look for one itself) keeps
//! object_store's listing.

use chrono::{DateTime, Utc};
use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential, split_sas};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody};
use percent_encoding::utf8_percent_encode;
use serde::Deserialize;
use syncengine_core::path::percent_decode;

use crate::config::S3Config;
use crate::raw_list::{RawObject, RawPage, STRICT, failed_listing, generic};

/// Azurite's well-known account and key (public, the same in every emulator).
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The service version object_store sends.
const VERSION: &str = "2023-11-03";

/// Lists one container's blobs raw.
pub(crate) struct AzureLister {
    http: HttpClient,
    /// `<service>/<container>` (`<service>/<account>/<container>` on the emulator).
    container_url: String,
    account: String,
    /// `None`: unsigned requests.
    credential: Option<AzureCredential>,
    max_retries: usize,
}

impl AzureLister {
    /// A lister for the container of `c`, or `None` when its credential is not one this
    /// module can sign with (the client then lists through object_store).
    pub(crate) fn new(c: &S3Config) -> Option<Self> {
        let key = |k: &str| {
            AzureAccessKey::try_new(k)
                .ok()
                .map(AzureCredential::AccessKey)
        };
        let sas = |t: &str| split_sas(t).ok().map(AzureCredential::SASToken);
        let configured = match (&c.secret_access_key, &c.session_token) {
            (Some(k), _) => Some(key(k.expose())?),
            (None, Some(t)) => Some(sas(t.expose())?),
            (None, None) => None,
        };
        // As object_store's builder does: the emulator's address comes from the environment.
        let (service, account, credential) = if c.use_emulator {
            let service = std::env::var("AZURITE_BLOB_STORAGE_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "http://127.0.0.1:10000".to_owned());
            let account = c
                .access_key_id
                .clone()
                .unwrap_or_else(|| EMULATOR_ACCOUNT.to_owned());
            let credential = match configured {
                Some(cr) => cr,
                None => key(EMULATOR_KEY)?,
            };
            let service = format!("{}/{account}", service.trim_end_matches('/'));
            (service, account, Some(credential))
        } else {
            let account = c.access_key_id.clone()?;
            let service = match &c.endpoint {
                Some(e) => e.trim_end_matches('/').to_owned(),
                None => format!("https://{account}.blob.core.windows.net"),
            };
            let credential = match configured {
                Some(cr) => Some(cr),
                None if c.skip_signature => None,
                // A credential object_store finds by itself (managed identity, CLI, …).
                None => return None,
            };
            (service, account, credential)
        };
        let options = object_store::ClientOptions::new()
            .with_allow_http(c.allow_http || c.use_emulator)
            .with_timeout_disabled()
            .with_connect_timeout(c.timeouts.connect);
        let connector = crate::progress_http::ProgressConnector {
            idle: c.timeouts.idle,
        };
        let http = connector.connect(&options).ok()?;
        let container = utf8_percent_encode(&c.bucket, STRICT);
        Some(AzureLister {
            http,
            container_url: format!("{service}/{container}"),
            account,
            credential: if c.skip_signature { None } else { credential },
            max_retries: c.max_retries,
        })
    }

    /// Lists one page of blobs whose names start with `prefix`, after the page of `marker`.
    /// Retries connection failures, 429 and 5xx answers like object_store does.
    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        marker: Option<&str>,
    ) -> object_store::Result<RawPage> {
        crate::raw_list::retrying("List Blobs", self.max_retries, || {
            self.list_page_once(prefix, marker)
        })
        .await
    }

    async fn list_page_once(
        &self,
        prefix: &str,
        marker: Option<&str>,
    ) -> Result<RawPage, (object_store::Error, bool)> {
        let enc = |v: &str| utf8_percent_encode(v, STRICT).to_string();
        let mut url = format!("{}?restype=container&comp=list", self.container_url);
        if !prefix.is_empty() {
            url.push_str(&format!("&prefix={}", enc(prefix)));
        }
        if let Some(m) = marker {
            url.push_str(&format!("&marker={}", enc(m)));
        }
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(url.as_str())
            .header("x-ms-version", VERSION)
            .body(HttpRequestBody::empty())
            .map_err(|e| (generic_az(format!("building List Blobs: {e}")), false))?;
        if let Some(credential) = &self.credential {
            AzureAuthorizer::new(credential, &self.account)
                .try_authorize(&mut request)
                .map_err(|e| (e, false))?;
        }
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
            "MicrosoftAzure",
            "List Blobs",
            prefix,
            status,
            &body,
        ))
    }
}

fn generic_az(msg: String) -> object_store::Error {
    let mut e = generic(msg);
    if let object_store::Error::Generic { store, .. } = &mut e {
        *store = "MicrosoftAzure";
    }
    e
}

/// Keeps the HTTP error as the source, so a lost connection stays transient.
fn transient(e: object_store::client::HttpError) -> object_store::Error {
    object_store::Error::Generic {
        store: "MicrosoftAzure",
        source: Box::new(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    #[serde(default)]
    blobs: Option<Blobs>,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Deserialize)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blobs: Vec<Blob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Blob {
    name: BlobName,
    properties: Properties,
}

/// A name, percent-encoded when `Encoded="true"` (characters XML cannot carry).
#[derive(Deserialize)]
struct BlobName {
    #[serde(rename = "@Encoded", default)]
    encoded: Option<String>,
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Deserialize)]
struct Properties {
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Etag", default)]
    etag: Option<String>,
    #[serde(rename = "Content-Length")]
    content_length: u64,
    #[serde(rename = "ResourceType", default)]
    resource_type: Option<String>,
}

/// Parses one List Blobs answer.
fn parse_page(body: &[u8]) -> object_store::Result<RawPage> {
    let text = String::from_utf8_lossy(body);
    let page: EnumerationResults = quick_xml::de::from_str(&text)
        .map_err(|e| generic_az(format!("unreadable List Blobs answer: {e}")))?;
    let mut objects = Vec::new();
    for blob in page.blobs.map(|b| b.blobs).unwrap_or_default() {
        // A directory of an account with a hierarchical namespace: not a blob.
        if blob.properties.resource_type.as_deref() == Some("directory") {
            continue;
        }
        let encoded = blob.name.encoded.as_deref() == Some("true");
        let lossy = !encoded && blob.name.text.contains(char::REPLACEMENT_CHARACTER);
        let name = if encoded {
            percent_decode(&blob.name.text)
                .map_err(|e| generic_az(format!("listed name {:?}: {e}", blob.name.text)))?
        } else {
            blob.name.text
        };
        let last_modified = DateTime::parse_from_rfc2822(&blob.properties.last_modified)
            .map_err(|e| {
                generic_az(format!(
                    "bad Last-Modified {:?}: {e}",
                    blob.properties.last_modified
                ))
            })?
            .with_timezone(&Utc);
        objects.push(RawObject {
            key: name,
            size: blob.properties.content_length,
            last_modified,
            e_tag: blob.properties.etag,
            lossy,
        });
    }
    let next = page.next_marker.filter(|m| !m.is_empty());
    Ok(RawPage {
        objects,
        prefixes: Vec::new(),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_parse_and_decode() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="test"><Prefix>p/</Prefix><Blobs><Blob><Name>p//lead</Name><Properties><Creation-Time>Thu, 03 Dec 2026 13:01:41 GMT</Creation-Time><Last-Modified>Thu, 03 Dec 2026 13:01:41 GMT</Last-Modified><Etag>0x8DC1</Etag><Content-Length>0</Content-Length></Properties></Blob><Blob><Name Encoded="true">p%2Fctl%01x</Name><Properties><Last-Modified>Thu, 03 Dec 2026 13:01:42 GMT</Last-Modified><Content-Length>6</Content-Length></Properties></Blob><Blob><Name>p/d</Name><Properties><Last-Modified>Thu, 03 Dec 2026 13:01:42 GMT</Last-Modified><Content-Length>0</Content-Length><ResourceType>directory</ResourceType></Properties></Blob></Blobs><NextMarker>tok</NextMarker></EnumerationResults>"#;
        let page = parse_page(xml).unwrap();
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p//lead", "p/ctl\u{1}x"]);
        assert_eq!(page.objects[0].e_tag.as_deref(), Some("0x8DC1"));
        assert_eq!(page.objects[1].size, 6);
        assert_eq!(page.next.as_deref(), Some("tok"));
        let page = parse_page(b"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>")
            .unwrap();
        assert!(page.objects.is_empty() && page.next.is_none());
    }
}
