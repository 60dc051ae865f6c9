//! The conformance and sync-scenario suites against Azurite (Azure Blob).

mod common;

mod conformance {
    syncengine_core::conformance_tests!(super::common::azurite);
}

mod scenarios {
    syncengine_core::sync_scenario_tests!(super::common::azurite, super::common::azurite);
}
