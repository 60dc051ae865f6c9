//! [`EntryFilter`]: the filters that depend on what a listing says about a file — its size
//! ([`SyncOptions::max_size`](crate::SyncOptions::max_size)) and age
//! ([`SyncOptions::min_age`](crate::SyncOptions::min_age)) — rather than on its name.
//!
//! Name patterns (excludes, includes) are the same on both sides and drop paths from both
//! listings. A size or an age can differ between the two sides' copies of a path, so these
//! are decided by the [`Reconciler`](crate::reconcile::Reconciler) per path, once the two
//! listings are merged: when the file on *either* side fails, the path is left alone on
//! both sides for the run and its base is kept. A file that grew past the limit, or was just
//! edited, on one side is then never read as deleted there, and the other side's copy is
//! neither deleted nor overwritten.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use syncengine_core::entry_filter::EntryFilter;
//! use syncengine_core::{Entry, RelPath};
//!
//! let now = SystemTime::now();
//! let filter = EntryFilter::new(Some(1024), Some(Duration::from_secs(600)), now);
//! let file = |size, age_secs| {
//!     Entry::new(RelPath::new("a.txt").unwrap(), size)
//!         .with_mtime(now - Duration::from_secs(age_secs))
//! };
//! assert!(filter.admits(&file(1024, 3600)));
//! assert!(!filter.admits(&file(1025, 3600))); // too large
//! assert!(!filter.admits(&file(10, 60))); // too young
//! // A path passes only when every side's file passes.
//! assert!(!filter.admits_path([Some(&file(10, 3600)), Some(&file(2048, 3600))]));
//! assert!(filter.admits_path([None, Some(&file(10, 3600))]));
//! ```

use std::time::{Duration, SystemTime};

use crate::entry::Entry;
use crate::pair::SyncOptions;

/// Which listed files a run may touch, by size and age. The default admits every file.
#[derive(Clone, Debug)]
pub struct EntryFilter {
    max_size: Option<u64>,
    min_age: Option<Duration>,
    /// The time ages are measured from: the start of the run, the same for every file.
    now: SystemTime,
}

impl Default for EntryFilter {
    fn default() -> Self {
        EntryFilter::new(None, None, SystemTime::now())
    }
}

impl EntryFilter {
    /// A filter admitting files of at most `max_size` bytes whose modification time is at
    /// least `min_age` before `now` (`None`: no limit).
    pub fn new(max_size: Option<u64>, min_age: Option<Duration>, now: SystemTime) -> Self {
        EntryFilter {
            max_size,
            min_age,
            now,
        }
    }

    /// The filter of a run with `options`, its ages measured from now.
    pub fn from_options(options: &SyncOptions) -> Self {
        EntryFilter::new(options.max_size, options.min_age, SystemTime::now())
    }

    /// True when the filter admits every file (no limit set).
    pub fn admits_all(&self) -> bool {
        self.max_size.is_none() && self.min_age.is_none()
    }

    /// True when `entry` is within the size limit and old enough. A file without a listed
    /// modification time, or with one in the future, is not known to be old enough: with a
    /// minimum age it is not admitted.
    pub fn admits(&self, entry: &Entry) -> bool {
        if self.max_size.is_some_and(|max| entry.size > max) {
            return false;
        }
        match self.min_age {
            None => true,
            Some(min) => entry
                .mtime
                .and_then(|t| self.now.duration_since(t).ok())
                .is_some_and(|age| age >= min),
        }
    }

    /// True when the files listed at one path (`[source, destination]`, `None` where a side
    /// has none) are all admitted: a path is synced only when neither side's file fails.
    pub fn admits_path(&self, entries: [Option<&Entry>; 2]) -> bool {
        self.admits_all() || entries.into_iter().flatten().all(|e| self.admits(e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use futures::StreamExt;
    use futures::stream;

    use super::*;
    use crate::client::{EntryStream, StorageClient, StorageClientExt};
    use crate::decide::Policy;
    use crate::memory::MemoryClient;
    use crate::mode::{Side, SyncMode};
    use crate::path::RelPath;
    use crate::plan::{Action, Plan};
    use crate::reconcile::{BaseStream, Reconciler};
    use crate::state::{BaseRecord, SideRecord};

    const HOUR: Duration = Duration::from_secs(3600);

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap_or_else(|e| panic!("bad test path {s:?}: {e}"))
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// A file of `size` bytes modified `age` before [`now`].
    fn file(path: &str, size: u64, age: Duration) -> Entry {
        Entry::new(p(path), size)
            .with_mtime(now() - age)
            .with_etag(format!("{path}-{size}-{}", age.as_secs()))
    }

    fn base(e: &Entry) -> BaseRecord {
        BaseRecord::new(
            e.path.clone(),
            SideRecord::from_entry(e),
            SideRecord::from_entry(e),
        )
    }

    fn listing(entries: Vec<Entry>) -> EntryStream {
        stream::iter(entries.into_iter().map(Ok)).boxed()
    }

    fn base_stream(records: Vec<BaseRecord>) -> BaseStream {
        stream::iter(records.into_iter().map(Ok)).boxed()
    }

    async fn plan_of(
        mode: SyncMode,
        filter: EntryFilter,
        source: Vec<Entry>,
        destination: Vec<Entry>,
        records: Vec<BaseRecord>,
    ) -> Plan {
        let client = |files: &[Entry]| {
            let c = MemoryClient::new();
            let files = files.to_vec();
            async move {
                for f in files {
                    let body = Bytes::from(vec![b'x'; f.size as usize]);
                    c.put(&f.path, body).await.unwrap_or_else(|e| panic!("{e}"));
                }
                Arc::new(c) as Arc<dyn StorageClient>
            }
        };
        let (s, d) = (client(&source).await, client(&destination).await);
        Reconciler::new(Policy::new(mode), false, s, d)
            .with_filter(filter)
            .plan(listing(source), listing(destination), base_stream(records))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn limits(max_size: Option<u64>, min_age: Option<Duration>) -> EntryFilter {
        EntryFilter::new(max_size, min_age, now())
    }

    fn paths(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
    }

    #[test]
    fn limits_are_inclusive_and_unknown_or_future_times_are_too_young() {
        let f = limits(Some(100), Some(HOUR));
        assert!(f.admits(&file("a", 100, HOUR)));
        assert!(!f.admits(&file("a", 101, 2 * HOUR)));
        assert!(!f.admits(&file("a", 1, HOUR - Duration::from_secs(1))));
        assert!(!f.admits(&Entry::new(p("a"), 1)), "no mtime");
        let future = Entry::new(p("a"), 1).with_mtime(now() + HOUR);
        assert!(!f.admits(&future));
        // Without limits everything passes, even a file without an mtime.
        assert!(limits(None, None).admits_path([Some(&Entry::new(p("a"), u64::MAX)), None]));
        // Only a size limit: times do not matter.
        assert!(limits(Some(5), None).admits(&Entry::new(p("a"), 5)));
    }

    /// A file that grew past the limit on the source: not read as an edit to copy, and above
    /// all the destination's copy is neither overwritten nor deleted. The base stays.
    #[tokio::test]
    async fn a_file_that_grew_past_the_limit_is_left_alone_on_both_sides() {
        let old = file("big.bin", 10, 2 * HOUR);
        for mode in SyncMode::ALL {
            let plan = plan_of(
                mode,
                limits(Some(100), None),
                vec![file("big.bin", 500, HOUR), file("ok.txt", 5, HOUR)],
                vec![old.clone()],
                vec![base(&old)],
            )
            .await;
            assert_eq!(plan.skipped, 1, "{mode}");
            assert!(plan.state_updates.is_empty(), "{mode}: base changed");
            let big: Vec<_> = paths(&plan)
                .into_iter()
                .filter(|a| a.contains("big.bin"))
                .collect();
            assert!(big.is_empty(), "{mode}: {big:?}");
        }
    }

    /// A file just edited on one side while deleted on the other: the edit is too young to
    /// sync, and the deletion is not carried out on it either.
    #[tokio::test]
    async fn a_file_just_edited_is_never_deleted_nor_read_as_a_delete() {
        let old = file("notes.txt", 10, 5 * HOUR);
        for mode in SyncMode::ALL {
            for edited_on in [Side::Source, Side::Destination] {
                let edited = file("notes.txt", 12, Duration::from_secs(30));
                // The edited side holds the new version, the other side deleted the file.
                let (s, d) = match edited_on {
                    Side::Source => (vec![edited], vec![]),
                    Side::Destination => (vec![], vec![edited]),
                };
                let plan = plan_of(mode, limits(None, Some(HOUR)), s, d, vec![base(&old)]).await;
                assert!(plan.actions.is_empty(), "{mode} {edited_on}: {plan:?}");
                assert!(plan.state_updates.is_empty(), "{mode} {edited_on}: base");
                assert_eq!(plan.skipped, 1);
            }
        }
    }

    /// Base has the file, one side deleted it, the other side's copy is over the limit:
    /// nothing happens, the base stays. Within the limit, the delete goes through.
    #[tokio::test]
    async fn a_delete_is_not_carried_out_on_a_copy_over_the_limit() {
        let kept = file("v.mkv", 1000, 3 * HOUR);
        let planned = |max| {
            plan_of(
                SyncMode::TwoWay,
                limits(Some(max), Some(HOUR)),
                vec![],
                vec![kept.clone()],
                vec![base(&kept)],
            )
        };
        let plan = planned(999).await;
        assert!(
            plan.actions.is_empty() && plan.state_updates.is_empty(),
            "{plan:?}"
        );
        let plan = planned(1000).await;
        assert!(
            matches!(
                plan.actions.to_vec().unwrap().as_slice(),
                [Action::Delete {
                    side: Side::Destination,
                    ..
                }]
            ),
            "{plan:?}"
        );
    }

    /// A filtered file is never half of a rename: the source renamed `a` to `b`, but `b` is
    /// too young (just touched), so `a`'s delete and `b`'s copy are not paired into a rename
    /// of the destination's copy. `a` is deleted (its content is also at `b`) and `b` waits.
    #[tokio::test]
    async fn a_filtered_file_is_not_paired_as_a_rename() {
        let a = file("a", 10, 3 * HOUR);
        let mut b = file("b", 10, Duration::from_secs(5));
        b.etag = a.etag.clone();
        b.hash = a.hash.clone();
        let plan = plan_of(
            SyncMode::TwoWay,
            limits(None, Some(HOUR)),
            vec![b.clone()],
            vec![a.clone()],
            vec![base(&a)],
        )
        .await;
        let actions = paths(&plan);
        assert!(!actions.iter().any(|a| a.contains("Rename")), "{actions:?}");
        assert!(!actions.iter().any(|a| a.contains("\"b\"")), "{actions:?}");
        // Old enough, the same pair is a rename.
        let plan = plan_of(
            SyncMode::TwoWay,
            limits(None, Some(Duration::from_secs(1))),
            vec![b],
            vec![a.clone()],
            vec![base(&a)],
        )
        .await;
        assert!(
            paths(&plan).iter().any(|a| a.contains("Rename")),
            "{:?}",
            paths(&plan)
        );
        // And a rename *target* that is over the size limit on the other side.
        let big_twin = file("a", 10, 3 * HOUR);
        let plan = plan_of(
            SyncMode::TwoWay,
            limits(Some(5), None),
            vec![file("b", 10, 2 * HOUR)],
            vec![big_twin.clone()],
            vec![base(&big_twin)],
        )
        .await;
        assert!(plan.actions.is_empty(), "{:?}", paths(&plan));
        assert_eq!(plan.skipped, 2);
    }
}
