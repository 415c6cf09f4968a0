//! Where a topology's processes and files live, and what removes them even if the topology is
//! never dropped.
//!
//! Why: a topology is started once per test binary and kept in a `static`, and statics are never
//! dropped, so killing the servers in `Drop` alone would leave a cluster running after every
//! test run. Each topology therefore puts its servers in a process group of their own (led by a
//! `sleep infinity` that only holds the group) and starts a reaper: a shell that waits for
//! end-of-file on a pipe whose only writer is this process. When the topology is dropped, or the
//! test process ends in any way (even SIGKILL), the pipe closes, and the reaper kills the whole
//! group and removes the temporary directory. No polling and no unsafe code (`setpgid` through
//! `CommandExt::process_group`).

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Waits for end-of-file on stdin, then kills process group `$1` and removes directory `$2`.
/// It ignores the signals a terminal sends to its foreground group (Ctrl-C), so that it
/// outlives the test process it cleans up after.
const REAPER: &str = r#"trap '' INT HUP TERM QUIT PIPE
read -r _ || :
kill -9 -"$1" 2>/dev/null
rm -rf -- "$2""#;

/// A temporary directory and a process group, both removed when dropped or when this process
/// ends.
pub(crate) struct Sandbox {
    dir: PathBuf,
    holder: Child,
    reaper: Child,
}

impl Sandbox {
    /// Creates the directory (`<tmp>/tokenbroker-<kind>-<pid>-<n>`), the group and the reaper.
    pub(crate) fn new(kind: &str) -> io::Result<Self> {
        let dir = create_dir(kind)?;
        let holder = Command::new("sleep")
            .arg("infinity")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut holder = match holder {
            Ok(holder) => holder,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
        };
        let reaper = Command::new("sh")
            .args(["-c", REAPER, "reaper"])
            .arg(holder.id().to_string())
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match reaper {
            Ok(reaper) => Ok(Self {
                dir,
                holder,
                reaper,
            }),
            Err(error) => {
                let _ = holder.kill();
                let _ = holder.wait();
                let _ = std::fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    /// The temporary directory (configuration files, logs).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process group the topology's servers join.
    pub(crate) fn group(&self) -> i32 {
        // A pid fits in an i32 (pid_t) on every Unix.
        i32::try_from(self.holder.id()).unwrap_or(i32::MAX)
    }

    /// The last `lines` lines of every `*.log` file in the directory, for a failure message.
    pub(crate) fn log_tails(&self, lines: usize) -> String {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return String::new();
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        logs.sort();
        let mut out = String::new();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out.push_str(&format!("--- {}\n{}\n", log.display(), tail.join("\n")));
        }
        out
    }
}

impl Drop for Sandbox {
    /// Closes the reaper's pipe and waits for it: the group is killed and the directory gone.
    fn drop(&mut self) {
        drop(self.reaper.stdin.take());
        let _ = self.reaper.wait();
        // The reaper killed the holder with its group; killing it again covers a reaper that
        // could not, and the wait reaps it.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new, empty directory under the system's temporary directory.
fn create_dir(kind: &str) -> io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tokenbroker-{kind}-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            // Left by an earlier process with the same pid: take the next name.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
}
