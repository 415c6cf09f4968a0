//! The load generator: closed-loop (N callers, each waiting for its reply) and open-loop (a
//! fixed request rate, latency counted from the scheduled send time so that a slow server
//! cannot hide its queueing: no coordinated omission).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use redis::aio::MultiplexedConnection;
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_proto::v1::{GetTokenRequest, MergeTokenRequest, PutTokenRequest};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::workload::{Op, Rng, Workload};

/// What one call does.
pub enum Target {
    /// The broker's RPCs, per the workload.
    Broker {
        channels: Vec<Channel>,
        workload: Workload,
    },
    /// 64 writers on one key, each with its own range: checks that nothing is lost.
    HotKey {
        channels: Vec<Channel>,
        scope: String,
    },
    /// The gRPC ceiling: a unary health Check, served by the same server.
    Noop { channels: Vec<Channel> },
    /// What an app pays talking to Redis itself.
    RedisGet {
        connections: Vec<MultiplexedConnection>,
        keys: u64,
    },
    RedisEvalsha {
        connections: Vec<MultiplexedConnection>,
        keys: u64,
        script: Arc<redis::Script>,
        workload: Workload,
    },
}

/// Per-caller state.
pub struct Caller {
    pub id: usize,
    pub rng: Rng,
    pub lsn: u64,
    /// Hot-key mode: the last LSN the broker acknowledged for this caller.
    pub last_acked: u64,
}

impl Target {
    pub async fn call(&self, c: &mut Caller) -> Result<(), String> {
        c.lsn += 1;
        match self {
            Target::Broker { channels, workload } => {
                let channel = channels[c.id % channels.len()].clone();
                let mut client = TokenBrokerClient::new(channel);
                let key = format!("key-{}", workload.keys.pick(&mut c.rng));
                let op = workload.op(&mut c.rng);
                let result = match op {
                    Op::Get => client
                        .get_token(GetTokenRequest {
                            scope: workload.scope.clone(),
                            key,
                            partition_key_range_ids: vec![],
                        })
                        .await
                        .map(|_| ()),
                    Op::Put => client
                        .put_token(PutTokenRequest {
                            scope: workload.scope.clone(),
                            key,
                            session_token: workload.token(c.lsn),
                        })
                        .await
                        .map(|_| ()),
                    Op::Merge => client
                        .merge_token(MergeTokenRequest {
                            session_tokens: vec![workload.token(c.lsn), workload.token(c.lsn / 2)],
                        })
                        .await
                        .map(|_| ()),
                };
                result.map_err(|s| format!("{:?}", s.code()))
            }
            Target::HotKey { channels, scope } => {
                let mut client = TokenBrokerClient::new(channels[c.id % channels.len()].clone());
                let token = format!("0:1#{n}#0={n},{}:1#{n}", c.id + 1, n = c.lsn);
                client
                    .put_token(PutTokenRequest {
                        scope: scope.clone(),
                        key: "hot".into(),
                        session_token: token,
                    })
                    .await
                    .map_err(|s| format!("{:?}", s.code()))?;
                c.last_acked = c.lsn;
                Ok(())
            }
            Target::Noop { channels } => {
                let mut client = HealthClient::new(channels[c.id % channels.len()].clone());
                client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("{:?}", s.code()))
            }
            Target::RedisGet { connections, keys } => {
                let mut conn = connections[c.id % connections.len()].clone();
                let key = format!("bench:{}", c.rng.below(*keys));
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Target::RedisEvalsha {
                connections,
                keys,
                script,
                workload,
            } => {
                let mut conn = connections[c.id % connections.len()].clone();
                let key = format!("bench:{}", c.rng.below(*keys));
                script
                    .key(key)
                    .arg(workload.token(c.lsn))
                    .arg(3_600_000u64)
                    .arg(256)
                    .invoke_async::<redis::Value>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// The outcome of one run.
pub struct RunResult {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    /// Hot-key mode: per caller, the last acknowledged LSN.
    pub acked: Vec<u64>,
}

impl RunResult {
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds") // ok: constant bounds
}

/// N callers, each issuing its next call when the previous one returns, for `duration`.
pub async fn closed_loop(target: Arc<Target>, callers: usize, duration: Duration) -> RunResult {
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::with_capacity(callers);
    for id in 0..callers {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut caller = Caller {
                id,
                rng: Rng::new(id as u64 + 1),
                lsn: 0,
                last_acked: 0,
            };
            let mut hist = histogram();
            let (mut ops, mut errors, mut first_error) = (0u64, 0u64, None);
            while Instant::now() < end {
                let t0 = Instant::now();
                match target.call(&mut caller).await {
                    Ok(()) => ops += 1,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
            }
            (hist, ops, errors, first_error, caller.last_acked)
        }));
    }
    let mut result = RunResult {
        ops: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency: histogram(),
        acked: Vec::new(),
    };
    for task in tasks {
        if let Ok((hist, ops, errors, first_error, acked)) = task.await {
            let _ = result.latency.add(&hist);
            result.ops += ops;
            result.errors += errors;
            if result.first_error.is_none() {
                result.first_error = first_error;
            }
            result.acked.push(acked);
        }
    }
    result.elapsed = start.elapsed();
    result
}

/// A fixed rate of calls for `duration`; each call's latency runs from its scheduled time.
///
/// The sends are paced by a thread of their own, not by Tokio's timer: Tokio rounds every sleep
/// up to its 1 ms tick, so a Tokio-paced generator sends each call up to a millisecond or more
/// late and charges that to the server (a no-op RPC at 2,000/s measured a 1.1 ms median that
/// way). A thread sleeping with `std::thread::sleep` wakes within tens of microseconds.
pub async fn open_loop(
    target: Arc<Target>,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> RunResult {
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let total = (rate * duration.as_secs_f64()) as u64;
    let shared = Arc::new(Mutex::new((histogram(), 0u64, 0u64, None::<String>)));
    let limit = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let runtime = tokio::runtime::Handle::current();
    let pacer_shared = shared.clone();
    let pacer = tokio::task::spawn_blocking(move || {
        let mut tasks = Vec::new();
        for i in 0..total {
            let scheduled = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            let permit = match limit.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => match runtime.block_on(limit.clone().acquire_owned()) {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let (target, shared) = (target.clone(), pacer_shared.clone());
            tasks.push(runtime.spawn(async move {
                let mut caller = Caller {
                    id: i as usize,
                    rng: Rng::new(i + 1),
                    lsn: i,
                    last_acked: 0,
                };
                let outcome = target.call(&mut caller).await;
                let micros = scheduled.elapsed().as_micros().max(1) as u64;
                drop(permit);
                if let Ok(mut s) = shared.lock() {
                    let _ = s.0.record(micros);
                    match outcome {
                        Ok(()) => s.1 += 1,
                        Err(e) => {
                            s.2 += 1;
                            s.3.get_or_insert(e);
                        }
                    }
                }
            }));
        }
        tasks
    });
    let tasks = pacer.await.unwrap_or_default();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed();
    let (latency, ops, errors, first_error) = match Arc::try_unwrap(shared) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(_) => (histogram(), 0, 0, None),
    };
    RunResult {
        ops,
        errors,
        first_error,
        elapsed,
        latency,
        acked: Vec::new(),
    }
}
