//! [`WebDavConfig`]: everything a [`WebDavClient`](crate::WebDavClient) is built from.

use std::fmt;
use std::str::FromStr;

/// Settings of a WebDAV client. Build one with [`WebDavBuilder`](crate::WebDavBuilder), or
/// deserialize it and pass it to [`WebDavBuilder::from_config`](crate::WebDavBuilder::from_config).
///
/// `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WebDavConfig {
    /// The root collection: `webdav://host[:port]/path` (plain HTTP), `webdavs://…` (TLS), or
    /// an `http://` / `https://` URL.
    pub url: Option<String>,
    /// User name for HTTP authentication.
    pub username: Option<String>,
    /// Password for HTTP authentication.
    pub password: Option<String>,
    /// How to authenticate: answer the server's challenge, Basic or Digest (default
    /// [`WebDavAuth::Auto`]).
    pub auth: WebDavAuth,
    /// Keep modification times in the `urn:syncengine:` `mtime` dead property (true by
    /// default). Turn it off for servers that refuse dead properties; mtimes then come from
    /// `getlastmodified` (the upload time, to the second).
    pub mtime_property: bool,
    /// How many `PROPFIND` requests a listing keeps in flight (at least 1; default 4).
    pub list_concurrency: usize,
    /// Send Basic credentials over plain `http://` too (false by default: a client refuses
    /// to, with an error, before the password goes out). Only for a network you trust, such
    /// as loopback. Digest and `https://` are not affected.
    pub allow_insecure_basic: bool,
    /// A PEM file of CA certificates to trust for `https://`, besides the platform's trust
    /// store (for a server whose certificate a private CA signed). Certificates are always
    /// checked.
    pub ca_file: Option<std::path::PathBuf>,
    /// Time to connect and time a request may go without progress (see
    /// [`Timeouts`](syncengine_core::timeouts::Timeouts); defaults 60 s and 5 minutes).
    #[serde(skip)]
    pub timeouts: syncengine_core::timeouts::Timeouts,
}

impl Default for WebDavConfig {
    fn default() -> Self {
        WebDavConfig {
            url: None,
            username: None,
            password: None,
            auth: WebDavAuth::Auto,
            mtime_property: true,
            list_concurrency: 4,
            allow_insecure_basic: false,
            ca_file: None,
            timeouts: syncengine_core::timeouts::Timeouts::default(),
        }
    }
}

impl fmt::Debug for WebDavConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebDavConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("mtime_property", &self.mtime_property)
            .field("list_concurrency", &self.list_concurrency)
            .field("allow_insecure_basic", &self.allow_insecure_basic)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// How a client authenticates when it has credentials
/// ([`WebDavBuilder::with_auth`](crate::WebDavBuilder::with_auth), `SYNCENGINE_WEBDAV_AUTH`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WebDavAuth {
    /// Send no credentials until the server answers 401, then answer its challenge: Digest
    /// (the strongest algorithm offered) when it offers Digest, else Basic. The challenge is
    /// cached and answers later requests without another round trip.
    #[default]
    Auto,
    /// Send Basic credentials with every request; never answer a Digest challenge.
    Basic,
    /// Answer Digest challenges only; never send the password in Basic form.
    Digest,
}

impl WebDavAuth {
    /// The lower-case name, as `SYNCENGINE_WEBDAV_AUTH` and serde spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            WebDavAuth::Auto => "auto",
            WebDavAuth::Basic => "basic",
            WebDavAuth::Digest => "digest",
        }
    }
}

impl fmt::Display for WebDavAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebDavAuth {
    type Err = String;

    /// Parses `auto`, `basic` or `digest` (any case, surrounding blanks ignored).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(WebDavAuth::Auto),
            "basic" => Ok(WebDavAuth::Basic),
            "digest" => Ok(WebDavAuth::Digest),
            _ => Err(format!(
                "unknown WebDAV authentication mode {s:?}: expected basic, digest or auto"
            )),
        }
    }
}

pub(crate) use syncengine_core::identity::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let config = WebDavConfig {
            username: Some("dav".into()),
            password: Some("s3cr3t-pw".into()),
            ..WebDavConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("dav"),
            "{shown}"
        );
        let config = WebDavConfig {
            url: Some("webdav://me:urlpw@h:1/x".into()),
            ..WebDavConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("urlpw") && shown.contains("webdav://me:<redacted>@h:1/x"),
            "{shown}"
        );
        assert_eq!(redact_url("webdav://h/a@b:c"), "webdav://h/a@b:c");
    }

    #[test]
    fn auth_modes_parse() {
        for (s, want) in [
            ("auto", WebDavAuth::Auto),
            ("Basic", WebDavAuth::Basic),
            (" DIGEST ", WebDavAuth::Digest),
        ] {
            assert_eq!(s.parse::<WebDavAuth>(), Ok(want));
            assert_eq!(want.to_string().parse::<WebDavAuth>(), Ok(want));
        }
        for bad in ["", "ntlm", "basic,digest"] {
            assert!(bad.parse::<WebDavAuth>().is_err(), "{bad}");
        }
        assert_eq!(WebDavConfig::default().auth, WebDavAuth::Auto);
    }
}
