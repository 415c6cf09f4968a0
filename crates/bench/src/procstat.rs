//! What the benchmarks read about a process from `/proc` (Linux): resident memory and CPU time.
//!
//! Why `/proc` and not the allocator's figures: the question is what the OS sees the broker
//! hold (resident pages, what a container limit counts), whoever holds it.

/// A field of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`), 0 when unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User + system clock ticks in a `/proc/.../stat` line.
fn ticks(stat: &str) -> u64 {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// CPU seconds (user + system) a process has used, or only its threads whose name starts with
/// `thread` (Linux truncates thread names to 15 bytes).
pub fn cpu_secs(pid: u32, thread: Option<&str>) -> f64 {
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let total: u64 = match thread {
        None => ticks(&read(format!("/proc/{pid}/stat").into())),
        Some(name) => std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|task| read(task.path().join("comm")).starts_with(name))
            .map(|task| ticks(&read(task.path().join("stat"))))
            .sum(),
    };
    // USER_HZ is 100 on every Linux this runs on.
    total as f64 / 100.0
}
