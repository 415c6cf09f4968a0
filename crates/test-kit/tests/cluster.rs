//! The kit's Redis Cluster: it forms with every slot served, a cluster client's writes land where
//! the kit says, a killed master's replica takes over, a reshard moves slots. One cluster for the
//! whole binary, as the broker's tests will use it; each test holds it exclusively and starts
//! from a healed cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use test_kit::{ClusterRole, RedisCluster, SLOTS};

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = RedisCluster::start();
        eprintln!(
            "cluster of {} nodes started in {:?}",
            cluster.ports().len(),
            cluster.startup_time()
        );
        cluster
    })
}

async fn cluster_client(cluster: &RedisCluster) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.node_urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// GET on one node alone: `Err` carries a redirection (MOVED) or any other refusal.
fn get_on(port: u16, key: &str) -> redis::RedisResult<Option<String>> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
    redis::cmd("GET").arg(key).query(&mut connection)
}

#[test]
fn the_cluster_forms_with_every_slot_served_by_three_masters_with_a_replica_each() {
    let cluster = cluster();
    let _only_me = cluster.exclusive();
    let nodes = cluster.heal();

    assert_eq!(nodes.len(), 6);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let served: usize = masters.iter().map(|m| m.slot_count()).sum();
    assert_eq!(served, usize::from(SLOTS));
    for slot in [0, 5000, 10000, SLOTS - 1] {
        assert!(masters.iter().any(|m| m.serves(slot)), "slot {slot}");
    }
    for master in &masters {
        let replicas: Vec<_> = nodes.iter().filter(|n| n.follows(&master.id)).collect();
        assert_eq!(replicas.len(), 1, "{master} has one replica");
        assert_eq!(
            replicas[0].role,
            ClusterRole::Replica {
                master_id: master.id.clone(),
                master_port: Some(master.port)
            }
        );
    }
    for port in cluster.ports() {
        let mut connection = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut connection)
            .unwrap();
        assert!(info.contains("cluster_state:ok"), ":{port}: {info}");
        assert!(info.contains("cluster_slots_ok:16384"), ":{port}: {info}");
    }

    let url = cluster.url();
    let seeds: Vec<String> = cluster
        .ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    assert_eq!(url, format!("redis+cluster://{}", seeds.join(",")));
    assert_eq!(cluster.node_urls().len(), 6);
}

#[tokio::test]
async fn keys_written_through_a_moved_following_client_land_on_the_master_the_kit_names() {
    let cluster = cluster();
    let _only_me = cluster.exclusive_async().await;
    cluster.heal();
    let mut client = cluster_client(cluster).await;

    let mut masters_hit = BTreeMap::new();
    for i in 0..60 {
        let key = format!("{{tb:user-{i}}}:token");
        let _: () = client.set(&key, format!("v{i}")).await.unwrap();

        let master = cluster.master_for_key(&key);
        assert!(master.serves(cluster.slot_for_key(&key)));
        assert_eq!(
            get_on(master.port, &key).unwrap().as_deref(),
            Some(format!("v{i}").as_str()),
            "{key} is on {master}"
        );
        *masters_hit.entry(master.port).or_insert(0) += 1;

        let other = cluster
            .masters()
            .into_iter()
            .find(|m| m.port != master.port)
            .unwrap();
        let moved = get_on(other.port, &key).unwrap_err();
        assert_eq!(
            moved.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::Moved),
            "{moved}"
        );
    }
    assert_eq!(
        masters_hit.len(),
        3,
        "60 keys spread over the 3 masters: {masters_hit:?}"
    );
}

#[test]
fn a_killed_master_is_replaced_by_its_replica_and_comes_back_as_a_replica() {
    let cluster = cluster();
    let _only_me = cluster.exclusive();
    let before = cluster.heal();
    let key = "{tb:failover}:token";
    let slot = cluster.slot_for_key(key);
    let master = cluster.master_of_slot(slot);
    let replica = before
        .iter()
        .find(|n| n.follows(&master.id))
        .unwrap()
        .clone();
    // Written and acknowledged by the replica before the crash, so it survives it.
    let mut connection = redis::Client::open(master.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg("kept")
        .query(&mut connection)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut connection)
        .unwrap();
    assert_eq!(acked, 1);

    let killed_at = Instant::now();
    let old = cluster.kill_master_of_slot(slot);
    assert_eq!(old.id, master.id);
    let new = cluster.wait_for_failover(&old);
    let failover_took = killed_at.elapsed();
    eprintln!("failover after a master was killed: {failover_took:?}");

    assert_eq!(
        new.id, replica.id,
        "the killed master's own replica is promoted"
    );
    assert_eq!(new.slots, old.slots, "with all of its slots");
    assert_eq!(cluster.master_of_slot(slot).port, replica.port);
    assert_eq!(get_on(new.port, key).unwrap().as_deref(), Some("kept"));

    let restarted_at = Instant::now();
    let back = cluster.restart(old.port);
    eprintln!(
        "the killed master rejoined as a replica in {:?}",
        restarted_at.elapsed()
    );
    assert_eq!(back.id, old.id, "the same node, by its nodes.conf");
    assert_eq!(
        back.role,
        ClusterRole::Replica {
            master_id: new.id.clone(),
            master_port: Some(new.port)
        }
    );
    assert!(back.slots.is_empty());
}

/// What a client sees while a master is killed and replaced: every node's answer to a SET of a
/// key of the dead master's slot and of a key of another master's (a thread sampling every
/// 20 ms), and the cluster client's calls. Prints the timeline; asserts only that writes succeed
/// once the failover is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_clients_see_during_a_failover() {
    let cluster = cluster();
    let _only_me = cluster.exclusive_async().await;
    cluster.heal();
    let dead_key = "{tb:dead}:k";
    let live_key = (0..)
        .map(|i| format!("{{tb:live-{i}}}:k"))
        .find(|k| cluster.master_for_key(k).port != cluster.master_for_key(dead_key).port)
        .unwrap();
    let mut client = cluster_client(cluster).await;

    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            sample_nodes(cluster.ports(), &[dead_key, &live_key], started, &done)
        })
    };
    let failover = tokio::task::spawn_blocking(move || {
        let old = cluster.kill_master_of_slot(cluster.slot_for_key(dead_key));
        let new = cluster.wait_for_failover(&old);
        (old, new, started.elapsed())
    });

    let mut calls = 0;
    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, Duration::ZERO);
    while !failover.is_finished() {
        let call = Instant::now();
        let written: redis::RedisResult<()> = client.set(dead_key, "y").await;
        calls += 1;
        if call.elapsed() > slowest.1 {
            slowest = (call.duration_since(started), call.elapsed());
        }
        if let Err(error) = written {
            failures.push(format!(
                "{} ms: {error}",
                call.duration_since(started).as_millis()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (old, new, took) = failover.await.unwrap();
    done.store(true, Ordering::Relaxed);
    for (at, line) in sampler.join().unwrap() {
        eprintln!("{:>6} ms  {line}", at.as_millis());
    }
    eprintln!(
        "failover of {old} to {new}: cluster ok again after {took:?}; the cluster client made \
         {calls} calls, {} failed {failures:?}; its slowest began at {} ms and took {:?}",
        failures.len(),
        slowest.0.as_millis(),
        slowest.1
    );
    let _: () = client.set(dead_key, "after").await.unwrap();
    assert_eq!(
        get_on(new.port, dead_key).unwrap().as_deref(),
        Some("after")
    );
}

/// Every 20 ms until `done`, SET each key on each node over a new connection; returns when the
/// answers (MOVED left out) changed, and to what.
fn sample_nodes(
    ports: &[u16],
    keys: &[&str],
    started: Instant,
    done: &AtomicBool,
) -> Vec<(Duration, String)> {
    let mut timeline = Vec::new();
    let mut last = String::new();
    while !done.load(Ordering::Relaxed) {
        let mut seen = Vec::new();
        for port in ports {
            for key in keys {
                let answer = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .unwrap()
                    .get_connection_with_timeout(Duration::from_millis(200))
                    .and_then(|mut c| {
                        c.set_read_timeout(Some(Duration::from_millis(200)))?;
                        redis::cmd("SET").arg(*key).arg("x").query::<()>(&mut c)
                    });
                let answer = match answer {
                    Ok(()) => "OK".to_string(),
                    Err(e) => e.code().map_or_else(|| "refused".into(), str::to_string),
                };
                if answer != "MOVED" {
                    seen.push(format!(":{port} {key} {answer}"));
                }
            }
        }
        let line = seen.join(", ");
        if line != last {
            timeline.push((started.elapsed(), line.clone()));
            last = line;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    timeline
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_moves_slots_and_their_keys() {
    let cluster = cluster();
    let _only_me = cluster.exclusive_async().await;
    cluster.heal();
    let masters = cluster.masters();
    let (from, to) = (&masters[0], &masters[1]);
    let mut client = cluster_client(cluster).await;
    let keys: Vec<String> = (0..2000).map(|i| format!("reshard-{i}")).collect();
    for key in &keys {
        let _: () = client.set(key, key).await.unwrap();
    }

    let began = Instant::now();
    let (from_port, to_port) = (from.port, to.port);
    let reshard = tokio::task::spawn_blocking(move || cluster.reshard(from_port, to_port, 200));
    // Reads and writes meanwhile, through the client (which follows ASK and MOVED).
    let (mut calls, mut failures) = (0, Vec::new());
    while !reshard.is_finished() {
        for key in keys.iter().take(400) {
            calls += 1;
            let read: redis::RedisResult<Option<String>> = client.get(key).await;
            match read {
                Ok(value) => assert_eq!(value.as_deref(), Some(key.as_str())),
                Err(error) => failures.push(error.to_string()),
            }
        }
    }
    let moved = reshard.await.unwrap();
    eprintln!(
        "200 slots with their keys moved in {:?}; {calls} GETs meanwhile, failed: {failures:?}",
        began.elapsed()
    );

    assert_eq!(moved.len(), 200);
    for slot in &moved {
        assert!(from.serves(*slot), "slot {slot} was {from}'s");
        assert_eq!(cluster.master_of_slot(*slot).port, to.port, "slot {slot}");
    }
    assert_eq!(
        cluster.node(from.port).slot_count(),
        from.slot_count() - 200
    );
    let mut on_moved_slots = 0;
    for key in &keys {
        let value: Option<String> = client.get(key).await.unwrap();
        assert_eq!(value.as_deref(), Some(key.as_str()));
        if moved.contains(&cluster.slot_for_key(key)) {
            on_moved_slots += 1;
            assert_eq!(get_on(to.port, key).unwrap().as_deref(), Some(key.as_str()));
        }
    }
    assert!(on_moved_slots > 0, "some keys were on the moved slots");

    // Back, so the next test finds three even masters.
    let back = cluster.reshard(to.port, from.port, 200);
    assert_eq!(back.len(), 200);
}

#[test]
fn a_paused_master_is_failed_over_and_heal_brings_it_back_as_a_replica() {
    let cluster = cluster();
    let _only_me = cluster.exclusive();
    cluster.heal();
    let master = cluster.master_of_slot(0);
    cluster.pause(master.port);
    let new = cluster.wait_for_failover(&master);
    assert_ne!(new.id, master.id);

    let nodes = cluster.heal();
    let back = nodes.iter().find(|n| n.id == master.id).unwrap();
    assert!(back.running && !back.failed);
    assert_eq!(
        back.role,
        ClusterRole::Replica {
            master_id: new.id.clone(),
            master_port: Some(new.port)
        },
        "the resumed master learnt it lost its slots"
    );
}
