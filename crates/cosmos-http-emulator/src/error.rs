//! Why the emulator could not start or a test control could not be applied.
//!
//! Why typed: tests and the binary report the cause (a port taken, a region that does not exist,
//! a split the emulator refused) instead of a panic deep in the emulator.

use std::net::SocketAddr;

/// An error of the HTTP emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options cannot describe an account.
    #[error("invalid options: {0}")]
    Options(String),
    /// A region's listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the operating system refused it.
        source: std::io::Error,
    },
    /// The in-memory emulator refused its configuration.
    #[error("emulator configuration: {0}")]
    Config(String),
    /// No region has this name.
    #[error("unknown region {name:?} (regions: {known})")]
    UnknownRegion {
        /// The name asked for.
        name: String,
        /// The account's regions, comma-separated.
        known: String,
    },
    /// The emulator could not split the partition.
    #[error("split of {database}/{container} range {range}: {message}")]
    Split {
        /// The database.
        database: String,
        /// The container.
        container: String,
        /// The partition key range (physical partition) id.
        range: u32,
        /// The emulator's reason.
        message: String,
    },
}
