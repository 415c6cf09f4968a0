//! The kit's Sentinel topology: the sentinels report the master, a requested failover and a
//! killed master both move it to the replica, which accepts writes; a Sentinel client follows.
//! One topology for the whole binary; each test holds it exclusively and starts from a healed
//! one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redis::sentinel::{SentinelClient, SentinelServerType};
use test_kit::{RedisSentinel, SentinelOptions};

fn sentinel() -> &'static RedisSentinel {
    static SENTINEL: OnceLock<RedisSentinel> = OnceLock::new();
    SENTINEL.get_or_init(|| {
        let topology = RedisSentinel::start();
        eprintln!(
            "master, replica and 3 sentinels started in {:?}",
            topology.startup_time()
        );
        topology
    })
}

fn connect(addr: SocketAddr) -> redis::Connection {
    let connection = redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    connection
}

fn role(addr: SocketAddr) -> String {
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query(&mut connect(addr)).unwrap();
    redis::from_redis_value(reply[0].clone()).unwrap()
}

fn set_acknowledged(addr: SocketAddr, key: &str, value: &str) {
    let mut connection = connect(addr);
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(&mut connection)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut connection)
        .unwrap();
    assert_eq!(acked, 1, "the replica acknowledged {key}");
}

fn get(addr: SocketAddr, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut connect(addr))
        .unwrap()
}

#[test]
fn the_sentinels_report_the_master_and_see_its_replica() {
    let topology = sentinel();
    let _only_me = topology.exclusive();
    let master = topology.heal();

    assert_eq!(topology.master_addr(), master);
    assert!(topology.data_ports().contains(&master.port()));
    assert_eq!(role(master), "master");
    let replica = topology
        .data_ports()
        .iter()
        .find(|&&p| p != master.port())
        .unwrap();
    assert_eq!(role(SocketAddr::from(([127, 0, 0, 1], *replica))), "slave");

    let s = topology.sentinel_ports();
    assert_eq!(s.len(), 3);
    assert_eq!(
        topology.url(),
        format!(
            "redis+sentinel://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/tokenbroker",
            s[0], s[1], s[2]
        )
    );
}

#[test]
fn a_requested_failover_moves_the_master_and_the_new_master_accepts_writes() {
    let topology = sentinel();
    let _only_me = topology.exclusive();
    let old = topology.heal();
    set_acknowledged(old, "before", "kept");

    let asked = Instant::now();
    let new = topology.failover();
    eprintln!(
        "SENTINEL FAILOVER: new master reported in {:?}",
        asked.elapsed()
    );

    assert_ne!(new, old);
    assert_eq!(topology.master_addr(), new);
    assert_eq!(role(new), "master");
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("written")
        .query(&mut connect(new))
        .unwrap();
    assert_eq!(get(new, "before").as_deref(), Some("kept"));

    // heal() demotes the old master at once, as the sentinels themselves do 10 to 20 s later.
    assert_eq!(topology.heal(), new);
    let refused = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut connect(old))
        .unwrap_err();
    assert_eq!(refused.code(), Some("READONLY"), "{refused}");
    assert_eq!(get(old, "after").as_deref(), Some("written"));
}

/// How long the old master of a requested failover goes on accepting writes as a master before
/// the sentinels turn it into a replica (which drops those writes): 11 s on a fresh topology, up
/// to 21 s measured (Redis 7.0: INFO every 10 s, then 8 s after the role is seen).
#[test]
#[ignore = "takes 10 to 20 s; run with --ignored to measure"]
fn the_old_master_goes_on_accepting_writes_until_the_sentinels_demote_it() {
    let topology = sentinel();
    let _only_me = topology.exclusive();
    let old = topology.heal();
    let asked = Instant::now();
    let new = topology.failover();
    let mut last_write = asked.elapsed();
    while role(old) == "master" {
        let written = redis::cmd("SET")
            .arg("lost")
            .arg("yes")
            .query::<()>(&mut connect(old));
        if written.is_ok() {
            last_write = asked.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "new master {new} reported; the old master {old} took writes until {last_write:?} \
         after the request, and is a replica {:?} after it",
        asked.elapsed()
    );
    topology.wait_settled();
    assert_eq!(
        get(old, "lost"),
        None,
        "its writes were dropped by the resync"
    );
}

#[test]
fn a_killed_master_is_replaced_and_comes_back_as_a_replica() {
    let topology = sentinel();
    let _only_me = topology.exclusive();
    let old = topology.heal();
    set_acknowledged(old, "survivor", "kept");

    let killed_at = Instant::now();
    let killed = topology.kill_master();
    assert_eq!(killed, old.port());
    let new = topology.wait_for_failover(killed);
    eprintln!(
        "master killed: new master reported in {:?}",
        killed_at.elapsed()
    );

    assert_ne!(new, old);
    assert_eq!(role(new), "master");
    assert_eq!(get(new, "survivor").as_deref(), Some("kept"));
    let _: () = redis::cmd("SET")
        .arg("after-kill")
        .arg("written")
        .query(&mut connect(new))
        .unwrap();

    topology.restart(killed);
    assert_eq!(role(old), "slave", "{}", topology.logs(60));
    assert_eq!(topology.master_addr(), new);
    assert_eq!(get(old, "after-kill").as_deref(), Some("written"));
}

#[test]
fn a_sentinel_client_follows_the_failover() {
    let topology = sentinel();
    let _only_me = topology.exclusive();
    let old = topology.heal();
    // `build` takes a String, or `impl AsRef<str>` when redis's tls-rustls is on (the broker
    // turns it on in a workspace build): an owned String suits both.
    #[allow(clippy::unnecessary_to_owned)]
    let mut client = SentinelClient::build(
        topology.sentinel_urls(),
        topology.master_name().to_string(),
        None,
        SentinelServerType::Master,
    )
    .unwrap();
    let _: () = redis::cmd("SET")
        .arg("via-sentinel")
        .arg("1")
        .query(&mut client.get_connection().unwrap())
        .unwrap();
    assert_eq!(get(old, "via-sentinel").as_deref(), Some("1"));

    let new = topology.failover();
    let _: () = redis::cmd("SET")
        .arg("via-sentinel")
        .arg("2")
        .query(&mut client.get_connection().unwrap())
        .unwrap();
    assert_eq!(get(new, "via-sentinel").as_deref(), Some("2"));
}

#[test]
fn sentinels_and_servers_with_passwords() {
    let began = Instant::now();
    let topology = RedisSentinel::start_with(SentinelOptions {
        master_name: "secured".into(),
        sentinel_password: Some("sentinel-secret".into()),
        password: Some("data-secret".into()),
        ..SentinelOptions::default()
    });
    eprintln!("with passwords: started in {:?}", began.elapsed());

    let port = topology.sentinel_ports()[0];
    let denied = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .and_then(|mut connection| {
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg("secured")
                .query::<Option<(String, u16)>>(&mut connection)
        });
    assert!(
        denied.is_err(),
        "the sentinels require the password: {denied:?}"
    );
    assert!(topology.sentinel_urls()[0].starts_with("redis://:sentinel-secret@127.0.0.1:"));

    let old = topology.master_addr();
    let new = topology.failover();
    assert_ne!(new, old);
    let mut connection = redis::Client::open(topology.master_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut connection)
        .unwrap();
}

#[test]
fn heal_waits_for_the_failover_of_a_killed_master_and_restarts_what_was_killed() {
    let topology = sentinel();
    let _only_me = topology.exclusive();
    let old = topology.heal();
    let sentinel_port = topology.sentinel_ports()[0];
    topology.kill(sentinel_port);
    let killed = topology.kill_master();

    let new = topology.heal();
    assert_ne!(
        new.port(),
        killed,
        "the replica was promoted, not the empty master restarted\n{}",
        topology.logs(60)
    );
    assert_eq!(role(old), "slave");
    assert_eq!(topology.master_addr(), new);
}
