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

/// `n` distinct loopback ports that were free a moment ago: all are bound at once before any is
/// released, so none is handed out twice (a topology of several servers needs that; calling
/// [`free_port`] `n` times may return a port just released again).
///
/// # Panics
///
/// If the loopback ports cannot be bound: the machine cannot run the tests.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect()
}
