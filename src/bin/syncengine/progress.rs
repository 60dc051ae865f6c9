//! Progress bars on stderr, driven by the engine's [`ProgressEvent`]s.

use std::collections::HashSet;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use syncengine::ProgressEvent;
use tokio::sync::mpsc::UnboundedReceiver;

/// Builds a style, falling back to indicatif's default if the template is rejected (it is a
/// constant, so that would be a bug here, not a reason to fail the run).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Draws bars until the engine drops its sender, then clears them.
///
/// Returns the warnings it printed above the bars, so that the final report does not print
/// them a second time.
pub async fn render(mut rx: UnboundedReceiver<ProgressEvent>) -> HashSet<String> {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let actions = multi.add(ProgressBar::new_spinner());
    actions.set_style(style("{spinner} {msg}"));
    actions.set_message("listing both sides…");
    actions.enable_steady_tick(Duration::from_millis(120));
    let mut bytes: Option<ProgressBar> = None;
    let mut failed = 0u64;
    let mut printed = HashSet::new();

    while let Some(event) = rx.recv().await {
        match event {
            ProgressEvent::Planned {
                actions: n,
                bytes: total,
            } => {
                actions.set_style(style(
                    "{spinner} {pos:>6}/{len:6} actions {prefix} [{elapsed_precise}] {wide_msg}",
                ));
                actions.set_length(n);
                actions.set_position(0);
                actions.set_message("");
                if total > 0 {
                    let bar = multi.add(ProgressBar::new(total));
                    bar.set_style(style(
                        "  {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} [{bar:30}] eta {eta}",
                    ));
                    bytes = Some(bar);
                }
            }
            ProgressEvent::Started { path, .. } => actions.set_message(path.to_string()),
            ProgressEvent::Bytes { delta, .. } => {
                if let Some(bar) = &bytes {
                    bar.inc(delta);
                }
            }
            ProgressEvent::Done { .. } => actions.inc(1),
            ProgressEvent::Failed { .. } => {
                // The messages are listed once the run ends; here only the count shows.
                failed += 1;
                actions.inc(1);
                actions.set_prefix(format!("{failed} failed"));
            }
            // Printed above the bars. If the terminal went away there is nowhere to print,
            // and the final report repeats what was not printed.
            ProgressEvent::Warning(w) if multi.println(crate::warning_line(&w)).is_ok() => {
                printed.insert(w);
            }
            _ => {}
        }
    }
    if let Some(bar) = bytes {
        bar.finish_and_clear();
    }
    actions.finish_and_clear();
    // Clearing can only fail if stderr is gone, in which case there is nothing to clear.
    let _ = multi.clear();
    printed
}
