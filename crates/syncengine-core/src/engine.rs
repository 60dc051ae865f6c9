//! [`SyncEngine`]: runs a [`SyncPair`](crate::SyncPair) end to end.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::error::SyncError;
use crate::pair::SyncPair;
use crate::progress::ProgressEvent;
use crate::stats::SyncStats;

/// Runs syncs. Holds where pair state lives, the progress channel and the cancellation token.
#[derive(Clone, Debug)]
pub struct SyncEngine {
    state_dir: PathBuf,
    progress: Option<UnboundedSender<ProgressEvent>>,
    cancel: CancellationToken,
}

impl SyncEngine {
    /// Creates an engine keeping each pair's state database under `state_dir`.
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        SyncEngine {
            state_dir: state_dir.as_ref().to_path_buf(),
            progress: None,
            cancel: CancellationToken::new(),
        }
    }

    /// Sends progress events to `tx`.
    pub fn with_progress(mut self, tx: UnboundedSender<ProgressEvent>) -> Self {
        self.progress = Some(tx);
        self
    }

    /// Stops runs cleanly when `token` is cancelled.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The directory holding pair state.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Syncs `pair` once.
    ///
    /// # Errors
    /// See [`SyncError`].
    pub async fn sync_pair(&self, pair: &SyncPair) -> Result<SyncStats, SyncError> {
        let _ = (pair, &self.progress);
        Err(SyncError::Config("engine not wired yet".into()))
    }
}

/// The default state directory: `$SYNCENGINE_STATE_DIR`, else `$XDG_STATE_HOME/syncengine`,
/// else `~/.local/state/syncengine`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SYNCENGINE_STATE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("syncengine"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/syncengine"))
}
