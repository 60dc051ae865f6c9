//! [`S3Builder`]: builds an [`S3Client`] from code, a URL or the environment.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use syncengine_core::{Error, Result};

use crate::client::S3Client;
use crate::config::{S3Config, Secret, StoreKind};
use crate::error::StoreError;

/// Builds an [`S3Client`] for S3, Azure Blob or GCS.
///
/// ```no_run
/// # async fn demo() -> syncengine_core::Result<()> {
/// use syncengine_backend_s3::S3Builder;
///
/// // Explicit settings (an S3-compatible server on loopback):
/// let client = S3Builder::new()
///     .with_url("s3://test/backups/laptop")?
///     .with_endpoint("http://127.0.0.1:9100")
///     .with_region("us-east-1")
///     .with_credentials("a", "b")
///     .with_allow_http(true)
///     .build()?;
///
/// // Or from the ecosystem's variables (AWS_*, AZURE_STORAGE_*, GOOGLE_*):
/// let client = S3Builder::from_env("az://container/prefix")?.build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct S3Builder {
    config: S3Config,
}

impl Default for S3Builder {
    fn default() -> Self {
        S3Builder::new()
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

impl S3Builder {
    /// Starts an S3 builder with no bucket; set one with [`with_url`](Self::with_url) or
    /// [`with_bucket`](Self::with_bucket).
    pub fn new() -> Self {
        S3Builder {
            config: S3Config::new(StoreKind::S3, ""),
        }
    }

    /// Starts a builder for `kind` and `bucket`.
    pub fn for_store(kind: StoreKind, bucket: impl Into<String>) -> Self {
        S3Builder {
            config: S3Config::new(kind, bucket),
        }
    }

    /// Starts from `url` and the environment variables of its store.
    ///
    /// - S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`
    ///   (or `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`,
    ///   `AWS_ENDPOINT`), `AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`; then the
    ///   shared files as the AWS CLI reads them (`AWS_PROFILE`, `AWS_CONFIG_FILE`,
    ///   `AWS_SHARED_CREDENTIALS_FILE`, `HOME`): the profile's `region` and `endpoint_url`
    ///   where the variables set none (an `http://` endpoint_url allows HTTP), and, without
    ///   `AWS_ACCESS_KEY_ID`, credentials from the AWS SDK's providers: the profile (keys,
    ///   `credential_process`, `role_arn` with `source_profile`, SSO), web identity
    ///   (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`), container credentials
    ///   (`AWS_CONTAINER_CREDENTIALS_*`) and EC2 instance metadata (unless
    ///   `AWS_EC2_METADATA_DISABLED=true`). See [`AwsShared`](crate::AwsShared).
    /// - Azure: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
    ///   `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_USE_EMULATOR`, `AZURE_STORAGE_ENDPOINT`
    ///   (or `AZURITE_BLOB_STORAGE_URL`), `AZURE_ALLOW_HTTP`; tokens: `AZURE_USE_AZURE_CLI`,
    ///   `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_CLIENT_SECRET`,
    ///   `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_MSI_ENDPOINT` (or `IDENTITY_ENDPOINT`,
    ///   `MSI_ENDPOINT`).
    /// - GCS: `GOOGLE_SERVICE_ACCOUNT` (or `GOOGLE_SERVICE_ACCOUNT_PATH`),
    ///   `GOOGLE_SERVICE_ACCOUNT_KEY`, `GOOGLE_APPLICATION_CREDENTIALS` (application default
    ///   credentials, a service account or a gcloud user; without it object_store reads
    ///   `~/.config/gcloud/application_default_credentials.json`), `GOOGLE_BASE_URL`,
    ///   `GOOGLE_SKIP_SIGNATURE`, `GOOGLE_ALLOW_HTTP`.
    /// - Any store: `SYNCENGINE_UNORDERED_LISTING=1` declares the server's listing unordered
    ///   (the engine then sorts it), `SYNCENGINE_MTIME_FROM_METADATA=1` reads rclone's mtime
    ///   metadata in listings (one HEAD per object), `SYNCENGINE_ENCODE_BACKSLASH=1|0` switches
    ///   rclone's `\\` → `＼` name encoding (on by default for Azure only).
    /// - S3: `SYNCENGINE_S3_ETAG_IS_MD5=0` declares that single-part ETags are not MD5s
    ///   (buckets with SSE-KMS or SSE-C encryption), so they are never taken for content;
    ///   `SYNCENGINE_S3_LIST_CONCURRENCY=N` lists up to N folders of a listing at once (see
    ///   [`S3Config::list_concurrency`]; 1: one page after another).
    ///
    /// Variables not listed here are ignored; in particular `AWS_CA_BUNDLE` is not read.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] when `url` is not `s3://`, `az://` or `gs://` with a bucket.
    pub fn from_env(url: &str) -> Result<Self> {
        Self::from_env_with(url, |name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) with a custom variable lookup (for tests and
    /// embedders that keep settings elsewhere).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_env_with(url: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut b = S3Builder::new().with_url(url)?;
        let first = |names: &[&str]| names.iter().find_map(|n| var(n).filter(|v| !v.is_empty()));
        let c = &mut b.config;
        match c.kind {
            StoreKind::S3 => {
                c.access_key_id = first(&["AWS_ACCESS_KEY_ID"]);
                c.secret_access_key = first(&["AWS_SECRET_ACCESS_KEY"]).map(Secret::new);
                c.session_token = first(&["AWS_SESSION_TOKEN", "AWS_TOKEN"]).map(Secret::new);
                c.region = first(&["AWS_REGION", "AWS_DEFAULT_REGION"]);
                c.endpoint = first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]);
                c.allow_http = first(&["AWS_ALLOW_HTTP"]).is_some_and(|v| truthy(&v));
                c.virtual_hosted_style =
                    first(&["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"]).is_some_and(|v| truthy(&v));
                c.skip_signature = first(&["AWS_SKIP_SIGNATURE"]).is_some_and(|v| truthy(&v));
                // The shared files (`AWS_PROFILE`, `~/.aws/config`): region and endpoint where
                // the variables give none, and the credential sources when they give no keys.
                #[cfg(feature = "s3")]
                {
                    let shared = crate::aws_profile::AwsShared::from_vars(&var);
                    if c.region.is_none() {
                        c.region = shared.region.clone();
                    }
                    if c.endpoint.is_none()
                        && let Some(url) = &shared.endpoint_url
                    {
                        // As for the AWS CLI: an `http://` endpoint the profile names is meant.
                        c.allow_http |= url.starts_with("http://");
                        c.endpoint = Some(url.clone());
                    }
                    c.aws_shared = Some(shared);
                }
            }
            StoreKind::Azure => {
                c.access_key_id = first(&["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT"]);
                c.secret_access_key =
                    first(&["AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY"])
                        .map(Secret::new);
                c.session_token = first(&["AZURE_STORAGE_SAS_TOKEN"]).map(Secret::new);
                c.use_emulator = first(&["AZURE_STORAGE_USE_EMULATOR"]).is_some_and(|v| truthy(&v));
                c.endpoint = first(&["AZURE_STORAGE_ENDPOINT", "AZURITE_BLOB_STORAGE_URL"]);
                c.allow_http =
                    c.use_emulator || first(&["AZURE_ALLOW_HTTP"]).is_some_and(|v| truthy(&v));
                c.skip_signature = first(&["AZURE_SKIP_SIGNATURE"]).is_some_and(|v| truthy(&v));
                // Tokens instead of keys: the Azure CLI, a service principal, workload
                // identity, a managed identity (object_store's own sources, in its order).
                c.use_azure_cli = first(&["AZURE_USE_AZURE_CLI"]).is_some_and(|v| truthy(&v));
                c.msi_endpoint = first(&[
                    "AZURE_MSI_ENDPOINT",
                    "AZURE_IDENTITY_ENDPOINT",
                    "MSI_ENDPOINT",
                    "IDENTITY_ENDPOINT",
                ]);
                c.client_id = first(&["AZURE_STORAGE_CLIENT_ID", "AZURE_CLIENT_ID"]);
                c.tenant_id = first(&["AZURE_STORAGE_TENANT_ID", "AZURE_TENANT_ID"]);
                c.client_secret =
                    first(&["AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_SECRET"]).map(Secret::new);
                c.federated_token_file = first(&["AZURE_FEDERATED_TOKEN_FILE"]);
            }
            StoreKind::Gcs => {
                c.service_account_path =
                    first(&["GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH"]);
                // Application default credentials: a service account key or a gcloud user
                // (`gcloud auth application-default login`) alike.
                c.application_credentials = first(&["GOOGLE_APPLICATION_CREDENTIALS"]);
                c.service_account_key = first(&["GOOGLE_SERVICE_ACCOUNT_KEY"]).map(Secret::new);
                c.endpoint = first(&["GOOGLE_BASE_URL"]);
                c.skip_signature = first(&["GOOGLE_SKIP_SIGNATURE"]).is_some_and(|v| truthy(&v));
                c.allow_http = first(&["GOOGLE_ALLOW_HTTP"]).is_some_and(|v| truthy(&v));
            }
        }
        if first(&["SYNCENGINE_UNORDERED_LISTING"]).is_some_and(|v| truthy(&v)) {
            c.ordered_listing = false;
        }
        if let Some(v) = first(&["SYNCENGINE_ENCODE_BACKSLASH"]) {
            c.encode_backslash = truthy(&v);
        }
        if first(&["SYNCENGINE_MTIME_FROM_METADATA"]).is_some_and(|v| truthy(&v)) {
            c.mtime_from_metadata = true;
        }
        if let Some(v) = first(&["SYNCENGINE_S3_ETAG_IS_MD5"]) {
            c.etag_is_md5 = c.kind == StoreKind::S3 && truthy(&v);
        }
        if let Some(v) = first(&["SYNCENGINE_S3_LIST_CONCURRENCY"]) {
            c.list_concurrency = v.trim().parse::<usize>().map_err(|_| {
                Error::other(
                    "object store",
                    "",
                    format!("SYNCENGINE_S3_LIST_CONCURRENCY={v:?} is not a number of folders"),
                )
            })?;
            c.list_concurrency = c.list_concurrency.max(1);
        }
        c.timeouts = syncengine_core::timeouts::Timeouts::from_vars(&var)
            .map_err(|reason| Error::other("object store", "", reason))?;
        Ok(b)
    }

    /// Sets store, bucket and prefix from `s3://bucket/prefix`, `az://container/prefix` or
    /// `gs://bucket/prefix`. The prefix is taken literally (no percent-decoding).
    ///
    /// # Errors
    /// [`Error::InvalidPath`] for another scheme, a missing bucket, or a prefix with `.`,
    /// `..` or empty segments.
    pub fn with_url(mut self, url: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidPath {
            path: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected s3://, az:// or gs://"))?;
        let kind = StoreKind::from_scheme(scheme)
            .ok_or_else(|| invalid("unknown scheme; expected s3://, az:// or gs://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket or container name"));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            syncengine_core::RelPath::new(prefix).map_err(|e| invalid(&e.to_string()))?;
        }
        let keep = self.config.clone();
        self.config = S3Config {
            kind,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            etag_is_md5: kind == StoreKind::S3 && keep.etag_is_md5,
            encode_backslash: kind == StoreKind::Azure
                || (keep.kind == kind && keep.encode_backslash),
            ..keep
        };
        Ok(self)
    }

    /// Sets the bucket (or container).
    pub fn with_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.config.bucket = bucket.into();
        self
    }

    /// Sets the root prefix inside the bucket (leading and trailing `/` are ignored).
    pub fn with_prefix(mut self, prefix: impl AsRef<str>) -> Self {
        self.config.prefix = prefix.as_ref().trim_matches('/').to_owned();
        self
    }

    /// Sets the endpoint URL (an S3-compatible server, Azurite, a GCS base URL).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.config.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the region (S3).
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.config.region = Some(region.into());
        self
    }

    /// Sets the access key id and secret (S3), or account name and key (Azure).
    pub fn with_credentials(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.config.access_key_id = Some(id.into());
        self.config.secret_access_key = Some(Secret::new(secret));
        self
    }

    /// Sets the GCS service account key (JSON text).
    pub fn with_service_account_key(mut self, json: impl Into<String>) -> Self {
        self.config.service_account_key = Some(Secret::new(json));
        self
    }

    /// Allows plain `http://` endpoints.
    pub fn with_allow_http(mut self, allow: bool) -> Self {
        self.config.allow_http = allow;
        self
    }

    /// Uses the Azurite emulator's well-known account (Azure).
    pub fn with_use_emulator(mut self, emulator: bool) -> Self {
        self.config.use_emulator = emulator;
        self
    }

    /// Sends unsigned requests.
    pub fn with_skip_signature(mut self, skip: bool) -> Self {
        self.config.skip_signature = skip;
        self
    }

    /// Declares whether the server lists keys in byte-wise order (default true). Set false
    /// for servers such as SeaweedFS; the engine then sorts their listings.
    pub fn with_ordered_listing(mut self, ordered: bool) -> Self {
        self.config.ordered_listing = ordered;
        self
    }

    /// Declares whether single-part S3 ETags are MD5s (default true on S3).
    pub fn with_etag_is_md5(mut self, md5: bool) -> Self {
        self.config.etag_is_md5 = md5 && self.config.kind == StoreKind::S3;
        self
    }

    /// Stores `\\` in names as U+FF3C `＼` (rclone's encoding), for servers that turn `\\`
    /// into `/`: Azure (the default there) and SeaweedFS.
    pub fn with_encode_backslash(mut self, on: bool) -> Self {
        self.config.encode_backslash = on;
        self
    }

    /// Reads rclone's mtime metadata in listings and `stat` (one HEAD per listed object).
    pub fn with_mtime_from_metadata(mut self, on: bool) -> Self {
        self.config.mtime_from_metadata = on;
        self
    }

    /// Sets the multipart part size (at least 5 MiB) and the parts in flight per upload.
    pub fn with_multipart(mut self, part_size: usize, parts_in_flight: usize) -> Self {
        self.config.part_size = part_size.max(5 * 1024 * 1024);
        self.config.parts_in_flight = parts_in_flight.max(1);
        self
    }

    /// Sets the budget of upload part buffers shared by all uploads of the client (see
    /// [`S3Config::upload_buffer`]; default [`DEFAULT_UPLOAD_BUFFER`](crate::DEFAULT_UPLOAD_BUFFER)).
    pub fn with_upload_buffer(mut self, bytes: usize) -> Self {
        self.config.upload_buffer = bytes.max(1);
        self
    }

    /// S3 only: copies objects larger than `bytes` (default and maximum 5 GiB, S3's
    /// CopyObject limit; at least 5 MiB) server-side as a multipart upload of `UploadPartCopy`
    /// parts of that size. Moves and the trash on S3 are copies, so this is what lets them
    /// handle objects over 5 GiB.
    pub fn with_multipart_copy_threshold(mut self, bytes: u64) -> Self {
        self.config.multipart_copy_threshold =
            bytes.clamp(5 * 1024 * 1024, crate::config::COPY_OBJECT_LIMIT);
        self
    }

    /// S3 only: how many folders a listing lists at once (see
    /// [`S3Config::list_concurrency`]); 1 lists one page after another. At least 1.
    pub fn with_list_concurrency(mut self, folders: usize) -> Self {
        self.config.list_concurrency = folders.max(1);
        self
    }

    /// S3 only: how many keys each listing request asks for (`max-keys`; default and S3's
    /// maximum 1000). Fewer makes more requests; tests use it to list small trees in many
    /// pages.
    pub fn with_list_page_keys(mut self, keys: usize) -> Self {
        self.config.list_page_keys = keys.clamp(1, 1000);
        self
    }

    /// Sets object_store's own retries per HTTP request and their time limit.
    pub fn with_retries(mut self, max_retries: usize, retry_timeout: Duration) -> Self {
        self.config.max_retries = max_retries;
        self.config.retry_timeout = retry_timeout;
        self
    }

    /// Sets how long to wait to connect, and how long a request may go without a byte moving
    /// (see [`S3Config::timeouts`]). A transfer is never limited by its total duration.
    pub fn with_timeouts(mut self, timeouts: syncengine_core::timeouts::Timeouts) -> Self {
        self.config.timeouts = timeouts;
        self
    }

    /// Returns the configuration built so far.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// Builds the client. Makes no network request.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the store's cargo feature is off; [`Error::Other`] for a
    /// configuration object_store rejects (no bucket, a bad endpoint…).
    pub fn build(self) -> Result<S3Client> {
        let c = self.config;
        let (store, big_copy) = make_store(&c).map_err(|e| e.into_core(c.kind.backend(), ""))?;
        Ok(S3Client::new(c, store, big_copy))
    }
}

/// The bucket's URL as object_store's S3 builder derives it: a virtual-hosted endpoint is
/// the bucket's own; otherwise `endpoint/bucket`.
#[cfg(feature = "s3")]
fn bucket_endpoint(c: &S3Config) -> String {
    let region = c.region.as_deref().unwrap_or("us-east-1");
    let bucket = &c.bucket;
    match (&c.endpoint, c.virtual_hosted_style) {
        (Some(e), true) => e.trim_end_matches('/').to_owned(),
        (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    }
}

/// The options object_store's clients are made with. Timeouts are applied by
/// [`ProgressConnector`](crate::progress_http::ProgressConnector), by progress: object_store's
/// total timeout (30 s by default) would fail any transfer that takes longer.
fn client_options(c: &S3Config) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_allow_http(c.allow_http)
        .with_timeout_disabled()
        .with_connect_timeout(c.timeouts.connect)
}

fn connector(c: &S3Config) -> crate::progress_http::ProgressConnector {
    crate::progress_http::ProgressConnector {
        idle: c.timeouts.idle,
    }
}

fn retry_config(c: &S3Config) -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: c.max_retries,
        retry_timeout: c.retry_timeout,
    }
}

/// A store, and for S3 the big-object copier that goes with it.
type Made = (Arc<dyn ObjectStore>, Option<Arc<crate::big_copy::BigCopy>>);

fn make_store(c: &S3Config) -> std::result::Result<Made, StoreError> {
    if c.bucket.is_empty() {
        return Err(StoreError::Config("no bucket or container name".into()));
    }
    match c.kind {
        #[cfg(feature = "s3")]
        StoreKind::S3 => {
            use object_store::aws::{AmazonS3Builder, S3CopyIfNotExists};
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(&c.bucket)
                .with_region(c.region.as_deref().unwrap_or("us-east-1"))
                .with_allow_http(c.allow_http)
                .with_virtual_hosted_style_request(c.virtual_hosted_style)
                .with_skip_signature(c.skip_signature)
                // Copy without overwrite on S3 goes through HEAD + CopyObject (see client.rs);
                // this setting only keeps object_store's own copy_if_not_exists usable.
                .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
                .with_client_options(client_options(c))
                .with_http_connector(connector(c))
                .with_retry(retry_config(c));
            if let Some(e) = &c.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(k) = &c.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(s) = &c.secret_access_key {
                b = b.with_secret_access_key(s.expose());
            }
            if let Some(t) = &c.session_token {
                b = b.with_token(t.expose());
            }
            if let (None, false, Some(shared)) = (&c.access_key_id, c.skip_signature, &c.aws_shared)
            {
                let region = c.region.clone().unwrap_or_else(|| "us-east-1".to_owned());
                b = b.with_credentials(Arc::new(crate::aws_profile::SdkCredentials::new(
                    shared.clone(),
                    region,
                    c.timeouts.connect,
                )));
            }
            let s3 = Arc::new(b.build().map_err(StoreError::Store)?);
            let http =
                object_store::client::HttpConnector::connect(&connector(c), &client_options(c))
                    .map_err(StoreError::Store)?;
            let big_copy = crate::big_copy::BigCopy {
                s3: s3.clone(),
                http,
                bucket: c.bucket.clone(),
                region: c.region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
                skip_signature: c.skip_signature,
                threshold: c.multipart_copy_threshold,
                bucket_endpoint: bucket_endpoint(c),
                max_retries: c.max_retries,
                list_page_keys: c.list_page_keys,
            };
            Ok((s3, Some(Arc::new(big_copy))))
        }
        #[cfg(feature = "azure")]
        StoreKind::Azure => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let mut b = MicrosoftAzureBuilder::new()
                .with_container_name(&c.bucket)
                .with_use_emulator(c.use_emulator)
                .with_allow_http(c.allow_http)
                .with_skip_signature(c.skip_signature)
                .with_client_options(client_options(c))
                .with_http_connector(connector(c))
                .with_retry(retry_config(c));
            if let Some(e) = &c.endpoint {
                b = b.with_endpoint(e.clone());
            }
            if let Some(k) = &c.access_key_id {
                b = b.with_account(k);
            }
            if let Some(s) = &c.secret_access_key {
                b = b.with_access_key(s.expose());
            }
            if let Some(t) = &c.session_token {
                b = b.with_config(AzureConfigKey::SasKey, t.expose());
            }
            b = b.with_use_azure_cli(c.use_azure_cli);
            if let Some(e) = &c.msi_endpoint {
                b = b.with_msi_endpoint(e);
            }
            if let Some(id) = &c.client_id {
                b = b.with_client_id(id);
            }
            if let Some(t) = &c.tenant_id {
                b = b.with_tenant_id(t);
            }
            if let Some(s) = &c.client_secret {
                b = b.with_client_secret(s.expose());
            }
            if let Some(f) = &c.federated_token_file {
                b = b.with_federated_token_file(f);
            }
            Ok((Arc::new(b.build().map_err(StoreError::Store)?), None))
        }
        #[cfg(feature = "gcs")]
        StoreKind::Gcs => {
            use object_store::gcp::GoogleCloudStorageBuilder;
            let mut b = GoogleCloudStorageBuilder::new()
                .with_bucket_name(&c.bucket)
                .with_skip_signature(c.skip_signature)
                .with_client_options(client_options(c))
                .with_http_connector(connector(c))
                .with_retry(retry_config(c));
            if let Some(e) = &c.endpoint {
                b = b.with_base_url(e);
            }
            if let Some(p) = &c.service_account_path {
                b = b.with_service_account_path(p);
            }
            if let Some(k) = &c.service_account_key {
                b = b.with_service_account_key(k.expose());
            }
            if let Some(p) = &c.application_credentials {
                b = b.with_application_credentials(p);
            }
            // The bucket is checked above, so what the builder refuses is the credentials it
            // was given (a file that cannot be read or does not parse): the side cannot be
            // logged into, named with the variable that pointed there.
            let given = [
                (
                    "GOOGLE_SERVICE_ACCOUNT (service account key file)",
                    c.service_account_path.clone(),
                ),
                (
                    "GOOGLE_SERVICE_ACCOUNT_KEY (service account key)",
                    c.service_account_key
                        .as_ref()
                        .map(|_| "(inline JSON)".to_owned()),
                ),
                (
                    "GOOGLE_APPLICATION_CREDENTIALS (application default credentials)",
                    c.application_credentials.clone(),
                ),
            ];
            let store = b.build().map_err(|e| {
                let named: Vec<String> = given
                    .iter()
                    .filter_map(|(what, v)| v.as_ref().map(|v| format!("{what} {v}")))
                    .collect();
                if named.is_empty() {
                    return StoreError::Store(e);
                }
                StoreError::Login(format!(
                    "cannot use the Google credentials given in {}: {e}. Fix: point the \
                     variable at a valid JSON key file (a service account key, or the file \
                     `gcloud auth application-default login` writes), or unset it",
                    named.join(" and ")
                ))
            })?;
            Ok((Arc::new(store), None))
        }
        #[allow(unreachable_patterns)]
        kind => Err(StoreError::FeatureOff(kind)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn url_sets_kind_bucket_and_prefix() {
        let b = S3Builder::new().with_url("s3://bkt/a/b c/").unwrap();
        assert_eq!(b.config().kind, StoreKind::S3);
        assert_eq!(b.config().bucket, "bkt");
        assert_eq!(b.config().prefix, "a/b c");
        let b = S3Builder::new().with_url("az://cont").unwrap();
        assert_eq!(
            (b.config().kind, b.config().prefix.as_str()),
            (StoreKind::Azure, "")
        );
        assert!(!b.config().etag_is_md5, "Azure ETags are not MD5s");
        assert!(S3Builder::new().with_url("s3:///x").is_err());
        assert!(S3Builder::new().with_url("s3://b/../x").is_err());
        assert!(S3Builder::new().with_url("ftp://b/x").is_err());
    }

    #[test]
    fn list_concurrency_comes_from_the_environment() {
        let c = |v: &str| {
            S3Builder::from_env_with("s3://b/p", env(&[("SYNCENGINE_S3_LIST_CONCURRENCY", v)]))
                .map(|b| b.config().list_concurrency)
        };
        assert_eq!(c("12").unwrap(), 12);
        assert_eq!(c("0").unwrap(), 1, "at least one folder at a time");
        assert!(c("many").is_err());
        let default = S3Builder::from_env_with("s3://b/p", env(&[])).unwrap();
        assert_eq!(
            default.config().list_concurrency,
            crate::config::DEFAULT_LIST_CONCURRENCY
        );
        let set = S3Builder::new().with_list_concurrency(0);
        assert_eq!(set.config().list_concurrency, 1);
    }

    #[test]
    fn env_reads_ecosystem_variables() {
        let b = S3Builder::from_env_with(
            "s3://b/p",
            env(&[
                ("AWS_ACCESS_KEY_ID", "id"),
                ("AWS_SECRET_ACCESS_KEY", "sk"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_ENDPOINT", "http://127.0.0.1:1"),
                ("AWS_ALLOW_HTTP", "true"),
                ("AWS_CA_BUNDLE", "/nonexistent"),
                ("SYNCENGINE_UNORDERED_LISTING", "1"),
            ]),
        )
        .unwrap();
        let c = b.config();
        assert_eq!(c.access_key_id.as_deref(), Some("id"));
        assert_eq!(c.secret_access_key.as_ref().map(Secret::expose), Some("sk"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert!(c.allow_http && !c.ordered_listing);
        assert!(
            !format!("{b:?}").contains("\"sk\""),
            "Debug leaks the secret"
        );

        let b = S3Builder::from_env_with(
            "az://c",
            env(&[
                ("AZURE_STORAGE_USE_EMULATOR", "1"),
                ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ]),
        )
        .unwrap();
        assert!(b.config().use_emulator && b.config().allow_http);
        assert_eq!(b.config().access_key_id.as_deref(), Some("acct"));

        let b = S3Builder::from_env_with(
            "gs://g/x",
            env(&[
                ("GOOGLE_SERVICE_ACCOUNT", "/k.json"),
                ("GOOGLE_BASE_URL", "http://h"),
            ]),
        )
        .unwrap();
        assert_eq!(b.config().service_account_path.as_deref(), Some("/k.json"));
        assert_eq!(b.config().endpoint.as_deref(), Some("http://h"));
    }

    /// SSE-KMS/SSE-C buckets can turn ETag-as-MD5 off from the environment; other stores
    /// never have it on.
    #[test]
    fn etag_is_md5_follows_the_environment_on_s3_only() {
        let on = |url: &str, vars: &[(&str, &str)]| {
            S3Builder::from_env_with(url, env(vars))
                .unwrap()
                .config()
                .etag_is_md5
        };
        assert!(on("s3://b", &[]));
        assert!(!on("s3://b", &[("SYNCENGINE_S3_ETAG_IS_MD5", "0")]));
        assert!(!on("gs://b", &[("SYNCENGINE_S3_ETAG_IS_MD5", "1")]));
        assert!(!on("az://b", &[("SYNCENGINE_S3_ETAG_IS_MD5", "1")]));
    }

    /// The profile's region and endpoint_url fill what the variables leave unset, and only
    /// that; the files are found through the variables given, not the process's.
    #[cfg(feature = "s3")]
    #[test]
    fn the_profile_fills_region_and_endpoint_the_variables_leave_unset() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config");
        std::fs::write(
            &config,
            "[profile x]\nregion = eu-north-1\nendpoint_url = http://127.0.0.1:9\n",
        )
        .unwrap();
        let config = config.to_str().unwrap();
        let b = S3Builder::from_env_with(
            "s3://b",
            env(&[("AWS_CONFIG_FILE", config), ("AWS_PROFILE", "x")]),
        )
        .unwrap();
        let c = b.config();
        assert_eq!(c.region.as_deref(), Some("eu-north-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert!(
            c.allow_http,
            "an http:// endpoint_url in the profile is meant"
        );
        let shared = c.aws_shared.as_ref().unwrap();
        assert!(shared.profile_found && shared.profile_from_env);
        assert_eq!(shared.profiles, ["x"]);

        let b = S3Builder::from_env_with(
            "s3://b",
            env(&[
                ("AWS_CONFIG_FILE", config),
                ("AWS_PROFILE", "x"),
                ("AWS_REGION", "us-west-2"),
                ("AWS_ENDPOINT_URL", "https://s3.example"),
            ]),
        )
        .unwrap();
        assert_eq!(b.config().region.as_deref(), Some("us-west-2"));
        assert_eq!(b.config().endpoint.as_deref(), Some("https://s3.example"));
        assert!(!b.config().allow_http);

        let b = S3Builder::from_env_with(
            "s3://b",
            env(&[("AWS_CONFIG_FILE", config), ("AWS_PROFILE", "nope")]),
        )
        .unwrap();
        assert!(!b.config().aws_shared.as_ref().unwrap().profile_found);
        assert_eq!(b.config().region, None);
    }

    /// Azure's token sources and GCS's application default credentials reach the config.
    #[test]
    fn env_reads_token_sources_of_azure_and_gcs() {
        let b = S3Builder::from_env_with(
            "az://c",
            env(&[
                ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
                ("AZURE_USE_AZURE_CLI", "true"),
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi"),
                ("AZURE_CLIENT_ID", "cid"),
                ("AZURE_TENANT_ID", "tid"),
                ("AZURE_CLIENT_SECRET", "csecret"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
            ]),
        )
        .unwrap();
        let c = b.config();
        assert!(c.use_azure_cli);
        assert_eq!(c.msi_endpoint.as_deref(), Some("http://127.0.0.1:1/msi"));
        assert_eq!(c.client_id.as_deref(), Some("cid"));
        assert_eq!(c.tenant_id.as_deref(), Some("tid"));
        assert_eq!(
            c.client_secret.as_ref().map(Secret::expose),
            Some("csecret")
        );
        assert_eq!(c.federated_token_file.as_deref(), Some("/var/run/token"));
        assert!(
            !format!("{b:?}").contains("csecret"),
            "Debug leaks the secret"
        );
        if cfg!(feature = "azure") {
            assert!(b.build().is_ok(), "object_store takes the options");
        }

        let b = S3Builder::from_env_with(
            "gs://g",
            env(&[("GOOGLE_APPLICATION_CREDENTIALS", "/adc.json")]),
        )
        .unwrap();
        assert_eq!(
            b.config().application_credentials.as_deref(),
            Some("/adc.json")
        );
        assert_eq!(b.config().service_account_path, None);
    }

    #[test]
    fn build_without_bucket_fails() {
        assert!(S3Builder::new().build().is_err());
    }
}
