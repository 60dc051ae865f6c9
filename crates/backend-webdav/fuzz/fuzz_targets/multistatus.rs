//! Feeds arbitrary bytes to the PROPFIND multistatus parser and arbitrary strings to the href
//! decoder. Neither may panic, and whatever they accept must be clean path segments.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/multistatus.rs"]
#[allow(dead_code)]
mod multistatus;

use multistatus::{decode_href, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(origin) = url::Url::parse("http://127.0.0.1:8082/root/") else {
        return;
    };
    if let Ok(resources) = parse(data, &origin) {
        for r in resources {
            for s in &r.segments {
                assert!(!s.is_empty() && s != "." && s != "..", "bad segment {s:?}");
                assert!(!s.contains('/') && !s.contains('\0'), "bad segment {s:?}");
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((segments, _)) = decode_href(text, &origin) {
            for s in &segments {
                assert!(!s.is_empty() && s != "." && s != "..", "bad segment {s:?}");
                assert!(!s.contains('/') && !s.contains('\0'), "bad segment {s:?}");
            }
        }
    }
});
