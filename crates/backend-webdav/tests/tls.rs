//! Users can trust their own CA (issue 9, security): a `webdavs://` server whose certificate a
//! private CA signed works once that CA's PEM file is given (`with_ca_file`), and without it
//! fails with a clear certificate error that is not transient (a retry meets the same
//! certificate). Certificate checks stay on: the CA does not make a certificate for another
//! name acceptable.
//!
//! The test makes a CA and a certificate for 127.0.0.1 with `rcgen`, and serves TLS on
//! 127.0.0.1 in front of the Apache test server (tokio-rustls, bytes copied both ways).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use syncengine_backend_webdav::WebDavBuilder;
use syncengine_core::{RelPath, StorageClient, StorageClientExt};
use tokio::net::{TcpListener, TcpStream};

/// A CA (its PEM) and a TLS server config for a certificate it signed for `names`.
fn ca_and_server(names: &[&str]) -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "syncengine test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

/// Serves TLS on a free port of 127.0.0.1, each connection copied to and from `upstream`
/// (`host:port`); returns the port.
async fn tls_front(config: Arc<rustls::ServerConfig>, upstream: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    port
}

/// Starts a TLS front for Apache with a certificate for `names`; returns the CA's PEM file
/// (and its directory's guard) and the root URL of a fresh collection, or `None` when Apache
/// is down.
async fn setup(names: &[&str]) -> Option<(tempfile::TempDir, std::path::PathBuf, String)> {
    let url = common::server_url(common::APACHE)?;
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let (ca_pem, config) = ca_and_server(names);
    let port = tls_front(config, authority).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let root = format!(
        "webdavs://127.0.0.1:{port}/syncengine-tests/tls-{:016x}",
        rand::random::<u64>()
    );
    Some((dir, ca_file, root))
}

#[tokio::test]
async fn a_server_signed_by_your_own_ca_works_with_the_ca_file_only() {
    let Some((_dir, ca_file, root)) = setup(&["127.0.0.1"]).await else {
        return;
    };
    let path = RelPath::new("a/b.txt").unwrap();
    // Without the CA: a certificate error, not transient, that says what to do.
    let without = WebDavBuilder::new()
        .with_url(&root)
        .with_credentials("dav", "davpass")
        .build()
        .unwrap();
    let err = without.list_all(None).await.unwrap_err();
    let shown = err.to_string();
    assert!(!err.is_transient(), "{shown}");
    assert!(
        shown.contains("TLS") && shown.contains("certificate") && shown.contains("CA_FILE"),
        "{shown}"
    );
    // With it: works, Basic included (https needs no opt-in). The file is written straight
    // to Apache: its MOVE refuses a `Destination` with a scheme it does not serve itself
    // (https, here), as a TLS front that rewrites nothing leaves it.
    let plain_root = format!(
        "{}/{}",
        common::APACHE.url().trim_end_matches('/'),
        root.splitn(4, '/').nth(3).unwrap()
    );
    common::dav(&plain_root)
        .put(&path, Bytes::from("over tls"))
        .await
        .unwrap();
    let with = WebDavBuilder::new()
        .with_url(&root)
        .with_credentials("dav", "davpass")
        .with_ca_file(&ca_file)
        .build()
        .unwrap();
    assert_eq!(with.read_to_bytes(&path).await.unwrap(), "over tls");
    assert!(with.stat(&path).await.is_ok());
    let listed = with.list_all(None).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
}

/// The CA file adds trust, it does not turn checks off: a certificate the CA signed for
/// another name is still refused.
#[tokio::test]
async fn the_ca_file_does_not_turn_off_the_name_check() {
    let Some((_dir, ca_file, root)) = setup(&["files.example.invalid"]).await else {
        return;
    };
    let client = WebDavBuilder::new()
        .with_url(&root)
        .with_credentials("dav", "davpass")
        .with_ca_file(&ca_file)
        .build()
        .unwrap();
    let err = client.list_all(None).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}
