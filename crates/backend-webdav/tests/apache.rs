//! The conformance and sync-scenario suites against Apache 2 + mod_dav_fs (127.0.0.1:8082).

mod common;

mod conformance {
    syncengine_core::conformance_tests!(|| super::common::fresh(super::common::APACHE));
}

mod scenarios {
    use super::common::{APACHE, fresh};
    syncengine_core::sync_scenario_tests!(|| fresh(APACHE), || fresh(APACHE));
}
