//! Adversarial cases found by the red-team session (issue 8): names a server's `MOVE` mangles.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use syncengine_core::{RelPath, StorageClientExt};

use common::{APACHE, WSGIDAV};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// wsgidav decodes `%09`/`%0A` in a `Destination` header and drops the control character, so a
/// MOVE of the temp upload onto `tab<TAB>x` lands on `tabx`. A write must land on its own name,
/// and never replace another file.
#[tokio::test]
async fn control_characters_in_names_never_land_on_another_name() {
    for server in [APACHE, WSGIDAV] {
        let Some(client) = common::client(server) else {
            continue;
        };
        for (odd, plain) in [("tab\tx", "tabx"), ("new\nline", "newline")] {
            client
                .put(&p(plain), Bytes::from_static(b"unrelated user file"))
                .await
                .unwrap();
            // A first write (create) and an overwrite of the odd name.
            for content in [&b"first"[..], &b"second"[..]] {
                let result = client.put(&p(odd), Bytes::copy_from_slice(content)).await;
                let plain_now = client.read_to_bytes(&p(plain)).await.unwrap();
                assert_eq!(
                    &plain_now[..],
                    b"unrelated user file",
                    "{server:?}: writing {odd:?} replaced {plain:?} ({result:?})"
                );
                if result.is_ok() {
                    let odd_now = client.read_to_bytes(&p(odd)).await.unwrap();
                    assert_eq!(&odd_now[..], content, "{server:?}: {odd:?}");
                }
            }
            let names: Vec<String> = client
                .list_all(None)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.path.as_str().to_owned())
                .collect();
            assert!(
                names
                    .iter()
                    .all(|n| n == plain || n == odd || n.contains('\n') || n.contains('\t')),
                "{server:?}: unexpected names {names:?}"
            );
            client.delete(&p(plain)).await.unwrap();
        }
    }
}
