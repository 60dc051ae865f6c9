//! Cross-backend syncs in every mode: local disk ↔ WebDAV (both servers, both directions) and
//! Apache ↔ wsgidav.

mod common;

mod local_to_apache {
    use super::common::{APACHE, fresh, fresh_local};
    syncengine_core::sync_scenario_tests!(fresh_local, || fresh(APACHE));
}

mod apache_to_local {
    use super::common::{APACHE, fresh, fresh_local};
    syncengine_core::sync_scenario_tests!(|| fresh(APACHE), fresh_local);
}

mod local_to_wsgidav {
    use super::common::{WSGIDAV, fresh, fresh_local};
    syncengine_core::sync_scenario_tests!(fresh_local, || fresh(WSGIDAV));
}

mod wsgidav_to_local {
    use super::common::{WSGIDAV, fresh, fresh_local};
    syncengine_core::sync_scenario_tests!(|| fresh(WSGIDAV), fresh_local);
}

mod apache_to_wsgidav {
    use super::common::{APACHE, WSGIDAV, fresh};
    syncengine_core::sync_scenario_tests!(|| fresh(APACHE), || fresh(WSGIDAV));
}
