//! [`SyncMode`] and the policies that go with it.

use std::fmt;
use std::str::FromStr;

/// The five ways a pair can be kept in sync.
///
/// ```
/// use syncengine_core::SyncMode;
///
/// let mode: SyncMode = "tw".parse().unwrap();
/// assert_eq!(mode, SyncMode::TwoWay);
/// assert!(mode.is_bidirectional());
/// assert_eq!("cloudbackup".parse::<SyncMode>().unwrap(), SyncMode::DestinationBackup);
/// let sb = SyncMode::SourceBackup;
/// assert!(sb.allows_upload() && sb.allows_download());
/// assert!(!sb.allows_source_delete() && !sb.allows_destination_delete());
/// ```
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SyncMode {
    /// Both sides are kept in sync: changes, deletions and renames flow both ways.
    #[default]
    TwoWay,
    /// The destination mirrors the source; destination-only changes are undone.
    SourceToDestination,
    /// The source is backed up to the destination; nothing is ever deleted on either side,
    /// destination additions and edits are still downloaded, source edits win conflicts.
    SourceBackup,
    /// The source mirrors the destination; source-only changes are undone.
    DestinationToSource,
    /// The destination is backed up to the source; nothing is ever uploaded or deleted.
    DestinationBackup,
}

impl SyncMode {
    /// Every mode, in the seed's order.
    pub const ALL: [SyncMode; 5] = [
        SyncMode::TwoWay,
        SyncMode::SourceToDestination,
        SyncMode::SourceBackup,
        SyncMode::DestinationToSource,
        SyncMode::DestinationBackup,
    ];

    /// The canonical kebab-case name, as accepted by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::TwoWay => "two-way",
            SyncMode::SourceToDestination => "source-to-destination",
            SyncMode::SourceBackup => "source-backup",
            SyncMode::DestinationToSource => "destination-to-source",
            SyncMode::DestinationBackup => "destination-backup",
        }
    }

    /// Files are copied from source to destination.
    pub fn allows_upload(self) -> bool {
        matches!(
            self,
            SyncMode::TwoWay | SyncMode::SourceToDestination | SyncMode::SourceBackup
        )
    }

    /// Files are copied from destination to source.
    pub fn allows_download(self) -> bool {
        !matches!(self, SyncMode::SourceToDestination)
    }

    /// Files are copied to `side`: [`allows_upload`](SyncMode::allows_upload) for the
    /// destination, [`allows_download`](SyncMode::allows_download) for the source.
    pub fn copies_to(self, side: Side) -> bool {
        match side {
            Side::Destination => self.allows_upload(),
            Side::Source => self.allows_download(),
        }
    }

    /// Files may be deleted on the source.
    pub fn allows_source_delete(self) -> bool {
        matches!(self, SyncMode::TwoWay | SyncMode::DestinationToSource)
    }

    /// Files may be deleted on the destination.
    pub fn allows_destination_delete(self) -> bool {
        matches!(self, SyncMode::TwoWay | SyncMode::SourceToDestination)
    }

    /// Changes on either side propagate to the other, with conflicts resolved by strategy.
    pub fn is_bidirectional(self) -> bool {
        matches!(self, SyncMode::TwoWay)
    }

    /// The source must be listed. True for every mode: even download-only modes compare
    /// against the source to know what to download or restore.
    pub fn requires_source_scan(self) -> bool {
        true
    }

    /// The destination must be listed. True for every mode, for the same reason.
    pub fn requires_destination_scan(self) -> bool {
        true
    }

    /// True for the mirror modes, where one side wins every difference and there are no
    /// conflicts.
    pub fn is_mirror(self) -> bool {
        matches!(
            self,
            SyncMode::SourceToDestination | SyncMode::DestinationToSource
        )
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown mode, strategy or preference name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}; valid values: {valid}")]
pub struct ParseNameError {
    what: &'static str,
    given: String,
    valid: &'static str,
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

impl FromStr for SyncMode {
    type Err = ParseNameError;

    /// Parses a mode name or alias, case-insensitively, ignoring `-` and `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match normalize(s).as_str() {
            "twoway" | "tw" => SyncMode::TwoWay,
            "sourcetodestination" | "std" | "localtocloud" | "ltc" => SyncMode::SourceToDestination,
            "sourcebackup" | "sb" | "localbackup" | "lb" => SyncMode::SourceBackup,
            "destinationtosource" | "dts" | "cloudtolocal" | "ctl" => SyncMode::DestinationToSource,
            "destinationbackup" | "db" | "cloudbackup" | "cb" => SyncMode::DestinationBackup,
            _ => {
                return Err(ParseNameError {
                    what: "sync mode",
                    given: s.to_owned(),
                    valid: "two-way (twoWay, tw), source-to-destination (sourceToDestination, \
                            std, localtocloud, ltc), source-backup (sourceBackup, sb, \
                            localbackup, lb), destination-to-source (destinationToSource, dts, \
                            cloudtolocal, ctl), destination-backup (destinationBackup, db, \
                            cloudbackup, cb)",
                });
            }
        })
    }
}

/// How a first `TWO_WAY` sync (no base state yet) treats files present on one side only.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum InitialSyncPreference {
    /// Copy one-sided files both ways and delete nothing (the safe default).
    #[default]
    Merge,
    /// The source is authoritative: destination-only files are deleted.
    SourceWins,
    /// The destination is authoritative: source-only files are deleted.
    DestinationWins,
}

impl FromStr for InitialSyncPreference {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match normalize(s).as_str() {
            "merge" => InitialSyncPreference::Merge,
            "sourcewins" | "source" => InitialSyncPreference::SourceWins,
            "destinationwins" | "destination" => InitialSyncPreference::DestinationWins,
            _ => {
                return Err(ParseNameError {
                    what: "initial sync preference",
                    given: s.to_owned(),
                    valid: "merge, source-wins, destination-wins",
                });
            }
        })
    }
}

impl fmt::Display for InitialSyncPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InitialSyncPreference::Merge => "merge",
            InitialSyncPreference::SourceWins => "source-wins",
            InitialSyncPreference::DestinationWins => "destination-wins",
        })
    }
}

/// Which version wins when both sides changed a file differently.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ConflictStrategy {
    /// The newer modification time wins; a tie goes to the source.
    #[default]
    NewestWins,
    /// The source version wins.
    SourceWins,
    /// The destination version wins.
    DestinationWins,
    /// No winner: both versions are kept under conflict names and synced to both sides.
    KeepBoth,
}

impl FromStr for ConflictStrategy {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match normalize(s).as_str() {
            "newestwins" | "newest" => ConflictStrategy::NewestWins,
            "sourcewins" | "source" => ConflictStrategy::SourceWins,
            "destinationwins" | "destination" => ConflictStrategy::DestinationWins,
            "keepboth" | "both" => ConflictStrategy::KeepBoth,
            _ => {
                return Err(ParseNameError {
                    what: "conflict strategy",
                    given: s.to_owned(),
                    valid: "newest-wins, source-wins, destination-wins, keep-both",
                });
            }
        })
    }
}

impl fmt::Display for ConflictStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictStrategy::NewestWins => "newest-wins",
            ConflictStrategy::SourceWins => "source-wins",
            ConflictStrategy::DestinationWins => "destination-wins",
            ConflictStrategy::KeepBoth => "keep-both",
        })
    }
}

/// What happens to the losing version of a conflict.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ConflictLoser {
    /// Renamed on its own side to `<stem>.conflict-<UTC time>-<side>[.<ext>]` (default).
    #[default]
    Keep,
    /// Overwritten by the winner (still subject to trash / backup-dir recovery).
    Delete,
}

impl FromStr for ConflictLoser {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match normalize(s).as_str() {
            "keep" => ConflictLoser::Keep,
            "delete" => ConflictLoser::Delete,
            _ => {
                return Err(ParseNameError {
                    what: "conflict loser policy",
                    given: s.to_owned(),
                    valid: "keep, delete",
                });
            }
        })
    }
}

/// One of the two sides of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The source side.
    Source,
    /// The destination side.
    Destination,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Destination,
            Side::Destination => Side::Source,
        }
    }

    /// The side's position in `[source, destination]` arrays: 0 or 1.
    pub fn index(self) -> usize {
        match self {
            Side::Source => 0,
            Side::Destination => 1,
        }
    }

    /// `source` or `destination`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_parses() {
        let table = [
            (
                SyncMode::TwoWay,
                &["two-way", "twoWay", "tw", "TWO_WAY"][..],
            ),
            (
                SyncMode::SourceToDestination,
                &[
                    "source-to-destination",
                    "sourceToDestination",
                    "std",
                    "localtocloud",
                    "ltc",
                    "SOURCE_TO_DESTINATION",
                ],
            ),
            (
                SyncMode::SourceBackup,
                &[
                    "source-backup",
                    "sourceBackup",
                    "sb",
                    "localbackup",
                    "lb",
                    "SOURCE_BACKUP",
                ],
            ),
            (
                SyncMode::DestinationToSource,
                &[
                    "destination-to-source",
                    "destinationToSource",
                    "dts",
                    "cloudtolocal",
                    "ctl",
                    "DESTINATION_TO_SOURCE",
                ],
            ),
            (
                SyncMode::DestinationBackup,
                &[
                    "destination-backup",
                    "destinationBackup",
                    "db",
                    "cloudbackup",
                    "cb",
                    "DESTINATION_BACKUP",
                ],
            ),
        ];
        for (mode, aliases) in table {
            for a in aliases {
                assert_eq!(a.parse::<SyncMode>().unwrap(), mode, "{a}");
            }
            assert_eq!(mode.as_str().parse::<SyncMode>().unwrap(), mode);
        }
        let err = "sideways".parse::<SyncMode>().unwrap_err().to_string();
        assert!(
            err.contains("sideways") && err.contains("two-way") && err.contains("cb"),
            "{err}"
        );
    }

    #[test]
    fn properties_match_semantics_table() {
        // (upload, download, source delete, destination delete, bidirectional)
        let expect = [
            (SyncMode::TwoWay, [true, true, true, true, true]),
            (
                SyncMode::SourceToDestination,
                [true, false, false, true, false],
            ),
            (SyncMode::SourceBackup, [true, true, false, false, false]),
            (
                SyncMode::DestinationToSource,
                [false, true, true, false, false],
            ),
            (
                SyncMode::DestinationBackup,
                [false, true, false, false, false],
            ),
        ];
        for (m, e) in expect {
            let got = [
                m.allows_upload(),
                m.allows_download(),
                m.allows_source_delete(),
                m.allows_destination_delete(),
                m.is_bidirectional(),
            ];
            assert_eq!(got, e, "{m}");
            assert!(m.requires_source_scan() && m.requires_destination_scan());
        }
    }

    #[test]
    fn policies_parse() {
        assert_eq!(
            "keep-both".parse::<ConflictStrategy>().unwrap(),
            ConflictStrategy::KeepBoth
        );
        assert_eq!(
            "NEWEST_WINS".parse::<ConflictStrategy>().unwrap(),
            ConflictStrategy::NewestWins
        );
        assert_eq!(
            "destination-wins".parse::<InitialSyncPreference>().unwrap(),
            InitialSyncPreference::DestinationWins
        );
        assert_eq!(
            "delete".parse::<ConflictLoser>().unwrap(),
            ConflictLoser::Delete
        );
        assert!("x".parse::<ConflictLoser>().is_err());
    }
}
