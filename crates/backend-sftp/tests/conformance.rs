//! The shared storage conformance suite against both loopback SFTP servers, and the
//! sftp ↔ sftp sync-scenario suite on each. Servers: `bash scripts/test-servers.sh start`
//! (when one is down, each case reports a skip; under `CI=true` it fails).

mod support;

/// OpenSSH sshd (127.0.0.1:2222), real paths, `posix-rename@openssh.com` in use.
mod sshd {
    syncengine_core::conformance_tests!(crate::support::sshd);
}

/// OpenSSH sshd with `posix-rename` turned off: the portable replace (old file moved aside).
mod sshd_portable_rename {
    syncengine_core::conformance_tests!(crate::support::sshd_portable_rename);
}

/// rclone serve sftp (127.0.0.1:2223), virtual root.
mod rclone {
    syncengine_core::conformance_tests!(crate::support::rclone);
}

mod sshd_scenarios {
    syncengine_core::sync_scenario_tests!(crate::support::sshd, crate::support::sshd);
}

mod rclone_scenarios {
    syncengine_core::sync_scenario_tests!(crate::support::rclone, crate::support::rclone);
}
