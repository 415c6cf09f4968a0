//! The write-then-read-on-another-pod scenario, in three phases.
//!
//! Why the pods take turns strictly: requests alternate write, read, write, read... over the pods
//! in round-robin order, so each read lands on a different pod than its write, as behind a
//! Kubernetes Service. With an even number of pods the same pods always take the reads; those
//! pods never write, so their SDK session caches never hold a token that would hide the stale
//! read (a pod that wrote to a partition itself is forced to a fresh replica for a while: the
//! notes call this out as the pitfall that makes naive baselines read zero).

use std::time::Duration;

use azure_data_cosmos::ContainerClient;
use serde::{Deserialize, Serialize};
use test_kit::{KillableBroker, memory_store};
use tokenbroker_client::{ClientConfig, TokenBrokerClient};
use tokenbroker_cosmos::{BrokeredContainer, ContainerScope};

use crate::emulator::{AccountShape, CONTAINER, DATABASE, EmulatedAccount, EmulatorError};
use crate::report::{BrokerPhase, KilledPhase, PhaseCounts, Report};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct ScenarioConfig {
    /// Write-then-read pairs per phase.
    pub pairs: usize,
    /// Pods (independent `CosmosClient`s) behind the round-robin balancer.
    pub pods: usize,
    /// Documents written in turn (each in its own logical partition).
    pub documents: usize,
    pub account: AccountShape,
    /// The broker client's deadline per call.
    pub broker_deadline: Duration,
    /// Keep the SDK's per-partition circuit breaker on in the pods (see
    /// [`EmulatedAccount::new_pod`]). Off by default here: with it on, the pods that read with
    /// broker tokens before the kill keep reading from the write region for minutes after it,
    /// which hides what the kill phase is there to show.
    pub sdk_partition_circuit_breaker: bool,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        Self {
            pairs: 1_000,
            pods: 8,
            documents: 64,
            account: AccountShape {
                replication_delay: Duration::from_millis(20),
                partitions: 16,
            },
            // Generous, so that a busy machine's hiccup is not mistaken for a stale read.
            broker_deadline: Duration::from_secs(1),
            sdk_partition_circuit_breaker: false,
        }
    }
}

/// Why the scenario could not run (not a stale read: those are counted).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    #[error("broker: cannot start: {0}")]
    Broker(#[from] std::io::Error),
    #[error("broker client: {0}")]
    BrokerClient(#[from] tokenbroker_client::ClientError),
    #[error("setup write failed: {0}")]
    Setup(#[from] azure_data_cosmos::CosmosError),
    #[error("invalid scope: {0}")]
    Scope(#[from] tokenbroker_cosmos::ScopeError),
    #[error("need at least 2 pods and 1 document")]
    TooSmall,
}

/// The document the pairs write and read back.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    pk: String,
    /// Increases with every write of this document.
    version: u64,
}

enum Outcome {
    Fresh,
    Stale,
    Failed(String),
}

/// One pod: its own `CosmosClient`, and the same wrapped with the broker when the phase uses it.
struct Pod {
    plain: ContainerClient,
    brokered: Option<BrokeredContainer>,
}

impl Pod {
    async fn write(&self, order: &Order) -> azure_data_cosmos::Result<()> {
        match &self.brokered {
            Some(brokered) => brokered
                .upsert_item(order.pk.clone(), &order.id, order, None)
                .await
                .map(drop),
            None => self
                .plain
                .upsert_item(order.pk.clone(), &order.id, order, None)
                .await
                .map(drop),
        }
    }

    async fn read(&self, order: &Order) -> Outcome {
        let response = match &self.brokered {
            Some(brokered) => brokered.read_item(order.pk.clone(), &order.id, None).await,
            None => {
                self.plain
                    .read_item(order.pk.clone(), &order.id, None)
                    .await
            }
        };
        match response.and_then(|r| r.into_model::<Order>()) {
            Ok(read) if read.version >= order.version => Outcome::Fresh,
            Ok(_) => Outcome::Stale,
            Err(error) if error.status().is_not_found() => Outcome::Stale,
            Err(error) => Outcome::Failed(format!("read: {error}")),
        }
    }
}

/// How a phase uses the broker.
enum BrokerUse<'a> {
    None,
    Up(&'a KillableBroker),
    KilledAt(&'a mut KillableBroker, usize),
}

/// Runs the three phases on one emulated account.
pub async fn run(config: ScenarioConfig) -> Result<Report, ScenarioError> {
    if config.pods < 2 || config.documents == 0 {
        return Err(ScenarioError::TooSmall);
    }
    let account = EmulatedAccount::new(config.account)?;

    let (without, _, _) = run_phase(&account, &config, "without", BrokerUse::None).await?;

    let broker = KillableBroker::try_start(memory_store())?;
    let (with, _, with_failures) =
        run_phase(&account, &config, "with", BrokerUse::Up(&broker)).await?;
    drop(broker);

    let mut doomed = KillableBroker::try_start(memory_store())?;
    let kill_at = config.pairs / 2;
    let (before_kill, after_kill, killed_failures) = run_phase(
        &account,
        &config,
        "killed",
        BrokerUse::KilledAt(&mut doomed, kill_at),
    )
    .await?;

    Ok(Report {
        pairs_per_phase: config.pairs,
        pods: config.pods,
        partitions: config.account.partitions,
        replication_delay_ms: config.account.replication_delay.as_millis(),
        sdk_partition_circuit_breaker: config.sdk_partition_circuit_breaker,
        without_broker: without,
        with_broker: BrokerPhase {
            counts: with,
            broker_failures: with_failures,
        },
        broker_killed: KilledPhase {
            killed_after_pairs: kill_at,
            before_kill,
            after_kill,
            broker_failures: killed_failures,
        },
    })
}

/// Runs one phase on fresh pods and fresh documents. Returns the counts before and after the
/// kill (all pairs count as "before" when nothing is killed) and the broker failures the pods'
/// broker clients counted.
async fn run_phase(
    account: &EmulatedAccount,
    config: &ScenarioConfig,
    phase: &str,
    mut broker: BrokerUse<'_>,
) -> Result<(PhaseCounts, PhaseCounts, u64), ScenarioError> {
    let mut orders: Vec<Order> = (0..config.documents)
        .map(|k| Order {
            id: format!("{phase}-order-{k}"),
            pk: format!("{phase}-customer-{k}"),
            version: 0,
        })
        .collect();
    // Seed every document and let it reach West US, from a pod that takes no part afterwards.
    let seeder = account
        .new_pod(config.sdk_partition_circuit_breaker)
        .await?;
    for order in &orders {
        seeder
            .upsert_item(order.pk.clone(), &order.id, order, None)
            .await?;
    }
    account.store().drain_pending_replications().await;

    let broker_url = match &broker {
        BrokerUse::None => None,
        BrokerUse::Up(b) => Some(b.url()),
        BrokerUse::KilledAt(b, _) => Some(b.url()),
    };
    let scope = ContainerScope::new("emulator", DATABASE, CONTAINER)?;
    let mut pods = Vec::with_capacity(config.pods);
    for _ in 0..config.pods {
        let plain = account
            .new_pod(config.sdk_partition_circuit_breaker)
            .await?;
        let brokered = match &broker_url {
            Some(url) => {
                let client = TokenBrokerClient::new(
                    ClientConfig::new([url.clone()]).with_deadline(config.broker_deadline),
                )?;
                Some(BrokeredContainer::new(plain.clone(), client, scope.clone()))
            }
            None => None,
        };
        pods.push(Pod { plain, brokered });
    }

    let mut before = PhaseCounts::default();
    let mut after = PhaseCounts::default();
    let mut turn = 0usize;
    for pair in 0..config.pairs {
        if let BrokerUse::KilledAt(doomed, at) = &mut broker
            && pair == *at
        {
            doomed.kill();
        }
        let killed = matches!(broker, BrokerUse::KilledAt(_, at) if pair >= at);
        let counts = if killed { &mut after } else { &mut before };

        let k = pair % orders.len();
        let Some(order) = orders.get_mut(k) else {
            continue;
        };
        order.version += 1;
        let writer = &pods[turn % pods.len()];
        let reader = &pods[(turn + 1) % pods.len()];
        turn += 2;

        counts.pairs += 1;
        let outcome = match writer.write(order).await {
            Ok(()) => reader.read(order).await,
            Err(error) => Outcome::Failed(format!("write: {error}")),
        };
        match outcome {
            Outcome::Fresh => {}
            Outcome::Stale => counts.stale += 1,
            Outcome::Failed(error) => {
                counts.failed += 1;
                counts.first_failure.get_or_insert(error);
            }
        }
    }

    let broker_failures = pods
        .iter()
        .filter_map(|pod| pod.brokered.as_ref())
        .map(|b| {
            let stats = b.broker().stats();
            stats.read_failures + stats.write_failures
        })
        .sum();
    Ok((before, after, broker_failures))
}
