//! Cosmos DB session tokens, as carried in the `x-ms-session-token` header.
//!
//! Why a crate of its own: the merge rules are the correctness core of tokenbroker. They must be
//! the same in the broker, in its Redis script (which is tested against this crate) and in the
//! clients, and they are easiest to trust when they have no I/O around them.
//!
//! A header value is one or more comma-joined segments `<pkRangeId>:<token>`, where a token is
//! either a *vector* token `<version>#<globalLSN>[#<regionId>=<localLSN>]*` or a *simple* token
//! (a bare LSN, from API versions before 2018-06-18). Versions and LSNs are signed 64-bit
//! numbers, negatives included, as in the SDKs (`0:-2#1500`, `0:1#5#1=-5`); region ids are
//! unsigned 32-bit. A header that names one range twice (`0:-1#105,0:-1#107`) parses as the merge
//! of its segments. The parser is strict about everything else; see [`ParseError`] and
//! [`SessionToken::parse`].
//!
//! The merge follows Microsoft's .NET, Java and Python SDKs, comparing numbers as plain signed
//! 64-bit integers:
//!
//! - same version: global LSN and every region LSN take the maximum; the two tokens must name the
//!   same regions, otherwise the merge fails ([`MergeError::RegionSetMismatch`]);
//! - different versions: the higher version wins wholesale (its region set and its global LSN,
//!   even when smaller: "false progress" protection after a failover); shared regions take the
//!   maximum LSN;
//! - simple tokens merge by maximum; a simple and a vector token for one range do not merge.
//!
//! Merge is commutative and idempotent, and its result covers both inputs. It is associative
//! whenever each region's presence spans a contiguous run of versions (a region that leaves the
//! partition's topology does not come back under the same id), which is how topologies evolve.
//! Outside that condition the SDK rule (maximum over shared regions across versions) can carry or
//! drop a returning region's LSN depending on fold order; every order still covers all inputs.
//!
//! Output is canonical: one segment per range, segments ordered by range id (numerically where
//! the ids are numbers), regions ordered by id, numbers in decimal without leading zeros (`-N`
//! for negatives, never `-0`). Equal token sets give equal strings.

#![warn(missing_docs)]

mod parse;
mod partition;
mod range_id;
mod token;

pub use parse::{Field, ParseError, ParseErrorKind};
pub use partition::{MergeError, PartitionToken, VectorToken};
pub use range_id::{PkRangeId, RangeIdError};
pub use token::SessionToken;
