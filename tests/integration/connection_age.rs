//! `server.max_connection_age`: the server ends an aged client connection with an HTTP/2
//! GOAWAY, and a tonic channel moves to a new connection with no failed call.
//!
//! Why a proxy: the client library hides its connections. A loopback TCP proxy between the
//! channel and the broker sees every connection and reads the HTTP/2 frames going through it,
//! so the test observes the GOAWAY itself and counts the calls carried by each connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokenbroker_proto::v1::PutTokenRequest;
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Endpoint;

use crate::support::{TestBroker, settings};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_GOAWAY: u8 = 0x7;

/// What the proxy saw, per connection (numbered from 0 in accept order).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Opened(usize),
    /// A HEADERS frame from the client opening a new stream: one call.
    Call(usize),
    /// A GOAWAY frame from the server, with its error code (0 is NO_ERROR: graceful).
    GoAway {
        conn: usize,
        error_code: u32,
    },
    /// The server side of the connection reached end of stream.
    ServerClosed(usize),
}

/// Copies `from` to `to`, reporting the HTTP/2 frames that matter. `client` tells the direction
/// (the client's bytes start with the connection preface).
async fn pump(
    conn: usize,
    client: bool,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    seen: mpsc::UnboundedSender<Seen>,
) {
    let mut pending = Vec::new();
    let mut skip_preface = client;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Report before forwarding, so that an event is always sent before its effect.
        pending.extend_from_slice(&chunk[..n]);
        if skip_preface && pending.len() >= PREFACE.len() {
            assert_eq!(&pending[..PREFACE.len()], PREFACE);
            pending.drain(..PREFACE.len());
            skip_preface = false;
        }
        // Frame header: 24-bit length, type, flags, 31-bit stream id.
        while !skip_preface && pending.len() >= 9 {
            let len = u32::from_be_bytes([0, pending[0], pending[1], pending[2]]) as usize;
            if pending.len() < 9 + len {
                break;
            }
            let kind = pending[3];
            if client && kind == FRAME_HEADERS {
                let _ = seen.send(Seen::Call(conn));
            }
            if !client && kind == FRAME_GOAWAY {
                let payload = &pending[9..9 + len];
                let error_code =
                    u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                let _ = seen.send(Seen::GoAway { conn, error_code });
            }
            pending.drain(..9 + len);
        }
        if to.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    if !client {
        let _ = seen.send(Seen::ServerClosed(conn));
    }
}

/// A TCP proxy on loopback to `target`; returns its address and the stream of what it saw.
async fn observing_proxy(target: SocketAddr) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut conn = 0;
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(target).await.unwrap();
            client.set_nodelay(true).unwrap();
            server.set_nodelay(true).unwrap();
            let _ = tx.send(Seen::Opened(conn));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pump(conn, true, client_read, server_write, tx.clone()));
            tokio::spawn(pump(conn, false, server_read, client_write, tx.clone()));
            conn += 1;
        }
    });
    (addr, rx)
}

/// The events other than calls, and the number of calls per connection (for failure messages).
fn summary(log: &[Seen]) -> String {
    let mut calls: BTreeMap<usize, u64> = BTreeMap::new();
    let mut other = Vec::new();
    for e in log {
        match e {
            Seen::Call(c) => *calls.entry(*c).or_default() += 1,
            e => other.push(e),
        }
    }
    format!("events {other:?}, calls per connection {calls:?}")
}

#[tokio::test]
async fn aged_connections_get_a_goaway_and_calls_move_to_a_new_connection() {
    let mut s = settings();
    s.server.max_connection_age = Duration::from_secs(1);
    s.validate().unwrap();
    let broker = TestBroker::start(s).await;
    let (proxy, mut seen) = observing_proxy(broker.addr).await;

    let channel = Endpoint::from_shared(format!("http://{proxy}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut client = TokenBrokerClient::new(channel);

    // Calls back to back until the first connection has been sent away and closed and a later
    // connection has carried calls. Every call must succeed. The bound only stops a hang.
    let mut log: Vec<Seen> = Vec::new();
    let mut calls = 0u64;
    let mut raced = 0usize;
    let (mut first_closed, mut later_calls) = (false, 0);
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let request = PutTokenRequest {
                scope: "acct/db/c".into(),
                key: "k".into(),
                session_token: format!("0:1#{}", calls + 1),
            };
            let reply = match client.put_token(request.clone()).await {
                // A call handed to the connection after its GOAWAY arrived is cancelled before
                // it is sent (hyper: "connection closed"); tonic does not retry it, a client
                // must (tokenbroker-client does). The retry goes to the new connection.
                Err(status) if status.code() == Code::Cancelled => {
                    raced += 1;
                    client.put_token(request).await
                }
                reply => reply,
            };
            let reply = reply.unwrap_or_else(|e| panic!("call {calls} failed: {e:?}"));
            calls += 1;
            assert_eq!(reply.into_inner().session_token, format!("0:1#{calls}"));
            while let Ok(event) = seen.try_recv() {
                first_closed |= event == Seen::ServerClosed(0);
                later_calls += usize::from(matches!(event, Seen::Call(c) if c > 0));
                log.push(event);
            }
            if first_closed && later_calls >= 10 {
                break;
            }
        }
    })
    .await;
    assert!(
        finished.is_ok(),
        "no reconnection seen after {calls} calls: {}",
        summary(&log)
    );
    while let Ok(event) = seen.try_recv() {
        log.push(event);
    }

    let goaways: Vec<&Seen> = log
        .iter()
        .filter(|e| matches!(e, Seen::GoAway { conn: 0, .. }))
        .collect();
    assert!(
        !goaways.is_empty(),
        "connection 0 closed without a GOAWAY: {}",
        summary(&log)
    );
    assert!(
        goaways
            .iter()
            .all(|e| matches!(e, Seen::GoAway { error_code: 0, .. })),
        "the GOAWAY was not graceful (NO_ERROR): {goaways:?}"
    );
    let goaway_at = log
        .iter()
        .position(|e| matches!(e, Seen::GoAway { conn: 0, .. }))
        .unwrap();
    let closed_at = log
        .iter()
        .position(|e| *e == Seen::ServerClosed(0))
        .unwrap();
    assert!(goaway_at < closed_at, "{}", summary(&log));
    assert!(log.contains(&Seen::Opened(1)), "{}", summary(&log));

    // Every call went through the proxy and was answered; each connection carried some.
    let mut per_conn: BTreeMap<usize, u64> = BTreeMap::new();
    for e in &log {
        if let Seen::Call(c) = e {
            *per_conn.entry(*c).or_default() += 1;
        }
    }
    assert!(per_conn.get(&0).copied().unwrap_or(0) > 0, "{per_conn:?}");
    assert!(per_conn.keys().any(|c| *c > 0), "{per_conn:?}");
    // A call cancelled by a GOAWAY race never reached the server: the proxy counted only the
    // calls answered. One sequential client can lose at most one call per connection closed.
    assert_eq!(per_conn.values().sum::<u64>(), calls, "{per_conn:?}");
    let closed = log
        .iter()
        .filter(|e| matches!(e, Seen::ServerClosed(_)))
        .count();
    assert!(raced <= closed, "{raced} calls raced {closed} closes");
}
