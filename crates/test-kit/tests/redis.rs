//! The kit's `redis-server`: ready on return, killed, paused, restarted on the same port, and
//! killed when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::time::Duration;

use test_kit::RedisServer;

fn set(server: &RedisServer, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(&mut server.connection())
        .unwrap();
}

fn get(server: &RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.connection())
        .unwrap()
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn a_started_server_answers_at_once_and_a_restart_comes_back_empty_on_the_same_port() {
    let mut server = RedisServer::start();
    let port = server.port();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    set(&server, "k", "v");
    assert_eq!(get(&server, "k").as_deref(), Some("v"));

    server.kill();
    assert!(refused(port), "a killed server's port refuses connections");

    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(get(&server, "k"), None, "nothing survives a restart");
}

#[test]
fn a_paused_server_hangs_until_resumed_and_keeps_its_data() {
    let server = RedisServer::start();
    set(&server, "k", "v");
    server.pause();
    let mut hung = server
        .client()
        .get_connection_with_timeout(Duration::from_secs(1))
        .and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_millis(300)))?;
            redis::cmd("GET").arg("k").query::<Option<String>>(&mut c)
        });
    assert!(hung.is_err(), "a paused server does not answer: {hung:?}");
    server.resume();
    hung = redis::cmd("GET").arg("k").query(&mut server.connection());
    assert_eq!(hung.unwrap().as_deref(), Some("v"));
}

#[test]
fn arguments_are_passed_and_a_password_does_not_stop_the_wait() {
    let server = RedisServer::start_with(&["--requirepass", "secret"]);
    let denied = redis::cmd("GET")
        .arg("k")
        .query::<Option<String>>(&mut server.connection());
    assert!(denied.is_err(), "the password is required: {denied:?}");
}

#[test]
fn a_server_that_exits_at_start_is_an_error_at_once() {
    let error = RedisServer::try_start_with(&["--no-such-option", "x"])
        .err()
        .expect("an unknown option stops redis-server");
    assert!(error.to_string().contains("exited at start"), "{error}");
}

#[test]
fn a_dropped_server_is_killed_even_when_paused() {
    let server = RedisServer::start();
    let port = server.port();
    server.pause();
    drop(server);
    assert!(refused(port));
}

#[test]
fn free_ports_can_be_bound() {
    let port = test_kit::free_port();
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}
