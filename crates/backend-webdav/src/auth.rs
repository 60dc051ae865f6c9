//! HTTP authentication: Basic, and Digest (RFC 7616 / 2617) answered with the `http-auth` crate.
//!
//! [`Auth`] holds the credentials and the challenge the server last sent. Every request gets
//! its `Authorization` header from [`Auth::authorize`] just before it goes out; a 401 goes to
//! [`Auth::challenged`], which caches the new challenge and says whether sending the request
//! again can succeed. The cached Digest challenge answers every later request (the nonce count
//! advancing), so a client pays one extra round trip when it starts, not one per request.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use http_auth::digest::Algorithm;
use http_auth::{ChallengeParser, DigestClient, PasswordParams};
use reqwest::header::{self, HeaderMap, HeaderValue};

use crate::config::WebDavAuth;

/// User name and password; `Debug` hides the password.
#[derive(Clone)]
pub(crate) struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    pub(crate) fn new(user: String, password: String) -> Self {
        Credentials { user, password }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The challenge of a 401 this client will answer.
pub(crate) enum Offer {
    Digest(Box<DigestClient>),
    Basic,
}

impl fmt::Debug for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offer::Digest(d) => f
                .debug_struct("Digest")
                .field("realm", &d.realm())
                .field("algorithm", &d.algorithm())
                .field("session", &d.session())
                .field("stale", &d.stale())
                .finish(),
            Offer::Basic => f.write_str("Basic"),
        }
    }
}

/// How strongly an algorithm is preferred when a server offers several Digest challenges.
fn rank(algorithm: Algorithm) -> u8 {
    match algorithm {
        Algorithm::Sha512Trunc256 => 3,
        Algorithm::Sha256 => 2,
        Algorithm::Md5 => 1,
        _ => 0,
    }
}

/// At most `max` bytes of a server-supplied string, for error messages and logs.
fn clip(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Picks the challenge to answer from a 401's `WWW-Authenticate` values: the Digest challenge
/// with the strongest algorithm (SHA-512-256, then SHA-256, then MD5) unless `mode` is Basic,
/// else Basic when `mode` is Auto. The error says why nothing can be answered; hostile or
/// malformed values (garbage, a missing nonce, an unknown algorithm, non-ASCII) end up there.
pub(crate) fn pick_challenge<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    mode: WebDavAuth,
) -> Result<Offer, String> {
    let mut best: Option<DigestClient> = None;
    let mut basic = false;
    let mut problems: Vec<String> = Vec::new();
    for value in values {
        // `to_str` only passes visible ASCII, which the challenge parser requires.
        let Ok(text) = value.to_str() else {
            problems.push("a WWW-Authenticate value is not visible ASCII".to_owned());
            continue;
        };
        for challenge in ChallengeParser::new(text) {
            let challenge = match challenge {
                Ok(c) => c,
                Err(e) => {
                    problems.push(clip(format!("unparseable WWW-Authenticate: {e}"), 300));
                    break;
                }
            };
            if challenge.scheme.eq_ignore_ascii_case("Digest") {
                if mode == WebDavAuth::Basic {
                    continue;
                }
                match DigestClient::try_from(&challenge) {
                    Ok(c) => {
                        if best
                            .as_ref()
                            .is_none_or(|b| rank(c.algorithm()) > rank(b.algorithm()))
                        {
                            best = Some(c);
                        }
                    }
                    Err(e) => problems.push(clip(format!("unusable Digest challenge: {e}"), 300)),
                }
            } else if challenge.scheme.eq_ignore_ascii_case("Basic") {
                basic = true;
            }
        }
    }
    if let Some(d) = best {
        return Ok(Offer::Digest(Box::new(d)));
    }
    if basic && mode != WebDavAuth::Digest {
        return Ok(Offer::Basic);
    }
    if problems.is_empty() {
        problems.push(match mode {
            WebDavAuth::Digest if basic => {
                "the server offers only Basic authentication, and the client is set to Digest"
                    .to_owned()
            }
            WebDavAuth::Digest => "the server offers no Digest challenge".to_owned(),
            _ => "the server offers no Basic or Digest challenge".to_owned(),
        });
    }
    Err(problems.join("; "))
}

/// What the client answers challenges with.
#[derive(Default)]
enum Answer {
    /// Nothing learned yet: send no credentials.
    #[default]
    Nothing,
    Basic,
    /// The cached challenge; its nonce count advances with every answer.
    Digest(Box<DigestClient>),
}

#[derive(Default)]
struct State {
    answer: Answer,
    /// The server accepted a request since the last 401: a body that cannot be replayed
    /// (an upload) may go out without first checking the credentials.
    verified: bool,
}

/// What one request carried in its `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Nothing,
    Basic,
    Digest { nonce: String },
}

/// What a 401 means for the request that got it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server asked for something the request did not carry: a first challenge, another
    /// scheme, or a fresh nonce for one it called stale. Sending the request again answers it.
    Answerable,
    /// The server sent a new nonce without calling the old one stale: most likely wrong
    /// credentials, but some servers expire nonces so. Worth one more try where that is free.
    NewNonce,
    /// The credentials were refused, or there is nothing to answer with.
    Refused,
    /// Only Basic can answer the challenge, and Basic may not go over this plain http
    /// connection ([`InsecureBasic`]).
    InsecureBasic,
}

/// Credentials, the configured mode, and the challenge state shared by all requests.
pub(crate) struct Auth {
    credentials: Option<Credentials>,
    mode: WebDavAuth,
    /// Whether Basic credentials may go out: over https, or over plain http when the user
    /// opted in ([`WebDavBuilder::with_allow_insecure_basic`](crate::WebDavBuilder::with_allow_insecure_basic)).
    basic_allowed: bool,
    state: Mutex<State>,
}

/// Basic credentials would go over plain http, and the user has not opted in: nothing was
/// sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InsecureBasic;

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("credentials", &self.credentials)
            .field("mode", &self.mode)
            .field("basic_allowed", &self.basic_allowed)
            .finish()
    }
}

impl Auth {
    /// `basic_allowed`: whether Basic credentials may be sent (https, or the user's opt-in for
    /// plain http).
    pub(crate) fn new(
        credentials: Option<Credentials>,
        mode: WebDavAuth,
        basic_allowed: bool,
    ) -> Self {
        Auth {
            credentials,
            mode,
            basic_allowed,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent: a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn basic(c: &Credentials) -> Option<HeaderValue> {
        HeaderValue::from_str(&http_auth::basic::encode_credentials(&c.user, &c.password)).ok()
    }

    /// Sets the `Authorization` header of a `method` request to `uri` (the request target:
    /// path and query) as the configured mode and the cached challenge say, and returns what
    /// it carries. The value is marked sensitive, so `http`'s `Debug` hides it.
    ///
    /// # Errors
    /// [`InsecureBasic`] when it would carry Basic credentials that may not be sent (plain
    /// http without the opt-in): the request must not go out.
    pub(crate) fn authorize(
        &self,
        method: &str,
        uri: &str,
        headers: &mut HeaderMap,
    ) -> Result<Sent, InsecureBasic> {
        let Some(c) = &self.credentials else {
            return Ok(Sent::Nothing);
        };
        let basic = || {
            if self.basic_allowed {
                Ok((Self::basic(c), Sent::Basic))
            } else {
                Err(InsecureBasic)
            }
        };
        let (value, sent) = if self.mode == WebDavAuth::Basic {
            basic()?
        } else {
            match &mut self.state().answer {
                Answer::Nothing => (None, Sent::Nothing),
                Answer::Basic => basic()?,
                Answer::Digest(d) => {
                    let params = PasswordParams {
                        username: &c.user,
                        password: &c.password,
                        uri,
                        method,
                        body: None,
                    };
                    match d.respond(&params) {
                        // from_bytes: a UTF-8 user name is obs-text in a quoted string.
                        Ok(v) => (
                            HeaderValue::from_bytes(v.as_bytes()).ok(),
                            Sent::Digest {
                                nonce: d.nonce().to_owned(),
                            },
                        ),
                        Err(e) => {
                            tracing::warn!(
                                "cannot answer the WebDAV server's Digest challenge: {e}"
                            );
                            (None, Sent::Nothing)
                        }
                    }
                }
            }
        };
        Ok(match value {
            Some(mut v) => {
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
                sent
            }
            None => Sent::Nothing,
        })
    }

    /// Takes a 401 to a request that carried `sent`: caches the challenge it brings and
    /// judges whether the request is worth sending again.
    pub(crate) fn challenged(&self, headers: &HeaderMap, sent: &Sent) -> Verdict {
        if self.credentials.is_none() || self.mode == WebDavAuth::Basic {
            return Verdict::Refused;
        }
        let offer = match pick_challenge(headers.get_all(header::WWW_AUTHENTICATE), self.mode) {
            Ok(offer) => offer,
            Err(why) => {
                tracing::warn!("cannot answer the WebDAV server's 401: {why}");
                return Verdict::Refused;
            }
        };
        let mut state = self.state();
        state.verified = false;
        match offer {
            Offer::Basic if !self.basic_allowed => Verdict::InsecureBasic,
            Offer::Basic => {
                state.answer = Answer::Basic;
                if *sent == Sent::Basic {
                    Verdict::Refused
                } else {
                    Verdict::Answerable
                }
            }
            Offer::Digest(d) => {
                let verdict = match sent {
                    Sent::Digest { .. } if d.stale() => Verdict::Answerable,
                    Sent::Digest { nonce } if *nonce != d.nonce() => Verdict::NewNonce,
                    Sent::Digest { .. } => Verdict::Refused,
                    _ => Verdict::Answerable,
                };
                // A repeated nonce keeps the cached challenge and its nonce count.
                let same = matches!(&state.answer, Answer::Digest(cur)
                    if cur.nonce() == d.nonce()
                        && cur.realm() == d.realm()
                        && cur.algorithm() == d.algorithm()
                        && cur.session() == d.session());
                if !same {
                    tracing::debug!(
                        realm = d.realm(),
                        algorithm = ?d.algorithm(),
                        stale = d.stale(),
                        "new Digest challenge"
                    );
                    state.answer = Answer::Digest(d);
                }
                verdict
            }
        }
    }

    /// Notes that the server answered a request with something other than 401.
    pub(crate) fn accepted(&self) {
        self.state().verified = true;
    }

    /// Whether an upload (whose body cannot be replayed after a 401) must wait for a cheap
    /// authenticated request first: credentials are set, Basic is not forced (Basic goes out
    /// with every request), and no request has been accepted since the last challenge.
    pub(crate) fn needs_check(&self) -> bool {
        self.credentials.is_some() && self.mode != WebDavAuth::Basic && !self.state().verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn pick(values: &[&str], mode: WebDavAuth) -> Result<Offer, String> {
        pick_challenge(headers(values).get_all(header::WWW_AUTHENTICATE), mode)
    }

    const MD5: &str = r#"Digest realm="dav", nonce="n1", algorithm=MD5, qop="auth""#;

    #[test]
    fn hostile_challenges_are_clean_errors() {
        for (values, want) in [
            (vec![""], "unparseable"),
            (vec!["garbage"], "no Basic or Digest"),
            (vec!["\"unterminated"], "unparseable"),
            (vec!["Digest realm=\"x"], "unparseable"),
            (vec!["Digest ,,,, =,= \"\\"], "unparseable"),
            (vec!["Digest realm=\"dav\", qop=\"auth\""], "nonce"),
            (vec!["Digest nonce=\"n\""], "realm"),
            (
                vec![r#"Digest realm="dav", nonce="n", algorithm=ROT13"#],
                "unknown algorithm",
            ),
            (vec![r#"Digest realm="dav", nonce="n", qop="fancy""#], "qop"),
            (
                vec!["Bearer realm=\"x\", error=\"invalid_token\""],
                "no Basic or Digest",
            ),
            (vec![&"Digest realm=\"".repeat(10_000)], "unparseable"),
        ] {
            let err = pick(&values, WebDavAuth::Auto).unwrap_err();
            assert!(err.contains(want), "{values:?}: {err}");
            assert!(err.len() < 2000, "{err}");
        }
        // Non-ASCII bytes (obs-text) are refused before any parser sees them.
        let mut h = HeaderMap::new();
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_bytes("Digest realm=\"é\", nonce=\"ü\"".as_bytes()).unwrap(),
        );
        let err =
            pick_challenge(h.get_all(header::WWW_AUTHENTICATE), WebDavAuth::Auto).unwrap_err();
        assert!(err.contains("ASCII"), "{err}");
    }

    #[test]
    fn the_strongest_offered_challenge_wins() {
        let sha = r#"Digest realm="dav", nonce="n2", algorithm=SHA-256, qop="auth""#;
        // Separate headers, and one comma-separated list with Basic and a broken challenge.
        for values in [
            vec![MD5, sha, "Basic realm=\"dav\""],
            vec![&*format!(
                "Basic realm=\"dav\", {MD5}, {sha}, Digest nonce=\"x\""
            )],
        ] {
            match pick(&values, WebDavAuth::Auto).unwrap() {
                Offer::Digest(d) => assert_eq!(d.algorithm(), Algorithm::Sha256, "{values:?}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            pick(&["Basic realm=\"dav\""], WebDavAuth::Auto).unwrap(),
            Offer::Basic
        ));
        let err = pick(&["Basic realm=\"dav\""], WebDavAuth::Digest).unwrap_err();
        assert!(err.contains("only Basic"), "{err}");
        // Basic mode never answers Digest.
        assert!(pick(&[MD5], WebDavAuth::Basic).is_err());
        // One broken challenge does not hide a good one.
        assert!(matches!(
            pick(
                &["Digest realm=\"a\", algorithm=ROT13, nonce=\"x\"", MD5],
                WebDavAuth::Auto
            )
            .unwrap(),
            Offer::Digest(_)
        ));
    }

    fn auth(mode: WebDavAuth) -> Auth {
        Auth::new(
            Some(Credentials::new("dav".into(), "s3cr3t-pw".into())),
            mode,
            true,
        )
    }

    fn authorize(a: &Auth, h: &mut HeaderMap) -> Sent {
        a.authorize("PROPFIND", "/dav/a%20b", h).unwrap()
    }

    /// Over plain http without the opt-in, Basic credentials never go out: not in Basic
    /// mode, not as the answer to a Basic-only challenge in Auto mode. Digest is unaffected.
    #[test]
    fn basic_is_never_sent_when_not_allowed() {
        let creds = || Some(Credentials::new("dav".into(), "s3cr3t-pw".into()));
        let a = Auth::new(creds(), WebDavAuth::Basic, false);
        let mut h = HeaderMap::new();
        assert_eq!(a.authorize("GET", "/x", &mut h), Err(InsecureBasic));
        assert!(h.is_empty());
        let a = Auth::new(creds(), WebDavAuth::Auto, false);
        let basic = headers(&["Basic realm=\"dav\""]);
        assert_eq!(a.challenged(&basic, &Sent::Nothing), Verdict::InsecureBasic);
        assert_eq!(a.authorize("GET", "/x", &mut h), Ok(Sent::Nothing));
        assert!(h.is_empty());
        assert_eq!(
            a.challenged(&headers(&[MD5]), &Sent::Nothing),
            Verdict::Answerable
        );
        assert!(matches!(
            a.authorize("GET", "/x", &mut h),
            Ok(Sent::Digest { .. })
        ));
    }

    #[test]
    fn digest_answers_count_nonces_and_hide_the_password() {
        let a = auth(WebDavAuth::Auto);
        let mut h = HeaderMap::new();
        assert_eq!(authorize(&a, &mut h), Sent::Nothing);
        assert!(h.get(header::AUTHORIZATION).is_none());
        assert!(a.needs_check());
        assert_eq!(
            a.challenged(&headers(&[MD5]), &Sent::Nothing),
            Verdict::Answerable
        );
        let sent = authorize(&a, &mut h);
        assert_eq!(sent, Sent::Digest { nonce: "n1".into() });
        let v = h.get(header::AUTHORIZATION).unwrap();
        assert!(v.is_sensitive());
        let s = v.to_str().unwrap();
        assert!(s.starts_with("Digest ") && s.contains("nc=00000001"), "{s}");
        assert!(
            s.contains(r#"uri="/dav/a%20b""#) && s.contains("qop=auth"),
            "{s}"
        );
        assert!(!s.contains("s3cr3t-pw"), "{s}");
        authorize(&a, &mut h);
        let s = h.get(header::AUTHORIZATION).unwrap().to_str().unwrap();
        assert!(s.contains("nc=00000002"), "{s}");
        assert!(!format!("{h:?}{a:?}").contains("s3cr3t-pw"));
        // The same challenge again: the credentials were refused; the nonce count goes on.
        assert_eq!(a.challenged(&headers(&[MD5]), &sent), Verdict::Refused);
        authorize(&a, &mut h);
        let s = h.get(header::AUTHORIZATION).unwrap().to_str().unwrap();
        assert!(s.contains("nc=00000003"), "{s}");
        // A stale nonce is answerable; a new nonce without `stale` is worth one more try.
        let stale = r#"Digest realm="dav", nonce="n9", algorithm=MD5, qop="auth", stale=true"#;
        assert_eq!(a.challenged(&headers(&[stale]), &sent), Verdict::Answerable);
        let sent = authorize(&a, &mut h);
        assert_eq!(sent, Sent::Digest { nonce: "n9".into() });
        let s = h.get(header::AUTHORIZATION).unwrap().to_str().unwrap();
        assert!(
            s.contains("nc=00000001") && s.contains(r#"nonce="n9""#),
            "{s}"
        );
        let fresh = r#"Digest realm="dav", nonce="n10", qop="auth""#;
        assert_eq!(a.challenged(&headers(&[fresh]), &sent), Verdict::NewNonce);
        assert!(a.needs_check());
        a.accepted();
        assert!(!a.needs_check());
    }

    #[test]
    fn modes() {
        // Basic: sent with every request, never re-challenged, no check before uploads.
        let a = auth(WebDavAuth::Basic);
        let mut h = HeaderMap::new();
        assert_eq!(authorize(&a, &mut h), Sent::Basic);
        assert!(
            h.get(header::AUTHORIZATION)
                .unwrap()
                .as_bytes()
                .starts_with(b"Basic ")
        );
        assert_eq!(
            a.challenged(&headers(&[MD5]), &Sent::Basic),
            Verdict::Refused
        );
        assert!(!a.needs_check());
        // Auto against a Basic-only server: answers once, then refused.
        let a = auth(WebDavAuth::Auto);
        let basic = headers(&["Basic realm=\"dav\""]);
        assert_eq!(a.challenged(&basic, &Sent::Nothing), Verdict::Answerable);
        assert_eq!(authorize(&a, &mut HeaderMap::new()), Sent::Basic);
        assert_eq!(a.challenged(&basic, &Sent::Basic), Verdict::Refused);
        // Digest against a Basic-only server: refused at once.
        let a = auth(WebDavAuth::Digest);
        assert_eq!(a.challenged(&basic, &Sent::Nothing), Verdict::Refused);
        // No credentials: nothing to answer with.
        let a = Auth::new(None, WebDavAuth::Auto, false);
        assert_eq!(
            a.challenged(&headers(&[MD5]), &Sent::Nothing),
            Verdict::Refused
        );
        assert!(!a.needs_check());
    }
}
