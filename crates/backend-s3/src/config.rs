//! [`S3Config`]: everything a client needs to reach one bucket (or container) and prefix.

use std::fmt;
use std::time::Duration;

/// Which object store a client talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreKind {
    /// Amazon S3 or an S3-compatible server (MinIO, SeaweedFS, moto…): `s3://`.
    S3,
    /// Azure Blob Storage (or Azurite): `az://`.
    Azure,
    /// Google Cloud Storage: `gs://`.
    Gcs,
}

impl StoreKind {
    /// Returns the URL scheme of this store (`s3`, `az`, `gs`).
    pub fn scheme(self) -> &'static str {
        match self {
            StoreKind::S3 => "s3",
            StoreKind::Azure => "az",
            StoreKind::Gcs => "gs",
        }
    }

    /// Returns the backend name used in errors and logs (`s3`, `azure`, `gcs`).
    pub fn backend(self) -> &'static str {
        match self {
            StoreKind::S3 => "s3",
            StoreKind::Azure => "azure",
            StoreKind::Gcs => "gcs",
        }
    }

    /// Parses a URL scheme: `s3`, `s3a`, `az`, `azure`, `abfs`, `gs`, `gcs`.
    pub fn from_scheme(scheme: &str) -> Option<StoreKind> {
        match scheme.to_ascii_lowercase().as_str() {
            "s3" | "s3a" => Some(StoreKind::S3),
            "az" | "azure" | "abfs" | "abfss" => Some(StoreKind::Azure),
            "gs" | "gcs" => Some(StoreKind::Gcs),
            _ => None,
        }
    }
}

/// A secret string (key, token): usable, but never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// Returns the secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// The configuration of an [`S3Client`](crate::S3Client), as built by
/// [`S3Builder`](crate::S3Builder). `Debug` hides every secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Config {
    /// Which store.
    pub kind: StoreKind,
    /// Bucket (S3, GCS) or container (Azure).
    pub bucket: String,
    /// Root prefix inside the bucket, without leading or trailing `/`; empty for the whole bucket.
    pub prefix: String,
    /// Endpoint URL (S3-compatible servers, Azurite, a GCS emulator's base URL).
    pub endpoint: Option<String>,
    /// Region (S3).
    pub region: Option<String>,
    /// Access key id (S3) or storage account name (Azure).
    pub access_key_id: Option<String>,
    /// Secret access key (S3) or storage account key (Azure).
    pub secret_access_key: Option<Secret>,
    /// Session token (S3) or SAS token (Azure).
    pub session_token: Option<Secret>,
    /// Service account JSON file path (GCS).
    pub service_account_path: Option<String>,
    /// Service account key as JSON text (GCS).
    pub service_account_key: Option<Secret>,
    /// GCS: an application default credentials file (`GOOGLE_APPLICATION_CREDENTIALS`): a
    /// service account key or a `gcloud auth application-default login` user. Without it
    /// (and without a service account), object_store reads
    /// `~/.config/gcloud/application_default_credentials.json`, then asks the GCE metadata
    /// server.
    pub application_credentials: Option<String>,
    /// Azure: get a token from the Azure CLI (`az account get-access-token`) instead of a
    /// key (`AZURE_USE_AZURE_CLI`).
    pub use_azure_cli: bool,
    /// Azure: the managed identity endpoint (`AZURE_MSI_ENDPOINT`, `IDENTITY_ENDPOINT`…);
    /// without a key, a SAS, a service principal or the Azure CLI, object_store asks the
    /// instance metadata endpoint for a managed identity token.
    pub msi_endpoint: Option<String>,
    /// Azure: the client id of a service principal, a user-assigned managed identity or a
    /// workload identity (`AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
    /// Azure: the tenant of a service principal or workload identity (`AZURE_TENANT_ID`).
    pub tenant_id: Option<String>,
    /// Azure: a service principal's secret (`AZURE_CLIENT_SECRET`).
    pub client_secret: Option<Secret>,
    /// Azure: the workload identity token file (`AZURE_FEDERATED_TOKEN_FILE`, AKS).
    pub federated_token_file: Option<String>,
    /// Allow plain `http://` endpoints.
    pub allow_http: bool,
    /// S3: address buckets as `bucket.host` instead of `host/bucket`.
    pub virtual_hosted_style: bool,
    /// Azure: use the Azurite emulator's well-known account and key.
    pub use_emulator: bool,
    /// Send unsigned requests (public buckets, emulators).
    pub skip_signature: bool,
    /// Whether the server lists keys in byte-wise order. True for AWS S3, MinIO, moto,
    /// Azure and GCS; false for servers such as SeaweedFS, whose listings the engine must sort.
    /// With [`S3Config::encode_backslash`] on, the client never claims an ordered listing:
    /// encoded names list in the order of their keys, not of their decoded paths.
    pub ordered_listing: bool,
    /// Whether a single-part S3 ETag is taken as the object's MD5 (false for buckets with
    /// SSE-KMS/SSE-C encryption, where it is not).
    pub etag_is_md5: bool,
    /// Store `\\` in names as rclone does on stores that turn it into `/` (Azure, SeaweedFS):
    /// as U+FF3C `＼`. Default: true on Azure, false elsewhere.
    pub encode_backslash: bool,
    /// Read each object's rclone-style `mtime` metadata in listings and `stat` (one HEAD per
    /// listed object). When false, entries carry the store's Last-Modified time.
    pub mtime_from_metadata: bool,
    /// Part size for multipart uploads; also the largest body sent as one PUT.
    pub part_size: usize,
    /// Parts uploaded concurrently per multipart upload.
    pub parts_in_flight: usize,
    /// The most bytes all uploads of one client (and its clones) hold in part buffers at
    /// once, buffers being filled and parts uploading alike (default
    /// [`DEFAULT_UPLOAD_BUFFER`]). An upload reserves a part's worth (a small file: its
    /// size) before it buffers, and waits while the budget is spent, so memory does not grow
    /// with the number of concurrent transfers. At least one part is always allowed.
    pub upload_buffer: usize,
    /// Retries object_store makes per HTTP request before the error reaches the engine.
    pub max_retries: usize,
    /// S3 only: how many folders (key prefixes ending in `/`) a listing lists at once
    /// (`SYNCENGINE_S3_LIST_CONCURRENCY`, default [`DEFAULT_LIST_CONCURRENCY`]). A listing
    /// is split at the root's folders (one level deeper when the root has few) and handed
    /// on in key order, as a sequential listing gives it; 1 lists sequentially, one page
    /// after another.
    pub list_concurrency: usize,
    /// S3 only: keys asked for per listing request (`max-keys`, 1 to 1000; default 1000,
    /// S3's own default and maximum).
    pub list_page_keys: usize,
    /// Upper bound on the time object_store spends retrying one request.
    pub retry_timeout: Duration,
    /// How long to wait to connect, and how long a request may go without a byte moving
    /// (`SYNCENGINE_CONTIMEOUT`, `SYNCENGINE_TIMEOUT`; defaults 60 s and 5 minutes). A
    /// transfer is never limited by its total duration.
    pub timeouts: syncengine_core::timeouts::Timeouts,
    /// S3 only: objects larger than this are copied server-side as a multipart upload of
    /// `UploadPartCopy` parts of this size (default 5 GiB, the CopyObject limit).
    pub multipart_copy_threshold: u64,
    /// S3 only: what the shared AWS files (`~/.aws/config`, `~/.aws/credentials`, the
    /// profile `AWS_PROFILE` names) say, as read by
    /// [`S3Builder::from_env`](crate::S3Builder::from_env). Without keys in the
    /// configuration, the client's credentials come from the AWS SDK's providers for this
    /// profile (see the crate docs); `None` (the builder's other constructors) means keys or
    /// unsigned requests only.
    #[cfg(feature = "s3")]
    pub aws_shared: Option<crate::aws_profile::AwsShared>,
}

/// The largest object one S3 CopyObject request may copy (S3's documented limit); larger
/// objects are copied in parts (see [`S3Config::multipart_copy_threshold`]).
pub const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// Default number of folders an S3 listing lists at once (see
/// [`S3Config::list_concurrency`]): 1, one page after another. Measured on SeaweedFS over
/// loopback (2 cores, 1 000 000 objects), where the server's CPU bounds a listing, splitting
/// did not pay: 26.6 s sequential, 29.1 s with 8 folders at once (s5cmd ls: 43.6 s). It
/// pays where each request waits on the network; there, set it (8 to 16).
pub const DEFAULT_LIST_CONCURRENCY: usize = 1;

/// Default multipart part size: 8 MiB (S3's minimum is 5 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Default budget of upload part buffers per client: 32 MiB (four default parts).
pub const DEFAULT_UPLOAD_BUFFER: usize = 32 * 1024 * 1024;

impl S3Config {
    /// A configuration with defaults for `kind` and `bucket`, and no credentials.
    pub fn new(kind: StoreKind, bucket: impl Into<String>) -> Self {
        S3Config {
            kind,
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            service_account_path: None,
            service_account_key: None,
            application_credentials: None,
            use_azure_cli: false,
            msi_endpoint: None,
            client_id: None,
            tenant_id: None,
            client_secret: None,
            federated_token_file: None,
            allow_http: false,
            virtual_hosted_style: false,
            use_emulator: false,
            skip_signature: false,
            ordered_listing: true,
            etag_is_md5: kind == StoreKind::S3,
            mtime_from_metadata: false,
            encode_backslash: kind == StoreKind::Azure,
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight: 2,
            upload_buffer: DEFAULT_UPLOAD_BUFFER,
            max_retries: 2,
            list_concurrency: DEFAULT_LIST_CONCURRENCY,
            list_page_keys: 1000,
            retry_timeout: Duration::from_secs(30),
            timeouts: syncengine_core::timeouts::Timeouts::default(),
            multipart_copy_threshold: COPY_OBJECT_LIMIT,
            #[cfg(feature = "s3")]
            aws_shared: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let mut c = S3Config::new(StoreKind::S3, "b");
        c.secret_access_key = Some(Secret::new("hunter2"));
        c.session_token = Some(Secret::new("tok3n"));
        c.service_account_key = Some(Secret::new("{\"private_key\":\"pk\"}"));
        c.client_secret = Some(Secret::new("cl1entsecret"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("tok3n") && !shown.contains("pk\""));
        assert!(!shown.contains("cl1entsecret"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn schemes() {
        assert_eq!(StoreKind::from_scheme("S3"), Some(StoreKind::S3));
        assert_eq!(StoreKind::from_scheme("az"), Some(StoreKind::Azure));
        assert_eq!(StoreKind::from_scheme("gs"), Some(StoreKind::Gcs));
        assert_eq!(StoreKind::from_scheme("ftp"), None);
    }
}
