//! Progress bars on stderr, driven by the engine's [`ProgressEvent`]s (fed by
//! [`crate::output`], which owns the event loop).

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use syncengine::ProgressEvent;

/// Builds a style, falling back to indicatif's default if the template is rejected (it is a
/// constant, so that would be a bug here, not a reason to fail the run).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The live display: an action spinner (then counter) and, once the plan is known, a bytes
/// bar. indicatif draws nothing when stderr is not a terminal, so the bars never put escape
/// codes into a file or a pipe.
pub struct Bars {
    multi: MultiProgress,
    actions: ProgressBar,
    bytes: Option<ProgressBar>,
    failed: u64,
}

impl Bars {
    /// Starts the display with a "listing" spinner.
    pub fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let actions = multi.add(ProgressBar::new_spinner());
        actions.set_style(style("{spinner} {msg}"));
        actions.set_message("listing both sides…");
        actions.enable_steady_tick(Duration::from_millis(120));
        Bars {
            multi,
            actions,
            bytes: None,
            failed: 0,
        }
    }

    /// Updates the bars for `event`.
    pub fn on_event(&mut self, event: &ProgressEvent) {
        match event {
            ProgressEvent::Planned {
                actions: n,
                bytes: total,
            } => {
                self.actions.set_style(style(
                    "{spinner} {pos:>6}/{len:6} actions {prefix} [{elapsed_precise}] {wide_msg}",
                ));
                self.actions.set_length(*n);
                self.actions.set_position(0);
                self.actions.set_message("");
                if *total > 0 {
                    let bar = self.multi.add(ProgressBar::new(*total));
                    bar.set_style(style(
                        "  {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} [{bar:30}] eta {eta}",
                    ));
                    self.bytes = Some(bar);
                }
            }
            ProgressEvent::Started { path, .. } => self.actions.set_message(path.to_string()),
            ProgressEvent::Bytes { delta, .. } => {
                if let Some(bar) = &self.bytes {
                    bar.inc(*delta);
                }
            }
            ProgressEvent::Done { .. } => self.actions.inc(1),
            ProgressEvent::Failed { .. } => {
                // The messages are listed once the run ends; here only the count shows.
                self.failed += 1;
                self.actions.inc(1);
                self.actions.set_prefix(format!("{} failed", self.failed));
            }
            _ => {}
        }
    }

    /// Prints `line` above the bars; false when stderr is gone.
    pub fn println(&self, line: &str) -> bool {
        self.multi.println(line).is_ok()
    }

    /// Clears the bars.
    pub fn finish(self) {
        if let Some(bar) = self.bytes {
            bar.finish_and_clear();
        }
        self.actions.finish_and_clear();
        // Clearing can only fail if stderr is gone, in which case there is nothing to clear.
        let _ = self.multi.clear();
    }
}
