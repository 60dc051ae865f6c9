//! The conformance and sync-scenario suites against wsgidav + cheroot (127.0.0.1:8083).

mod common;

mod conformance {
    syncengine_core::conformance_tests!(|| super::common::fresh(super::common::WSGIDAV));
}

mod scenarios {
    use super::common::{WSGIDAV, fresh};
    syncengine_core::sync_scenario_tests!(|| fresh(WSGIDAV), || fresh(WSGIDAV));
}
