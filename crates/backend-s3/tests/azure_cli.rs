//! Azure: `AZURE_USE_AZURE_CLI=true` gets the token from `az account get-access-token`, run
//! by object_store. A stand-in `az` on `PATH` records how it was called and prints a token;
//! the token goes to Azurite, which (over HTTP, without `--oauth`) does not take bearer
//! tokens, so what is proven here is the wiring up to the request, not a login to Azure.
//! The test runs itself again as a child process with `PATH` set (the environment of this
//! process is left alone).
#![cfg(feature = "azure")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use syncengine_backend_s3::S3Builder;
use syncengine_core::StorageClient;

#[tokio::test]
async fn azure_cli_token_is_asked_of_az_on_path() {
    if !common::up(common::AZURITE) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let calls = tmp.path().join("az-calls");
    std::fs::write(
        tmp.path().join("az"),
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\necho '{{\"accessToken\": \"fake-az-token\", \
             \"expiresOn\": \"2099-01-01 00:00:00.000000\", \"tokenType\": \"Bearer\"}}'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        tmp.path().join("az"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        tmp.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "inner_azure_cli_run", "--nocapture"])
        .env("PATH", path)
        .env("SYNCENGINE_AZ_CLI_INNER", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 passed"),
        "the inner run did not run: {text}"
    );
    let called = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        called.contains("account get-access-token")
            && called.contains("--scope https://storage.azure.com/.default"),
        "az was not asked for a storage token; calls: {called:?}; run: {text}"
    );
    assert!(
        !text.contains("fake-az-token"),
        "the token was printed: {text}"
    );
}

/// The child run of [`azure_cli_token_is_asked_of_az_on_path`] (does nothing on its own).
#[tokio::test]
async fn inner_azure_cli_run() {
    if std::env::var_os("SYNCENGINE_AZ_CLI_INNER").is_none() {
        return;
    }
    let endpoint = format!(
        "{}/devstoreaccount1",
        common::endpoint(common::AZURITE).trim_end_matches('/')
    );
    let vars = [
        ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
        ("AZURE_STORAGE_ENDPOINT", endpoint.as_str()),
        ("AZURE_ALLOW_HTTP", "true"),
        ("AZURE_USE_AZURE_CLI", "true"),
    ];
    let client = S3Builder::from_env_with("az://test/azure-cli", |n| {
        vars.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
    .with_retries(0, std::time::Duration::from_secs(5))
    .build()
    .unwrap();
    let outcome = client.check_access().await;
    // Azurite over HTTP refuses bearer tokens: the server's answer comes back as an error.
    match &outcome {
        Err(e) => eprintln!("Azurite's answer to the CLI token: {e} / {e:?}"),
        Ok(()) => eprintln!("Azurite took the CLI token"),
    }
}
