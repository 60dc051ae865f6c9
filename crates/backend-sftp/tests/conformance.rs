//! The shared storage conformance suite against both loopback SFTP servers, and the
//! sftp ↔ sftp sync-scenario suite on each. Servers: `bash scripts/test-servers.sh start`.

mod support;

/// OpenSSH sshd (127.0.0.1:2222), real paths, `posix-rename@openssh.com` in use.
mod sshd {
    crate::storage_cases!(crate::support::sshd);
}

/// OpenSSH sshd with `posix-rename` turned off: the portable replace (old file moved aside).
mod sshd_portable_rename {
    crate::storage_cases!(crate::support::sshd_portable_rename);
}

/// rclone serve sftp (127.0.0.1:2223), virtual root.
mod rclone {
    crate::storage_cases!(crate::support::rclone);
}

mod sshd_scenarios {
    crate::scenario_cases!(crate::support::sshd, crate::support::sshd);
}

mod rclone_scenarios {
    crate::scenario_cases!(crate::support::rclone, crate::support::rclone);
}

/// The case lists above are copies of the core macros' lists (which cannot skip a test when
/// a server is down); this fails when the core gains or loses a case.
#[test]
fn case_lists_match_the_core() {
    let storage = include_str!("../../syncengine-core/src/conformance/mod.rs");
    let core = support::core_case_names(storage, "$factory;");
    assert_eq!(
        sshd::CASES,
        core.as_slice(),
        "storage case list drifted from the core"
    );

    let scenarios = include_str!("../../syncengine-core/src/conformance/scenarios.rs");
    let rows = support::core_case_names(scenarios, "(@rows $source, $destination;");
    assert_eq!(
        sshd_scenarios::ROWS,
        rows.as_slice(),
        "scenario rows drifted from the core"
    );
    let pairs = support::core_case_names(scenarios, "(@pair $source, $destination;");
    assert_eq!(
        sshd_scenarios::PAIRS,
        pairs.as_slice(),
        "scenario pairs drifted from the core"
    );
}
