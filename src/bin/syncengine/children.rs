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

/// The children this process had before it started any: those a shell started and then
/// handed over by `exec`ing the tool (`helper & exec syncengine …`), each as its process id
/// and start time. They are not the tool's to end.
#[derive(Default)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct Inherited(Vec<(i32, u64)>);

/// Notes the children this process already has ([`Inherited`]); call it first thing.
#[cfg(target_os = "linux")]
pub(crate) fn inherited() -> Inherited {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    Inherited(
        children_of(me)
            .into_iter()
            .filter_map(|pid| Some((pid, start_time(pid)?)))
            .collect(),
    )
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn inherited() -> Inherited {
    Inherited::default()
}

/// Kills every process still running below this one (children first found, then their
/// descendants), each through a pidfd opened before its parent was checked, so a process id
/// reused meanwhile is never signalled. A child in `inherited` (the same process id and
/// start time) is left running, with what it started.
#[cfg(target_os = "linux")]
pub(crate) fn end_abandoned(inherited: &Inherited) {
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
                // Checked after the pidfd was opened: the start time read is this process's.
                if parent == me && start_time(pid).is_some_and(|t| inherited.0.contains(&(pid, t)))
                {
                    continue;
                }
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
pub(crate) fn end_abandoned(_inherited: &Inherited) {}

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

/// When `pid` started (field 22 of `/proc/<pid>/stat`, in clock ticks since boot): with the
/// process id, names one process for good.
#[cfg(target_os = "linux")]
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields from the third (state) on: the start time is the 22nd field, the 20th here.
    rest.split_whitespace().nth(19)?.parse().ok()
}
