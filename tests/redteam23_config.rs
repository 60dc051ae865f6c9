//! Red team 23 on the config file: a `NAME:path` location must stay inside the remote's
//! folder. `..` was refused, but only written as two dots between `/`: the WebDAV client
//! parses its URL as an `http(s)://` URL (the `url` crate, WHATWG rules), where `%2e%2e`,
//! `.%2e` and `%2E.` are `..` too and a `\` separates segments as `/` does, so
//! `nas:%2e%2e/other` or `nas:..\other` synced (and deleted in) a folder beside the remote's.

// Test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use syncengine::config::Config;

const REMOTES: &str = r#"[remotes.nas]
url = "webdav://nas.local/archive/photos"

[remotes.disk]
url = "/mnt/backup/photos"
"#;

fn config() -> Config {
    Config::parse(REMOTES, Path::new("config.toml")).expect("the remotes parse")
}

/// Spellings of a path that leaves the remote's folder on a server that reads it as a URL.
const ESCAPES: &[&str] = &[
    "%2e%2e/other",
    "%2E%2E/other",
    ".%2e/other",
    "%2e./other",
    "2026/%2e%2e/%2e%2e/other",
    "..\\other",
    "2026\\..\\..\\other",
];

#[test]
fn a_command_line_name_path_cannot_leave_the_remotes_folder_by_any_spelling() {
    let config = config();
    for escape in ESCAPES {
        for remote in ["nas", "disk"] {
            let arg = format!("{remote}:{escape}");
            let got = config.resolve(&arg);
            assert!(got.is_err(), "{arg} was accepted: {got:?}");
        }
    }
    // Plain paths inside the folder still resolve, dots in names included.
    for ok in ["2026", "2026/..x", "a..b/c", "%41lbum", ".hidden/x"] {
        let arg = format!("nas:{ok}");
        assert!(config.resolve(&arg).is_ok(), "{arg} was refused");
    }
}

#[test]
fn a_config_file_name_path_cannot_leave_the_remotes_folder_by_any_spelling() {
    for escape in ESCAPES {
        for key in ["destination", "backup_dir"] {
            let text = format!(
                "{REMOTES}\n[pairs.p]\nsource = \"/home/me/photos\"\ndestination = \"nas:2026\"\n\
                 {key} = {:?}\n",
                format!("nas:{escape}")
            )
            .replacen("destination = \"nas:2026\"\ndestination", "destination", 1);
            let got = Config::parse(&text, Path::new("config.toml"));
            assert!(got.is_err(), "{key} = nas:{escape} was accepted");
        }
    }
}
