//! The Redis store's counts: its own counters (`PairStats`, `InstanceStats`: read by tests and,
//! for the queue depth, by the copy queue) and the metric handles it publishes them through
//! (docs/observability.md lists each metric).
//!
//! Why one call per event (`Shared::count`, `RedisInstance::count`): the store's logic says what
//! happened, once; this module keeps the counter and the published metric in step, and holds the
//! long list of names and help texts.
//!
//! Why gauges are set where their value changes and nothing is read at scrape time: the queue
//! depth is set with each copy queued or finished; up/down and the breaker state on each
//! transition and again on each health round, so a gauge that lost a race with a concurrent
//! transition is right again within one health interval.
//!
//! Why the handles sit in a `OnceLock`: they come from the recorder of the server that serves
//! the store, which is built after the store (see `crate::metrics`); until then they are no-ops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Recorder};
use breaker::STATES as BREAKER_STATES;

use super::instance::RedisInstance;
use super::pair::Shared;
use super::store::RedisStore;
use super::url::RedisUrl;
use crate::metrics::Registrar;

/// Counters of the pair, for tests (the published metrics follow them).
#[derive(Debug, Default)]
pub struct PairStats {
    /// Copies to the fallback (or repairs to the primary) waiting or in flight.
    pub copies_pending: AtomicU64,
    /// Copies applied, or superseded in the queue by a later copy of the same key.
    pub copies_done: AtomicU64,
    /// Copies dropped because the queue was full.
    pub copies_dropped: AtomicU64,
    /// Copies that reached the instance but failed (down, timeout, conflict).
    pub copies_failed: AtomicU64,
    /// Puts written to the fallback because the primary failed.
    pub fallback_writes: AtomicU64,
    /// Reads answered without consulting every instance.
    pub degraded_reads: AtomicU64,
    /// Merged tokens written back to a primary that was behind.
    pub read_repairs: AtomicU64,
}

/// Counters of one instance, for tests (the published metrics follow them).
#[derive(Debug, Default)]
pub struct InstanceStats {
    /// Calls sent to the instance (admitted by the breaker).
    pub calls: AtomicU64,
    /// Calls that failed, for any reason (timeouts included, skipped calls not).
    pub errors: AtomicU64,
    /// Calls that failed on `redis.operation_timeout` (also counted in `errors`).
    pub timeouts: AtomicU64,
    /// Calls not sent because the breaker was open.
    pub skipped: AtomicU64,
    /// Puts that lost a compare-and-set to a concurrent writer and merged again.
    pub cas_conflicts: AtomicU64,
    /// Sentinel instances: times the sentinels named another master than before.
    pub master_changes: AtomicU64,
}

/// What happened to the pair.
#[derive(Debug, Clone, Copy)]
pub(super) enum PairEvent {
    CopyDone,
    CopyDropped,
    CopyFailed,
    FallbackWrite,
    DegradedRead,
    ReadRepair,
}

/// What happened on one instance.
#[derive(Debug, Clone, Copy)]
pub(super) enum InstanceEvent {
    Call,
    Error,
    Timeout,
    Skipped,
    CasConflict,
    MasterChange,
}

/// The pair's handles.
pub(super) struct PairMetrics {
    queue_depth: Gauge,
    copies_done: Counter,
    copies_dropped: Counter,
    copies_failed: Counter,
    fallback_writes: Counter,
    read_repairs: Counter,
}

/// One instance's handles.
pub(super) struct InstanceMetrics {
    up: Gauge,
    /// One per [`BREAKER_STATES`], in that order.
    breaker_state: [Gauge; 3],
    calls: Counter,
    errors: Counter,
    timeouts: Counter,
    skipped: Counter,
    cas_conflicts: Counter,
    latency: Histogram,
    /// Sentinel instances only (a no-op otherwise).
    master_changes: Counter,
    /// Cluster instances only (no-ops otherwise): slots by state, one per [`SLOT_STATES`].
    cluster_slots: [Gauge; 3],
    /// Cluster instances only: masters serving slots (`cluster_size`).
    cluster_masters: Gauge,
    /// Cluster instances only: nodes by role and state, [`NODE_ROLES`] × [`NODE_STATES`].
    cluster_nodes: [[Gauge; 3]; 2],
}

use super::cluster_nodes::{NODE_ROLES, NODE_STATES};

/// The slot states of `CLUSTER INFO` published (`cluster_slots_ok`, `_pfail`, `_fail`).
pub(super) const SLOT_STATES: [&str; 3] = ["ok", "pfail", "fail"];

static NO_PAIR_METRICS: PairMetrics = PairMetrics {
    queue_depth: Gauge::noop(),
    copies_done: Counter::noop(),
    copies_dropped: Counter::noop(),
    copies_failed: Counter::noop(),
    fallback_writes: Counter::noop(),
    read_repairs: Counter::noop(),
};

static NO_INSTANCE_METRICS: InstanceMetrics = InstanceMetrics {
    up: Gauge::noop(),
    breaker_state: [Gauge::noop(), Gauge::noop(), Gauge::noop()],
    calls: Counter::noop(),
    errors: Counter::noop(),
    timeouts: Counter::noop(),
    skipped: Counter::noop(),
    cas_conflicts: Counter::noop(),
    latency: Histogram::noop(),
    master_changes: Counter::noop(),
    cluster_slots: [Gauge::noop(), Gauge::noop(), Gauge::noop()],
    cluster_masters: Gauge::noop(),
    cluster_nodes: [
        [Gauge::noop(), Gauge::noop(), Gauge::noop()],
        [Gauge::noop(), Gauge::noop(), Gauge::noop()],
    ],
};

impl PairMetrics {
    /// The `tokenbroker_fallback_*` metrics exist only with a fallback instance.
    fn register(r: &Registrar<'_>, with_fallback: bool) -> Self {
        let fallback = |name, help| {
            if with_fallback {
                r.counter(name, help, &[])
            } else {
                Counter::noop()
            }
        };
        Self {
            queue_depth: if with_fallback {
                r.gauge(
                    "tokenbroker_redis_copy_queue_depth",
                    "Copies to the fallback and read repairs waiting or in flight.",
                    &[],
                )
            } else {
                Gauge::noop()
            },
            copies_done: fallback(
                "tokenbroker_redis_copies_total",
                "Entries of the copy queue done (copies, repairs, discards, coalesced copies).",
            ),
            copies_dropped: fallback(
                "tokenbroker_redis_copies_dropped_total",
                "Copies dropped because the queue was full.",
            ),
            copies_failed: fallback(
                "tokenbroker_redis_copies_failed_total",
                "Copies that failed (instance down, timeout or merge conflict).",
            ),
            fallback_writes: fallback(
                "tokenbroker_redis_fallback_writes_total",
                "PutTokens written to the fallback because the primary failed.",
            ),
            read_repairs: r.counter(
                "tokenbroker_redis_read_repairs_total",
                "Merged tokens written back to a primary that was behind.",
                &[],
            ),
        }
    }
}

impl InstanceMetrics {
    /// The handles of instance `instance` (`primary`, `fallback`), with the cluster or Sentinel
    /// ones only where `url` is of that kind.
    fn register(r: &Registrar<'_>, instance: &'static str, url: &RedisUrl) -> Self {
        let labels = [("instance", instance)];
        let cluster = url.is_cluster();
        let slots = |state| {
            if cluster {
                r.gauge(
                    "tokenbroker_redis_cluster_slots",
                    "Slots of a Redis Cluster instance by state (ok, pfail, fail), from CLUSTER INFO at each health check.",
                    &[("instance", instance), ("state", state)],
                )
            } else {
                Gauge::noop()
            }
        };
        let counter = |name, help| r.counter(name, help, &labels);
        let state_help = "1 for the circuit breaker's current state (closed, open or half_open), 0 for the others.";
        let state = |state| {
            r.gauge(
                "tokenbroker_redis_breaker_state",
                state_help,
                &[("instance", instance), ("state", state)],
            )
        };
        Self {
            up: r.gauge(
                "tokenbroker_redis_up",
                "1 when the instance answers its health checks.",
                &labels,
            ),
            breaker_state: BREAKER_STATES.map(state),
            calls: counter("tokenbroker_redis_calls_total", "Redis calls made."),
            errors: counter(
                "tokenbroker_redis_errors_total",
                "Redis calls that failed (timeouts included).",
            ),
            timeouts: counter(
                "tokenbroker_redis_timeouts_total",
                "Redis calls that timed out.",
            ),
            skipped: counter(
                "tokenbroker_redis_skipped_total",
                "Calls not made because the breaker was open.",
            ),
            cas_conflicts: counter(
                "tokenbroker_redis_cas_conflicts_total",
                "Puts, copies and repairs that lost a compare-and-set to a concurrent writer and merged again.",
            ),
            latency: r.histogram(
                "tokenbroker_redis_call_duration_seconds",
                "Latency of the Redis calls made (connecting included; skipped calls excluded).",
                &labels,
            ),
            master_changes: if url.is_sentinel() {
                counter(
                    "tokenbroker_redis_master_changes_total",
                    "Times the sentinels named another master than before (a failover followed).",
                )
            } else {
                Counter::noop()
            },
            cluster_slots: SLOT_STATES.map(slots),
            cluster_nodes: NODE_ROLES.map(|role| {
                NODE_STATES.map(|state| {
                    if cluster {
                        r.gauge(
                            "tokenbroker_redis_cluster_nodes",
                            "Nodes of a Redis Cluster instance by role (master, replica) and state (ok, pfail, fail), from CLUSTER NODES on a master at each health check.",
                            &[("instance", instance), ("role", role), ("state", state)],
                        )
                    } else {
                        Gauge::noop()
                    }
                })
            }),
            cluster_masters: if cluster {
                r.gauge(
                    "tokenbroker_redis_cluster_masters",
                    "Masters serving slots in a Redis Cluster instance (cluster_size).",
                    &labels,
                )
            } else {
                Gauge::noop()
            },
        }
    }
}

impl<I> Shared<I> {
    fn metrics(&self) -> &PairMetrics {
        self.metrics.get().unwrap_or(&NO_PAIR_METRICS)
    }

    /// Counts `event` in the pair's counters and metrics.
    pub(super) fn count(&self, event: PairEvent) {
        let (m, s) = (self.metrics(), &self.stats);
        let (stat, metric) = match event {
            PairEvent::CopyDone => (&s.copies_done, &m.copies_done),
            PairEvent::CopyDropped => (&s.copies_dropped, &m.copies_dropped),
            PairEvent::CopyFailed => (&s.copies_failed, &m.copies_failed),
            PairEvent::FallbackWrite => (&s.fallback_writes, &m.fallback_writes),
            // Published by the broker, per GetToken (`tokenbroker_degraded_gets_total`).
            PairEvent::DegradedRead => {
                s.degraded_reads.fetch_add(1, Ordering::Relaxed);
                return;
            }
            PairEvent::ReadRepair => (&s.read_repairs, &m.read_repairs),
        };
        stat.fetch_add(1, Ordering::Relaxed);
        metric.increment(1);
    }

    /// Publishes the queue depth after a change to `copies_pending` left it at `pending`.
    pub(super) fn queue_depth_is(&self, pending: u64) {
        self.metrics().queue_depth.set(pending as f64);
    }
}

impl RedisInstance {
    fn metrics(&self) -> &InstanceMetrics {
        self.metrics.get().unwrap_or(&NO_INSTANCE_METRICS)
    }

    /// Counts `event` in the instance's counters and metrics.
    pub(super) fn count(&self, event: InstanceEvent) {
        let (m, s) = (self.metrics(), &self.stats);
        let (stat, metric) = match event {
            InstanceEvent::Call => (&s.calls, &m.calls),
            InstanceEvent::Error => (&s.errors, &m.errors),
            InstanceEvent::Timeout => (&s.timeouts, &m.timeouts),
            InstanceEvent::Skipped => (&s.skipped, &m.skipped),
            InstanceEvent::CasConflict => (&s.cas_conflicts, &m.cas_conflicts),
            InstanceEvent::MasterChange => (&s.master_changes, &m.master_changes),
        };
        stat.fetch_add(1, Ordering::Relaxed);
        metric.increment(1);
    }

    /// Publishes a cluster's `CLUSTER INFO`: slots by state (in [`SLOT_STATES`] order) and
    /// masters serving slots.
    pub(super) fn publish_cluster(&self, slots: [u64; 3], masters: u64) {
        let m = self.metrics();
        for (gauge, count) in m.cluster_slots.iter().zip(slots) {
            gauge.set(count as f64);
        }
        m.cluster_masters.set(masters as f64);
    }

    /// Publishes a cluster's nodes by role and state ([`NODE_ROLES`] × [`NODE_STATES`]).
    pub(super) fn publish_cluster_nodes(&self, counts: [[u64; 3]; 2]) {
        let m = self.metrics();
        for (gauges, counts) in m.cluster_nodes.iter().zip(counts) {
            for (gauge, count) in gauges.iter().zip(counts) {
                gauge.set(count as f64);
            }
        }
    }

    /// Records the latency of one call made.
    pub(super) fn observe_latency(&self, elapsed: Duration) {
        self.metrics().latency.record(elapsed);
    }

    /// Publishes up/down and the breaker's state as they are now.
    pub(super) fn publish_health(&self) {
        let m = self.metrics();
        let one_if = |b: bool| f64::from(u8::from(b));
        m.up.set(one_if(self.is_up()));
        let state = self.breaker_state();
        for (gauge, name) in m.breaker_state.iter().zip(BREAKER_STATES) {
            gauge.set(one_if(name == state));
        }
    }
}

impl RedisStore {
    /// [`crate::TokenStore::register_metrics`] for the pair and its instances.
    pub(super) fn register_with(&self, recorder: &dyn Recorder) {
        if self.pair.shared.metrics.get().is_some() {
            tracing::warn!(
                "the store's metrics are registered with another server's recorder already: \
                 this server's /metrics will not show them"
            );
            return;
        }
        let r = Registrar::new(recorder);
        let shared = &self.pair.shared;
        let pair = PairMetrics::register(&r, shared.fallback.is_some());
        if shared.metrics.set(pair).is_err() {
            return;
        }
        let m = shared.metrics();
        let s = &shared.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (metric, stat) in [
            (&m.copies_done, &s.copies_done),
            (&m.copies_dropped, &s.copies_dropped),
            (&m.copies_failed, &s.copies_failed),
            (&m.fallback_writes, &s.fallback_writes),
            (&m.read_repairs, &s.read_repairs),
        ] {
            metric.absolute(load(stat));
        }
        shared.queue_depth_is(load(&s.copies_pending));
        for instance in std::iter::once(&shared.primary).chain(shared.fallback.as_ref()) {
            let _ = instance.metrics.set(InstanceMetrics::register(
                &r,
                instance.name(),
                instance.url(),
            ));
            let (m, s) = (instance.metrics(), &instance.stats);
            for (metric, stat) in [
                (&m.calls, &s.calls),
                (&m.errors, &s.errors),
                (&m.timeouts, &s.timeouts),
                (&m.skipped, &s.skipped),
                (&m.cas_conflicts, &s.cas_conflicts),
                (&m.master_changes, &s.master_changes),
            ] {
                metric.absolute(load(stat));
            }
            instance.publish_health();
        }
    }
}
