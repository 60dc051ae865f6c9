//! Red team 23: secrets written in the config file (which works, with a warning) must not
//! come out of the parsed config's `Debug` print or the parser's errors and warnings: a
//! program logging its config (`tracing::debug!(?config)`) or a mistake in the file would
//! otherwise print them. `EnvOverlay`, which carries the same values to the backends, already
//! shows only names.

// Test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use syncengine::config::Config;

const SECRETS: &[&str] = &[
    "S3-SECRET-KEY-123",
    "S3-SESSION-TOKEN-456",
    "DAV-PASSWORD-789",
    "URL-PASSWORD-000",
    "PAIR-URL-PASSWORD-111",
    "BACKUP-URL-PASSWORD-222",
];

const TEXT: &str = r#"[remotes.home]
url = "s3://bucket/x"
access_key_id = "AKIAEXAMPLE"
secret_access_key = "S3-SECRET-KEY-123"
session_token = "S3-SESSION-TOKEN-456"

[remotes.nas]
url = "webdav://me:URL-PASSWORD-000@nas.local/x"
password = "DAV-PASSWORD-789"

[pairs.p]
source = "/home/me/x"
destination = "webdav://me:PAIR-URL-PASSWORD-111@nas.local/y"
backup_dir = "webdav://me:BACKUP-URL-PASSWORD-222@nas.local/backup"
"#;

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the secret {s}: {text}");
    }
}

#[test]
fn the_parsed_config_does_not_show_its_secrets() {
    let config = Config::parse(TEXT, Path::new("config.toml")).unwrap();
    assert_no_secret("Debug of the config", &format!("{config:?}"));
    assert_no_secret("Debug of the config ({:#?})", &format!("{config:#?}"));
    for w in config.warnings() {
        assert_no_secret("a warning", w);
    }
    // They still work: the settings reach the backend.
    let r = config.resolve("home:y").unwrap();
    assert_eq!(
        r.settings.var("AWS_SECRET_ACCESS_KEY").as_deref(),
        Some("S3-SECRET-KEY-123")
    );
}

#[test]
fn a_mistake_next_to_a_password_does_not_show_it() {
    for bad in [
        // No host after the credentials.
        "destination = \"webdav://me:URL-PASSWORD-000@:8080/x\"",
        "destination = \"sftp://me:URL-PASSWORD-000@/x\"",
        // A scheme no backend knows.
        "destination = \"webdab://me:URL-PASSWORD-000@nas/x\"",
    ] {
        let text = format!("[pairs.p]\nsource = \"/home/me/x\"\n{bad}\n");
        let err = Config::parse(&text, Path::new("config.toml")).unwrap_err();
        assert_no_secret("a config error", &err.to_string());
        assert_no_secret("a config error's Debug", &format!("{err:?}"));
    }
}
