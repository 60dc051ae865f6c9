//! The conformance and sync-scenario suites against moto (S3).

mod common;

mod conformance {
    syncengine_core::conformance_tests!(super::common::moto);
}

/// Reading rclone's mtime metadata in listings: `set_mtime` is then promised and checked.
mod conformance_mtime_metadata {
    syncengine_core::conformance_tests!(super::common::moto_mtime);
}

mod scenarios {
    syncengine_core::sync_scenario_tests!(super::common::moto, super::common::moto);
}
