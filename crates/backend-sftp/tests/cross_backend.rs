//! Cross-backend syncs, every mode and scenario: local disk ↔ SFTP, in both directions, on
//! both loopback servers. Servers: `bash scripts/test-servers.sh start`.

mod support;

mod local_to_sshd {
    syncengine_core::sync_scenario_tests!(crate::support::local, crate::support::sshd);
}

mod sshd_to_local {
    syncengine_core::sync_scenario_tests!(crate::support::sshd, crate::support::local);
}

mod local_to_rclone {
    syncengine_core::sync_scenario_tests!(crate::support::local, crate::support::rclone);
}

mod rclone_to_local {
    syncengine_core::sync_scenario_tests!(crate::support::rclone, crate::support::local);
}
