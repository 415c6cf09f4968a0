//! Free loopback ports.
//!
//! Why: a test that needs a port before the process that will listen on it exists (a
//! `redis-server`, a `tokenbroker` binary) cannot bind port 0 and pass the listener on; it asks
//! the OS for a free port and hands the number over.

use std::net::TcpListener;

/// A loopback port that was free a moment ago: the OS picked it, and the listener is closed
/// before return (another process may take it before the caller binds it, as with any such
/// port).
///
/// # Panics
///
/// If no loopback port can be bound: the machine cannot run the tests.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}
