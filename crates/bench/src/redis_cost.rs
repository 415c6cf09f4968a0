//! What a row of the comparison cost each Redis: command time from `INFO commandstats` and the
//! Redis process's own CPU time, both divided by the row's operations.
//!
//! Why two figures: `commandstats` times each command's execution (the figure the store's
//! targets are stated in, and the one that shows which command costs what), but not the event
//! loop, the socket reads and writes or the reply buffers; `used_cpu_*_main_thread` (from
//! getrusage, Redis 6.2 and later) is everything the main thread spent, so it is what bounds one
//! Redis's operations per second.
//!
//! Why the subtraction: Redis counts a command called from a script both in the script's time
//! and in that command's own row. The broker never sends GET (its reads are batched MGETs), and
//! every script of the store begins with exactly one GET, so every GET is a script's; a script
//! then writes at most once (SET, PEXPIRE or DEL), so up to one of those per script call is the
//! script's too and is taken out at that command's average time. What is left is the time of the
//! commands the broker sent, scripts included once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde::Serialize;

/// One `cmdstat_<name>` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CommandStat {
    pub calls: u64,
    pub usec: u64,
}

/// A Redis's counters at one moment: `commandstats` (reset by [`RedisCounters::reset`]) and the
/// main thread's CPU time in microseconds (never reset: rows use differences).
#[derive(Debug, Clone, Default)]
pub struct RedisCounters {
    pub commands: BTreeMap<String, CommandStat>,
    pub cpu_main_thread_us: f64,
}

/// Parses the `# Commandstats` and `# CPU` sections of `INFO` output.
pub fn parse_info(info: &str) -> RedisCounters {
    let mut out = RedisCounters::default();
    for line in info.lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_") {
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            out.commands.insert(
                name.to_owned(),
                CommandStat {
                    calls: field("calls"),
                    usec: field("usec"),
                },
            );
        } else if let Some(v) = line
            .strip_prefix("used_cpu_sys_main_thread:")
            .or_else(|| line.strip_prefix("used_cpu_user_main_thread:"))
        {
            out.cpu_main_thread_us += v.trim().parse::<f64>().unwrap_or(0.0) * 1e6;
        }
    }
    out
}

impl RedisCounters {
    /// Reads both sections.
    pub async fn read(conn: &mut MultiplexedConnection) -> Result<Self, String> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .arg("cpu")
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(parse_info(&info))
    }

    /// `CONFIG RESETSTAT`, then the counters right after it.
    pub async fn reset(conn: &mut MultiplexedConnection) -> Result<Self, String> {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        Self::read(conn).await
    }

    /// Calls of every command but INFO and CONFIG (the bench's own).
    fn workload_calls(&self) -> u64 {
        self.commands
            .iter()
            .filter(|(name, _)| !is_bench_command(name))
            .map(|(_, s)| s.calls)
            .sum()
    }
}

fn is_bench_command(name: &str) -> bool {
    name == "info" || name.starts_with("config")
}

/// Waits until `conn`'s Redis has run no new command for `quiet` (the broker's copy queue has
/// drained into it), at most `limit`. Returns whether it went quiet.
pub async fn settle(conn: &mut MultiplexedConnection, quiet: Duration, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut last = RedisCounters::read(conn).await.map(|c| c.workload_calls());
    while Instant::now() < deadline {
        tokio::time::sleep(quiet).await;
        let now = RedisCounters::read(conn).await.map(|c| c.workload_calls());
        if now.is_ok() && now == last {
            return true;
        }
        last = now;
    }
    false
}

/// What one row cost one Redis.
#[derive(Debug, Clone, Serialize)]
pub struct RedisCost {
    /// The row's operations (RPCs), the divisor.
    pub ops: u64,
    /// Per command: calls and microseconds per operation, as Redis counted them.
    pub commands: BTreeMap<String, (f64, f64)>,
    /// Command time per operation of the commands the broker sent (scripts include their calls).
    pub command_us_per_op: f64,
    /// The main thread's CPU time per operation (user + system).
    pub cpu_us_per_op: f64,
}

impl RedisCost {
    /// The cost of `ops` operations between `before` (just after a reset) and `after`.
    pub fn between(before: &RedisCounters, after: &RedisCounters, ops: u64) -> Self {
        let per_op = |x: f64| if ops == 0 { 0.0 } else { x / ops as f64 };
        let stat = |name: &str| after.commands.get(name).copied().unwrap_or_default();
        let avg = |s: CommandStat| {
            if s.calls == 0 {
                0.0
            } else {
                s.usec as f64 / s.calls as f64
            }
        };
        let mut total = 0.0;
        let mut commands = BTreeMap::new();
        for (name, s) in &after.commands {
            if is_bench_command(name) {
                continue;
            }
            total += s.usec as f64;
            commands.insert(
                name.clone(),
                (per_op(s.calls as f64), per_op(s.usec as f64)),
            );
        }
        // Calls made from inside scripts (see the module header).
        let scripts = stat("evalsha").calls + stat("eval").calls;
        total -= stat("get").usec as f64;
        let mut script_writes = scripts;
        for write in ["set", "pexpire", "del"] {
            let s = stat(write);
            let inner = s.calls.min(script_writes);
            script_writes -= inner;
            total -= inner as f64 * avg(s);
        }
        Self {
            ops,
            commands,
            command_us_per_op: per_op(total.max(0.0)),
            cpu_us_per_op: per_op((after.cpu_main_thread_us - before.cpu_main_thread_us).max(0.0)),
        }
    }

    /// Per command, calls and microseconds per operation, e.g. `mget 1.00x 1.2us, evalsha 1.00x 4.0us`.
    pub fn breakdown(&self) -> String {
        self.commands
            .iter()
            .map(|(name, (calls, us))| format!("{name} {calls:.2}x {us:.1}us"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One row's cost on the primary and on the fallback.
#[derive(Debug, Clone, Serialize)]
pub struct PairCost {
    pub row: String,
    pub primary: RedisCost,
    pub fallback: RedisCost,
}

/// Connections to both Redis for reading their counters around a row.
pub struct PairCounters {
    primary: MultiplexedConnection,
    fallback: MultiplexedConnection,
}

impl PairCounters {
    pub fn new(primary: MultiplexedConnection, fallback: MultiplexedConnection) -> Self {
        Self { primary, fallback }
    }

    /// Resets both; call right before the measured run.
    pub async fn start(&mut self) -> Result<(RedisCounters, RedisCounters), String> {
        Ok((
            RedisCounters::reset(&mut self.primary).await?,
            RedisCounters::reset(&mut self.fallback).await?,
        ))
    }

    /// After the run: waits for the copies still queued to reach the fallback, then reads both.
    pub async fn finish(
        &mut self,
        row: &str,
        started: (RedisCounters, RedisCounters),
        ops: u64,
    ) -> Result<PairCost, String> {
        let quiet = settle(
            &mut self.fallback,
            Duration::from_millis(200),
            Duration::from_secs(10),
        )
        .await;
        if !quiet {
            eprintln!("{row}: the fallback was still busy 10 s after the run; its cost is a floor");
        }
        let primary = RedisCounters::read(&mut self.primary).await?;
        let fallback = RedisCounters::read(&mut self.fallback).await?;
        Ok(PairCost {
            row: row.to_owned(),
            primary: RedisCost::between(&started.0, &primary, ops),
            fallback: RedisCost::between(&started.1, &fallback, ops),
        })
    }
}

/// The Redis cost table printed under the comparison.
pub fn table(costs: &[PairCost]) -> String {
    let mut out = format!(
        "{:<28} {:>12} {:>12} {:>12} {:>12}\n",
        "Redis cost per op (us)", "primary cmd", "primary cpu", "fallback cmd", "fallback cpu"
    );
    for c in costs {
        out.push_str(&format!(
            "{:<28} {:>12.1} {:>12.1} {:>12.1} {:>12.1}\n",
            c.row,
            c.primary.command_us_per_op,
            c.primary.cpu_us_per_op,
            c.fallback.command_us_per_op,
            c.fallback.cpu_us_per_op
        ));
    }
    for c in costs {
        out.push_str(&format!(
            "  {}: primary [{}]; fallback [{}]\n",
            c.row,
            c.primary.breakdown(),
            c.fallback.breakdown()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Commandstats\r\n\
        cmdstat_get:calls=100,usec=100,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_set:calls=110,usec=220,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_evalsha:calls=100,usec=500,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_mget:calls=50,usec=150,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=3,usec=90,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_config|resetstat:calls=1,usec=9,usec_per_call=9.00,rejected_calls=0,failed_calls=0\r\n\
        \r\n# CPU\r\nused_cpu_sys:9.0\r\nused_cpu_sys_main_thread:1.500000\r\n\
        used_cpu_user_main_thread:0.500000\r\n";

    #[test]
    fn parses_commandstats_and_main_thread_cpu() {
        let c = parse_info(INFO);
        assert_eq!(
            c.commands["get"],
            CommandStat {
                calls: 100,
                usec: 100
            }
        );
        assert_eq!(c.commands["config|resetstat"].calls, 1);
        assert!((c.cpu_main_thread_us - 2_000_000.0).abs() < 1e-6);
    }

    #[test]
    fn script_calls_are_counted_once() {
        let after = parse_info(INFO);
        let before = RedisCounters {
            cpu_main_thread_us: 1_000_000.0,
            ..Default::default()
        };
        let cost = RedisCost::between(&before, &after, 100);
        // GET (all inside scripts) out, 100 of the 110 SETs out at 2 us each: the broker sent
        // 100 EVALSHA (500), 50 MGET (150) and 10 SET (20); INFO and CONFIG are the bench's.
        assert!((cost.command_us_per_op - 6.7).abs() < 1e-9, "{cost:?}");
        assert!((cost.cpu_us_per_op - 10_000.0).abs() < 1e-6);
        assert_eq!(cost.commands.get("info"), None);
        assert_eq!(cost.commands["mget"], (0.5, 1.5));
    }
}
