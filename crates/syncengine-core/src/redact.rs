//! Keeping secrets out of messages: one helper that every backend and the CLI pass text
//! through before it reaches a user, a log or a `Debug` print.
//!
//! [`redact`] replaces, anywhere in a text:
//! - the password of every URL's `user:password@` (the user stays: it helps a reader);
//! - the value of every URL query parameter whose name marks a credential (`sig`,
//!   `signature`, `X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`, `token`,
//!   `access_token`, `password`, `secret`, `client_secret`, `sas`, `key`, …), as in presigned
//!   and SAS URLs;
//! - the value after an `Authorization:` header name (as some HTTP errors print requests).
//!
//! ```
//! use syncengine_core::redact::redact;
//!
//! assert_eq!(
//!     redact("cannot connect to sftp://me:hunter2@nas:22/photos: refused"),
//!     "cannot connect to sftp://me:<redacted>@nas:22/photos: refused"
//! );
//! assert_eq!(
//!     redact("GET https://acct.blob.core.windows.net/c/x?sv=2024&sig=AbC%2B&se=1 failed"),
//!     "GET https://acct.blob.core.windows.net/c/x?sv=2024&sig=<redacted>&se=1 failed"
//! );
//! assert_eq!(redact("nothing secret here"), "nothing secret here");
//! ```

use std::borrow::Cow;

/// The text shown in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Query parameter names (lower case) whose values are credentials.
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "sas",
    "key",
    "api_key",
    "apikey",
    "access_key",
    "secret_key",
    "sessiontoken",
];

/// Returns `text` with every secret it can recognise replaced by [`REDACTED`] (see the
/// [module docs](self)); borrowed when there was nothing to replace.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    if text.contains("://") {
        out = Cow::Owned(redact_userinfo(&out));
    }
    if out.contains('?') && out.contains('=') {
        let replaced = redact_query_secrets(&out);
        if replaced != *out {
            out = Cow::Owned(replaced);
        }
    }
    if out.to_ascii_lowercase().contains("authorization:") {
        out = Cow::Owned(redact_authorization(&out));
    }
    match out {
        Cow::Owned(s) if s == text => Cow::Borrowed(text),
        other => other,
    }
}

/// Characters that end a URL inside running text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']' | '}' | ',')
}

/// Characters that end the text searched for a URL's `user:password@`: white space and the
/// delimiters that cannot be in an unquoted password typed on a command line.
fn ends_token(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '<' | '>' | '`')
}

/// Replaces the password of each `scheme://user:password@host` in `text`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        // The authority ends at the first `/`, `?`, `#` or character that ends the URL. A
        // password holding an unencoded `/` (a URL a user mistyped, echoed back by the error
        // that says so) would end it early: when `user:` and an `@` further on in the same URL
        // say so, the authority runs to that last `@`'s host instead.
        // The URL's token runs to white space or a quote-like delimiter only: a password may
        // hold `,`, `)`, `]`, `}` or `'` (and a shell-quoted URL turns `'` into `'\''`), which
        // end a URL in running text but must not end the search for the `@` after `user:`.
        let token_end = after.find(ends_token).unwrap_or(after.len());
        let token = &after[..token_end];
        let mut end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || ends_url(c))
            .unwrap_or(after.len());
        if let Some(at) = token.rfind('@')
            && at > end
            && token[..end].contains(':')
        {
            end = token[at..]
                .find(['/', '?', '#'])
                .map_or(token_end, |i| at + i);
        }
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].find(':') {
                Some(colon) => {
                    out.push_str(&authority[..colon]);
                    out.push(':');
                    out.push_str(REDACTED);
                    out.push_str(&authority[at..]);
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces the values of credential query parameters (see [`SECRET_PARAMS`]).
fn redact_query_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_query = false;
    let mut chars = text.char_indices().peekable();
    let mut last = 0;
    while let Some((i, c)) = chars.next() {
        if ends_url(c) {
            in_query = false;
            continue;
        }
        if c == '?' {
            in_query = true;
            continue;
        }
        if !(in_query && c == '=') {
            continue;
        }
        // The parameter name runs back to the last `?`, `&` or `;`.
        let name_start = text[..i].rfind(['?', '&', ';']).map_or(0, |p| p + 1);
        let name = text[name_start..i].to_ascii_lowercase();
        let value_start = i + 1;
        let mut value_end = text.len();
        while let Some(&(j, d)) = chars.peek() {
            if matches!(d, '&' | '#' | ';') || ends_url(d) {
                value_end = j;
                break;
            }
            chars.next();
        }
        if SECRET_PARAMS.contains(&name.as_str()) && value_end > value_start {
            out.push_str(&text[last..value_start]);
            out.push_str(REDACTED);
            last = value_end;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Replaces what follows each `Authorization:` (any case) up to the end of its line.
fn redact_authorization(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(i) = lower[from..].find("authorization:") {
        let value_start = from + i + "authorization:".len();
        let value_end = text[value_start..]
            .find(['\n', '\r', '"'])
            .map_or(text.len(), |j| value_start + j);
        out.push_str(&text[last..value_start]);
        out.push(' ');
        out.push_str(REDACTED);
        last = value_end;
        from = value_end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_every_url_of_a_text_are_replaced() {
        let text = "copy sftp://a:pw1@h1/x to webdavs://b:p%40ss@h2:8443/y failed; \
                    s3://bucket/p and http://user@h3/ are fine";
        let got = redact(text);
        assert_eq!(
            got,
            "copy sftp://a:<redacted>@h1/x to webdavs://b:<redacted>@h2:8443/y failed; \
             s3://bucket/p and http://user@h3/ are fine"
        );
    }

    #[test]
    fn a_password_holding_at_signs_and_slashes_is_replaced_whole() {
        assert_eq!(
            redact("webdav://u:p@ss@host/x"),
            "webdav://u:<redacted>@host/x"
        );
        // Not a valid URL (the `/` must be percent-encoded), but what a user may type, and
        // what the error that refuses it echoes.
        assert_eq!(
            redact("invalid location \"webdav://dav:pa/ss@127.0.0.1:8082/x\": bad"),
            "invalid location \"webdav://dav:<redacted>@127.0.0.1:8082/x\": bad"
        );
        assert_eq!(
            redact("sftp://root:hunt/er2@h:22/p and --backup-dir webdav://d:my/secret@h/b"),
            "sftp://root:<redacted>@h:22/p and --backup-dir webdav://d:<redacted>@h/b"
        );
        // An `@` in a path without `user:` before it is left alone.
        assert_eq!(
            redact("s3://bucket/me@example.com/x"),
            "s3://bucket/me@example.com/x"
        );
    }

    #[test]
    fn a_password_holding_url_ending_punctuation_is_replaced_whole() {
        // Failed before: the search for the `@` stopped at the `,` (or `)`, `'`), and the
        // whole password was printed.
        for (given, want) in [
            (
                "webdav://dav:top,secret@h:8083/x",
                "webdav://dav:<redacted>@h:8083/x",
            ),
            ("sftp://me:a)b]c}d@nas/p", "sftp://me:<redacted>@nas/p"),
            ("webdav://me:pa'ss@h/x", "webdav://me:<redacted>@h/x"),
            // As the empty-side stop's hint shell-quotes it.
            (
                "run: syncengine sync 'webdav://me:pa'\\''ss@h/x' b",
                "run: syncengine sync 'webdav://me:<redacted>@h/x' b",
            ),
        ] {
            assert_eq!(redact(given), want, "{given}");
        }
        // Running text around URLs without passwords is left alone.
        assert_eq!(
            redact("(see http://h:80/x), mail me@example.com"),
            "(see http://h:80/x), mail me@example.com"
        );
    }

    #[test]
    fn credential_query_parameters_are_replaced_and_others_kept() {
        let text = "https://h/o?X-Amz-Credential=AKIA%2F1&X-Amz-Date=2026&X-Amz-Signature=abc#f";
        assert_eq!(
            redact(text),
            "https://h/o?X-Amz-Credential=<redacted>&X-Amz-Date=2026&X-Amz-Signature=<redacted>#f"
        );
        assert_eq!(redact("a=b and c?d=e"), "a=b and c?d=e");
    }

    #[test]
    fn authorization_headers_are_replaced() {
        assert_eq!(
            redact("request had Authorization: Basic dXNlcjpwYXNz\nnext line"),
            "request had Authorization: <redacted>\nnext line"
        );
    }

    #[test]
    fn text_without_secrets_is_borrowed() {
        assert!(matches!(redact("plain s3://b/p?x=1"), Cow::Borrowed(_)));
    }
}
