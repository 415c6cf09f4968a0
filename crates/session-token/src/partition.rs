//! The token of one physical partition (one segment's right-hand side), and its merge rules.
//!
//! Why here and not in the header type: the SDKs merge and compare per partition key range; the
//! header type only routes each range to these rules.

use std::collections::BTreeMap;
use std::fmt;

/// A vector session token: `<version>#<globalLSN>[#<regionId>=<localLSN>]*`.
///
/// `version` counts topology changes of the partition and may be `-1` (no version yet); a
/// region LSN of `-1` means no progress in that region yet. Versions and LSNs are any signed
/// 64-bit value (the SDKs accept every one, e.g. `-2` from Microsoft's token-conversion sample)
/// and compare as plain signed integers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VectorToken {
    /// Topology version of the partition; `-1` when it has none yet. The higher version wins a
    /// merge wholesale.
    pub version: i64,
    /// Global LSN: the partition's progress as of this token, across regions.
    pub global_lsn: i64,
    /// Local LSN per region id. Ordered, so equality ignores the order on the wire.
    pub regions: BTreeMap<u32, i64>,
}

/// The token of one partition key range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PartitionToken {
    /// A bare LSN, sent by API versions before 2018-06-18.
    Simple(i64),
    /// A vector token, sent by API versions from 2018-06-18 on.
    Vector(VectorToken),
}

/// Why two tokens of one range cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// Same version, different regions. The .NET, Java and Python SDKs refuse this merge
    /// ("session tokens have unexpected regions"); so does tokenbroker, rather than invent a
    /// token that no replica ever issued.
    #[error(
        "range {range}: tokens at version {version} name different regions ({left} vs {right})"
    )]
    RegionSetMismatch {
        /// The partition key range id both tokens belong to.
        range: String,
        /// The version both tokens carry.
        version: i64,
        /// Region ids of the left-hand token, as `[1,2]`.
        left: String,
        /// Region ids of the right-hand token, as `[1,3]`.
        right: String,
    },
    /// A simple (pre-2018 API) token and a vector token for the same range.
    #[error("range {range}: a simple token and a vector token cannot be merged")]
    KindMismatch {
        /// The partition key range id both tokens belong to.
        range: String,
    },
}

impl VectorToken {
    fn same_regions(&self, other: &Self) -> bool {
        self.regions.len() == other.regions.len()
            && self.regions.keys().all(|r| other.regions.contains_key(r))
    }

    fn region_list(&self) -> String {
        let ids: Vec<String> = self.regions.keys().map(u32::to_string).collect();
        format!("[{}]", ids.join(","))
    }

    /// Merges two tokens of the same range (see the crate docs for the rules).
    pub fn merge(&self, other: &Self, range: &str) -> Result<Self, MergeError> {
        if self.version == other.version {
            if !self.same_regions(other) {
                return Err(MergeError::RegionSetMismatch {
                    range: range.to_owned(),
                    version: self.version,
                    left: self.region_list(),
                    right: other.region_list(),
                });
            }
            let regions = self
                .regions
                .iter()
                .map(|(id, lsn)| (*id, (*lsn).max(other.regions[id])))
                .collect();
            return Ok(Self {
                version: self.version,
                global_lsn: self.global_lsn.max(other.global_lsn),
                regions,
            });
        }
        let (higher, lower) = if self.version > other.version {
            (self, other)
        } else {
            (other, self)
        };
        let regions = higher
            .regions
            .iter()
            .map(|(id, lsn)| {
                let lsn = lower.regions.get(id).map_or(*lsn, |low| (*lsn).max(*low));
                (*id, lsn)
            })
            .collect();
        Ok(Self {
            version: higher.version,
            // The higher version's global LSN, even if smaller: false-progress protection.
            global_lsn: higher.global_lsn,
            regions,
        })
    }

    /// True when `newer` is at least as recent as `self` (the SDKs' `IsValid`): a read sent
    /// with `newer` sees everything a read sent with `self` would.
    pub fn is_covered_by(&self, newer: &Self) -> bool {
        if newer.version != self.version {
            return newer.version > self.version;
        }
        newer.global_lsn >= self.global_lsn
            && self.same_regions(newer)
            && self
                .regions
                .iter()
                .all(|(id, lsn)| newer.regions[id] >= *lsn)
    }
}

impl PartitionToken {
    /// Merges two tokens of the range `range` (named in errors only).
    pub fn merge(&self, other: &Self, range: &str) -> Result<Self, MergeError> {
        match (self, other) {
            (Self::Simple(a), Self::Simple(b)) => Ok(Self::Simple(*a.max(b))),
            (Self::Vector(a), Self::Vector(b)) => a.merge(b, range).map(Self::Vector),
            _ => Err(MergeError::KindMismatch {
                range: range.to_owned(),
            }),
        }
    }

    /// True when `newer` is at least as recent as `self`. Tokens of different kinds, or with
    /// different regions at one version, never cover each other.
    pub fn is_covered_by(&self, newer: &Self) -> bool {
        match (self, newer) {
            (Self::Simple(a), Self::Simple(b)) => b >= a,
            (Self::Vector(a), Self::Vector(b)) => a.is_covered_by(b),
            _ => false,
        }
    }
}

impl fmt::Display for PartitionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Simple(lsn) => write!(f, "{lsn}"),
            Self::Vector(v) => {
                write!(f, "{}#{}", v.version, v.global_lsn)?;
                for (id, lsn) in &v.regions {
                    write!(f, "#{id}={lsn}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: i64, global_lsn: i64, regions: &[(u32, i64)]) -> VectorToken {
        VectorToken {
            version,
            global_lsn,
            regions: regions.iter().copied().collect(),
        }
    }

    #[test]
    fn same_version_takes_max_of_every_field() {
        let a = v(1, 100, &[(1, 20), (2, 5)]);
        let b = v(1, 90, &[(1, 10), (2, 9)]);
        assert_eq!(a.merge(&b, "0").unwrap(), v(1, 100, &[(1, 20), (2, 9)]));
    }

    #[test]
    fn higher_version_wins_wholesale_even_with_a_smaller_global_lsn() {
        let old = v(1, 100, &[(1, 20), (2, 5)]);
        let new = v(2, 50, &[(1, 10), (3, 7)]);
        let merged = old.merge(&new, "0").unwrap();
        // Region 2 exists only in the lower version: dropped. Region 1 is shared: max.
        assert_eq!(merged, v(2, 50, &[(1, 20), (3, 7)]));
        assert_eq!(new.merge(&old, "0").unwrap(), merged);
    }

    #[test]
    fn same_version_with_different_regions_is_refused() {
        let a = v(1, 100, &[(1, 20)]);
        let b = v(1, 100, &[(2, 20)]);
        let err = a.merge(&b, "7").unwrap_err();
        assert_eq!(
            err.to_string(),
            "range 7: tokens at version 1 name different regions ([1] vs [2])"
        );
    }

    #[test]
    fn minus_one_version_and_lsns_are_ordinary_numbers() {
        let a = v(-1, 1507, &[]);
        let b = v(0, 2, &[(2, -1)]);
        assert_eq!(a.merge(&b, "0").unwrap(), b);
        assert!(a.is_covered_by(&b));
        assert!(!b.is_covered_by(&a));
    }

    #[test]
    fn any_negative_is_an_ordinary_signed_number() {
        let min = i64::MIN;
        let low = v(-2, 1500, &[(1, -5), (2, min)]);
        let high = v(-1, -3, &[(1, -7), (2, -9)]);
        // Higher version wins wholesale (global -3 < 1500); shared regions take the signed max.
        let merged = low.merge(&high, "0").unwrap();
        assert_eq!(merged, v(-1, -3, &[(1, -5), (2, -9)]));
        assert_eq!(high.merge(&low, "0").unwrap(), merged);
        assert!(low.is_covered_by(&merged) && high.is_covered_by(&merged));
        let same = v(min, min, &[(1, -10)]);
        assert_eq!(
            same.merge(&v(min, -9, &[(1, -11)]), "0").unwrap(),
            v(min, -9, &[(1, -10)])
        );
        assert!(!v(min, -9, &[]).is_covered_by(&v(min, -10, &[])));
        assert_eq!(
            PartitionToken::Simple(-70).merge(&PartitionToken::Simple(-7), "0"),
            Ok(PartitionToken::Simple(-7))
        );
    }

    #[test]
    fn covers_checks_version_then_global_then_shared_regions() {
        let base = v(1, 100, &[(1, 20)]);
        assert!(base.is_covered_by(&v(1, 100, &[(1, 20)])));
        assert!(!base.is_covered_by(&v(1, 99, &[(1, 20)])));
        assert!(!base.is_covered_by(&v(1, 100, &[(1, 19)])));
        assert!(!base.is_covered_by(&v(0, 500, &[(1, 99)])));
        assert!(base.is_covered_by(&v(2, 1, &[(1, 0)])));
        assert!(!base.is_covered_by(&v(1, 200, &[(2, 30)])));
    }

    #[test]
    fn simple_and_vector_tokens_do_not_mix() {
        let s = PartitionToken::Simple(5);
        let vt = PartitionToken::Vector(v(1, 5, &[]));
        assert_eq!(
            s.merge(&vt, "3"),
            Err(MergeError::KindMismatch { range: "3".into() })
        );
        assert!(!s.is_covered_by(&vt));
        assert_eq!(
            s.merge(&PartitionToken::Simple(9), "3"),
            Ok(PartitionToken::Simple(9))
        );
    }
}
