//! Cross-backend syncs in every mode: local ↔ S3 (moto), S3 ↔ Azure (Azurite), Azure → local.

mod common;

mod local_to_s3 {
    syncengine_core::sync_scenario_tests!(super::common::local, super::common::moto);
}

mod s3_to_local {
    syncengine_core::sync_scenario_tests!(super::common::moto, super::common::local);
}

mod s3_to_azure {
    syncengine_core::sync_scenario_tests!(super::common::moto, super::common::azurite);
}

mod azure_to_s3 {
    syncengine_core::sync_scenario_tests!(super::common::azurite, super::common::moto);
}

mod azure_to_local {
    syncengine_core::sync_scenario_tests!(super::common::azurite, super::common::local);
}
