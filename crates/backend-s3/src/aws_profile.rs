//! S3 credentials and settings the way AWS users keep them: `AWS_PROFILE` and the shared
//! `~/.aws/config` and `~/.aws/credentials` files, read with the AWS SDK's own code
//! (`aws-config`), not a hand-written INI reader.
//!
//! [`AwsShared::from_vars`] reads the profile's `region` and `endpoint_url` when the builder is
//! made (the files only, no network). [`SdkCredentials`] plugs the SDK's credential
//! providers into object_store as a [`CredentialProvider`]: on the first request it asks, in
//! order, the profile (static keys, `credential_process`, `role_arn` + `source_profile` or
//! `credential_source` through STS, SSO, `web_identity_token_file`), the web identity
//! variables (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`), container credentials
//! (`AWS_CONTAINER_CREDENTIALS_*`) and the EC2 instance metadata service; credentials with an
//! expiry are fetched again five minutes before it. Keys in the environment
//! (`AWS_ACCESS_KEY_ID`) are taken by the builder itself and never reach this chain.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_types::os_shim_internal::{Env, Fs};
use aws_types::region::Region;
use object_store::aws::AwsCredential;
use object_store::client::CredentialProvider;

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// How long the EC2 instance metadata service may take to accept a connection. Off EC2 (a
/// laptop) nothing answers at 169.254.169.254: one attempt of one second, not the SDK's four.
const IMDS_CONNECT: Duration = Duration::from_secs(1);

/// What the shared AWS files and variables say for one S3 location: the profile, the files
/// it was looked up in, and the other credential sources the environment configures. Holds
/// names and paths only, never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AwsShared {
    /// The profile: `AWS_PROFILE`, else `default`.
    pub profile: String,
    /// True when `AWS_PROFILE` named it.
    pub profile_from_env: bool,
    /// The config file: `AWS_CONFIG_FILE`, else `~/.aws/config`.
    pub config_file: PathBuf,
    /// The credentials file: `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
    pub credentials_file: PathBuf,
    /// Whether the profile is defined in either file.
    pub profile_found: bool,
    /// The profiles the files define (for the message when the one asked for is not there).
    pub profiles: Vec<String>,
    /// Why the files could not be read or parsed, when they could not.
    pub load_error: Option<String>,
    /// The profile's `region`.
    pub region: Option<String>,
    /// The profile's `endpoint_url`, unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is set
    /// (a `services` section's per-service URL is not read).
    pub endpoint_url: Option<String>,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN` and `AWS_ROLE_SESSION_NAME` (if the
    /// first two are set).
    pub web_identity: Option<(PathBuf, String, String)>,
    /// Whether `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `…_FULL_URI` is set (ECS, EKS Pod
    /// Identity).
    pub container: bool,
    /// Whether the EC2 instance metadata service is asked (`AWS_EC2_METADATA_DISABLED` is
    /// not `true`).
    pub imds: bool,
}

impl AwsShared {
    /// Reads the shared files for the profile `var` selects. Reads files only; a file that
    /// is missing is an empty one, as for the AWS CLI.
    pub(crate) fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> AwsShared {
        let get = |n: &str| var(n).filter(|v| !v.trim().is_empty());
        let home = get("HOME").or_else(|| get("USERPROFILE"));
        let expand = |p: String| -> PathBuf {
            match (p.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => PathBuf::from(h).join(rest),
                _ => PathBuf::from(p),
            }
        };
        let default_file = |name: &str| match &home {
            Some(h) => PathBuf::from(h).join(".aws").join(name),
            None => PathBuf::from("~/.aws").join(name),
        };
        let config_file = get("AWS_CONFIG_FILE").map_or_else(|| default_file("config"), expand);
        let credentials_file =
            get("AWS_SHARED_CREDENTIALS_FILE").map_or_else(|| default_file("credentials"), &expand);
        let profile_from_env = get("AWS_PROFILE").is_some();
        let profile = get("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
        let web_identity = match (get("AWS_WEB_IDENTITY_TOKEN_FILE"), get("AWS_ROLE_ARN")) {
            (Some(file), Some(role)) => Some((
                PathBuf::from(file),
                role,
                get("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "syncengine".to_owned()),
            )),
            _ => None,
        };
        let mut shared = AwsShared {
            profile: profile.clone(),
            profile_from_env,
            config_file,
            credentials_file,
            profile_found: false,
            profiles: Vec::new(),
            load_error: None,
            region: None,
            endpoint_url: None,
            web_identity,
            container: get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
                || get("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some(),
            imds: !get("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        };
        let env: Vec<(&str, &str)> = home.as_deref().map(|h| ("HOME", h)).into_iter().collect();
        // The SDK's loader reads the files with blocking calls inside an async fn: no
        // runtime is needed to drive it.
        let loaded = futures::executor::block_on(aws_config::profile::load(
            &Fs::real(),
            &Env::from_slice(&env),
            &shared.files(),
            Some(Cow::Owned(profile.clone())),
        ));
        match loaded {
            Ok(set) => {
                shared.profiles = set.profiles().map(str::to_owned).collect();
                shared.profiles.sort();
                if let Some(p) = set.get_profile(&profile) {
                    shared.profile_found = true;
                    shared.region = p.get("region").map(str::to_owned);
                    if get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_none() {
                        shared.endpoint_url = p.get("endpoint_url").map(str::to_owned);
                    }
                }
            }
            Err(e) => {
                shared.load_error = Some(aws_smithy_error_text(&e));
            }
        }
        shared
    }

    /// The two shared files, as the SDK's loader takes them.
    #[allow(deprecated)] // the alias aws-config itself takes; its new name is in aws-runtime
    fn files(&self) -> aws_config::profile::profile_file::ProfileFiles {
        use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
        let mut files = ProfileFiles::builder()
            .include_default_config_file(false)
            .include_default_credentials_file(false);
        // A missing file is an empty one (the SDK's loader refuses a missing file given by
        // name, unlike its default files).
        for (kind, path) in [
            (ProfileFileKind::Config, &self.config_file),
            (ProfileFileKind::Credentials, &self.credentials_file),
        ] {
            files = if path.exists() {
                files.with_file(kind, path)
            } else {
                files.with_contents(kind, "")
            };
        }
        files.build()
    }

    /// `… in /home/me/.aws/config and /home/me/.aws/credentials`.
    fn where_(&self) -> String {
        format!(
            "{} and {}",
            self.config_file.display(),
            self.credentials_file.display()
        )
    }

    /// The profile as named in messages.
    fn profile_named(&self) -> String {
        if self.profile_from_env {
            format!("profile `{}` (AWS_PROFILE)", self.profile)
        } else {
            format!(
                "profile `{}` (the default; set AWS_PROFILE for another)",
                self.profile
            )
        }
    }
}

/// An SDK error text without what a `credential_process` printed: the SDK quotes the
/// process's stderr, which may hold a token or a password the helper was given.
fn without_process_output(text: &str) -> String {
    match text.find("Stderr:") {
        Some(i) => format!(
            "{} (its stderr is not shown: it may hold secrets)",
            text[..i].trim_end().trim_end_matches('.')
        ),
        None => text.to_owned(),
    }
}

/// A time as an RFC 3339 UTC timestamp, to the second.
fn humantime_utc(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An SDK error with its causes, on one line.
fn aws_smithy_error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        cur = s.source();
    }
    text
}

/// The SDK's credential providers behind object_store's [`CredentialProvider`], with a
/// cache that fetches again [`REFRESH_BEFORE`] expiry.
pub(crate) struct SdkCredentials {
    shared: AwsShared,
    region: String,
    /// The longest a source may take to answer (the connect timeout, `--contimeout`): a
    /// `credential_process` waiting for a prompt nobody sees must not hang the run.
    answer_within: Duration,
    chain: tokio::sync::OnceCell<CredentialsProviderChain>,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl fmt::Debug for SdkCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credential itself.
        f.debug_struct("SdkCredentials")
            .field("profile", &self.shared.profile)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl SdkCredentials {
    pub(crate) fn new(shared: AwsShared, region: String, answer_within: Duration) -> Self {
        SdkCredentials {
            shared,
            region,
            answer_within,
            chain: tokio::sync::OnceCell::new(),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The chain, made on first use (it needs no network to be made).
    fn make_chain(&self) -> CredentialsProviderChain {
        let s = &self.shared;
        let conf =
            ProviderConfig::without_region().with_region(Some(Region::new(self.region.clone())));
        let profile = aws_config::profile::ProfileFileCredentialsProvider::builder()
            .configure(&conf)
            .profile_name(&s.profile)
            .profile_files(s.files())
            .build();
        let mut chain = CredentialsProviderChain::first_try("Profile", profile);
        if let Some((file, role, session)) = &s.web_identity {
            use aws_config::web_identity_token::{
                StaticConfiguration, WebIdentityTokenCredentialsProvider,
            };
            let p = WebIdentityTokenCredentialsProvider::builder()
                .configure(&conf)
                .static_configuration(StaticConfiguration {
                    web_identity_token_file: file.clone(),
                    role_arn: role.clone(),
                    session_name: session.clone(),
                })
                .build();
            chain = chain.or_else("WebIdentityToken", p);
        }
        if s.container {
            let p = aws_config::ecs::EcsCredentialsProvider::builder()
                .configure(&conf)
                .build();
            chain = chain.or_else("EcsContainer", p);
        }
        if s.imds {
            let client = aws_config::imds::Client::builder()
                .configure(&conf)
                .max_attempts(1)
                .connect_timeout(IMDS_CONNECT)
                .build();
            let p = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
                .configure(&conf)
                .imds_client(client)
                .build();
            chain = chain.or_else("Ec2InstanceMetadata", p);
        }
        chain
    }

    /// The message when no source gave credentials: what was tried, in order, and the fix.
    fn nothing_found(&self, sdk: &str) -> String {
        let s = &self.shared;
        let mut tried = vec!["AWS_ACCESS_KEY_ID in the environment: not set".to_owned()];
        tried.push(format!(
            "{} in {}: {}",
            s.profile_named(),
            s.where_(),
            if s.profile_found {
                "found, but it gave no credentials"
            } else {
                "not defined"
            }
        ));
        tried.push(match &s.web_identity {
            Some(_) => "web identity (AWS_WEB_IDENTITY_TOKEN_FILE): gave none".to_owned(),
            None => "web identity: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN not set".to_owned(),
        });
        tried.push(if s.container {
            "container credentials (AWS_CONTAINER_CREDENTIALS_*): gave none".to_owned()
        } else {
            "container credentials: AWS_CONTAINER_CREDENTIALS_* not set".to_owned()
        });
        tried.push(if s.imds {
            "EC2 instance metadata: no answer (not an EC2 instance?)".to_owned()
        } else {
            "EC2 instance metadata: off (AWS_EC2_METADATA_DISABLED=true)".to_owned()
        });
        format!(
            "no AWS credentials found. Tried: {}. (AWS SDK: {sdk}.) Fix: set AWS_PROFILE to a \
             profile in {} (`aws configure --profile NAME` writes one; `aws sso login \
             --profile NAME` for SSO), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            tried.join("; "),
            s.where_()
        )
    }

    /// Why credentials could not be had, before any source is asked: a profile named in
    /// `AWS_PROFILE` that the files do not define, or files that do not parse.
    fn refuse_early(&self) -> Option<String> {
        let s = &self.shared;
        if let Some(e) = &s.load_error {
            return Some(format!(
                "cannot read the AWS shared files {}: {e}. Fix the file, or point \
                 AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE at readable ones",
                s.where_()
            ));
        }
        if s.profile_from_env && !s.profile_found {
            let known = if s.profiles.is_empty() {
                "they define no profile".to_owned()
            } else {
                format!("they define: {}", s.profiles.join(", "))
            };
            return Some(format!(
                "AWS profile `{}` (AWS_PROFILE) is not defined in {} ({known}). Fix: set \
                 AWS_PROFILE to one of those, add [profile {}] to the config file (`aws \
                 configure --profile {}`), or point AWS_CONFIG_FILE / \
                 AWS_SHARED_CREDENTIALS_FILE at the files that define it",
                s.profile,
                s.where_(),
                s.profile,
                s.profile
            ));
        }
        None
    }

    async fn fetch(&self) -> Result<(Arc<AwsCredential>, Option<SystemTime>), String> {
        if let Some(msg) = self.refuse_early() {
            return Err(msg);
        }
        let chain = self.chain.get_or_init(|| async { self.make_chain() }).await;
        let Ok(answer) =
            tokio::time::timeout(self.answer_within, chain.provide_credentials()).await
        else {
            return Err(format!(
                "the AWS credential sources for {} in {} gave no answer within {:?} (the \
                 connect timeout, --contimeout): a credential_process waiting for input (a \
                 password or MFA prompt) never answers here. Fix: make it answer without a \
                 prompt, or log in first (`aws sso login`)",
                self.shared.profile_named(),
                self.shared.where_(),
                self.answer_within
            ));
        };
        match answer {
            Ok(c) if c.expiry().is_some_and(|t| t <= SystemTime::now()) => Err(format!(
                "the AWS credentials from {} in {} had already expired when they were given \
                 (at {}). Fix: make the credential source return current credentials",
                self.shared.profile_named(),
                self.shared.where_(),
                humantime_utc(c.expiry().unwrap_or(SystemTime::UNIX_EPOCH))
            )),
            Ok(c) => Ok((
                Arc::new(AwsCredential {
                    key_id: c.access_key_id().to_owned(),
                    secret_key: c.secret_access_key().to_owned(),
                    token: c.session_token().map(str::to_owned),
                }),
                c.expiry(),
            )),
            Err(e) => {
                use aws_credential_types::provider::error::CredentialsError as CE;
                let text = without_process_output(&aws_smithy_error_text(&e));
                Err(match e {
                    CE::CredentialsNotLoaded(_) => self.nothing_found(&text),
                    _ => format!(
                        "AWS credentials from {} in {} failed: {text}",
                        self.shared.profile_named(),
                        self.shared.where_()
                    ),
                })
            }
        }
    }
}

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((c, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|t| {
                t.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_BEFORE)
            });
            if fresh {
                return Ok(c.clone());
            }
        }
        match self.fetch().await {
            Ok((c, expiry)) => {
                *cached = Some((c.clone(), expiry));
                Ok(c)
            }
            Err(msg) => Err(object_store::Error::Generic {
                store: "S3",
                source: Box::new(CredentialsUnavailable(msg)),
            }),
        }
    }
}

/// No credentials could be had; the message says what was tried and the fix.
#[derive(Debug)]
pub(crate) struct CredentialsUnavailable(pub(crate) String);

impl fmt::Display for CredentialsUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CredentialsUnavailable {}
