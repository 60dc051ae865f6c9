//! Ends the helper processes a run gave up on before the tool exits.
//!
//! The AWS SDK (`aws-config`) runs a profile's `credential_process` through
//! `tokio::process::Command::output()` without `kill_on_drop`, and offers no hook to set it
//! or to choose the process group: when the run stops waiting for it (the connect timeout,
//! `--contimeout`), the helper — often a password or MFA prompt nobody sees — would keep
//! running after the tool has exited. The tool itself starts no other process, so any child
//! still running when it exits is one given up on: it is killed with everything it started
//! that is still below it. Ending our own process group instead is not safe (a shell puts a
//! whole pipeline, `syncengine … | tee log`, in one group), nor is making the tool a group
//! leader (the terminal's Ctrl-C would no longer reach it).
//!
//! Linux only (`/proc` and pidfds); elsewhere such a helper is left running.

/// Kills every process still running below this one (children first found, then their
/// descendants), each through a pidfd opened before its parent was checked, so a process id
/// reused meanwhile is never signalled.
#[cfg(target_os = "linux")]
pub(crate) fn end_abandoned() {
    use rustix::process::{Pid, PidfdFlags, Signal, getpid, pidfd_open, pidfd_send_signal};
    let me = getpid().as_raw_nonzero().get();
    let mut found = Vec::new();
    let mut parents = vec![me];
    while let Some(parent) = parents.pop() {
        for pid in children_of(parent) {
            let Some(id) = Pid::from_raw(pid) else {
                continue;
            };
            let Ok(fd) = pidfd_open(id, PidfdFlags::empty()) else {
                continue;
            };
            // The pidfd holds this very process; it is ours if its parent still is.
            if parent_of(pid) == Some(parent) {
                found.push((pid, fd));
                parents.push(pid);
            }
        }
    }
    for (pid, fd) in &found {
        match pidfd_send_signal(fd, Signal::KILL) {
            Ok(()) => tracing::debug!(pid, "ended a helper process the run gave up on"),
            Err(e) => tracing::debug!(pid, "could not end a helper process: {e}"),
        }
    }
}

/// Elsewhere nothing is done (see the module docs).
#[cfg(not(target_os = "linux"))]
pub(crate) fn end_abandoned() {}

/// The processes whose parent is `parent` (from `/proc/<pid>/stat`).
#[cfg(target_os = "linux")]
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

/// The parent of `pid`: the fourth field of `/proc/<pid>/stat`, after the command name
/// (which may hold spaces and parentheses, hence the last `)`).
#[cfg(target_os = "linux")]
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    // A zombie has ended already (its parent reaps it).
    if state == "Z" {
        return None;
    }
    fields.next()?.parse().ok()
}
