//! In-place edits for [`Proxy::edit_answers`](crate::Proxy::edit_answers): each keeps the
//! answer's length, so its `Content-Length` (or chunk sizes) stay right.

/// Replaces every `open…close` span (both ends included) with spaces, e.g. the `<ETag>`
/// elements of an S3 listing: `blank_elements(answer, b"<ETag>", b"</ETag>")`.
pub fn blank_elements(answer: &mut [u8], open: &[u8], close: &[u8]) {
    let mut i = 0;
    while let Some(start) = find(&answer[i..], open).map(|p| p + i) {
        let Some(end) = find(&answer[start..], close).map(|p| p + start + close.len()) else {
            break;
        };
        answer[start..end].fill(b' ');
        i = end;
    }
}

/// Replaces every element of the WebDAV property `name` with spaces, whatever its namespace
/// prefix (`<D:getetag>…</D:getetag>`, `<lp1:getetag>…</lp1:getetag>`), as a server that has
/// no such property would answer.
pub fn blank_dav_property(answer: &mut [u8], name: &str) {
    let needle = format!("{name}>");
    let needle = needle.as_bytes();
    let mut i = 0;
    while let Some(pos) = find(&answer[i..], needle).map(|p| p + i) {
        // The element starts at the `<` before the name.
        let Some(open) = answer[..pos].iter().rposition(|&b| b == b'<') else {
            break;
        };
        if answer.get(open + 1) == Some(&b'/') {
            i = pos + needle.len();
            continue;
        }
        let after_open = pos + needle.len();
        let Some(close) = find(&answer[after_open..], needle).map(|p| p + after_open) else {
            break;
        };
        let end = close + needle.len();
        answer[open..end].fill(b' ');
        i = end;
    }
}

/// Renames every header `name` (in any case) of the answer's head to `replacement`, e.g.
/// `ETag` to `X-Tg`, so the client no longer finds it.
///
/// # Panics
/// When `replacement` is not as long as `name` (the answer's length must not change).
pub fn rename_header(answer: &mut [u8], name: &str, replacement: &str) {
    assert_eq!(
        name.len(),
        replacement.len(),
        "a header is renamed in place: {name:?} and {replacement:?} must be equally long"
    );
    let head_end = find(answer, b"\r\n\r\n").map_or(answer.len(), |p| p + 4);
    let needle = format!("\r\n{name}:");
    let mut at = 0;
    while let Some(p) = answer[at..head_end]
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        .map(|p| p + at)
    {
        answer[p + 2..p + 2 + name.len()].copy_from_slice(replacement.as_bytes());
        at = p + needle.len();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
