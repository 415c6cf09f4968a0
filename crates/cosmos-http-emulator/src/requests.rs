//! What the emulator answered, kept for tests: counts by region, method, status and substatus,
//! and a bounded log of the latest requests with the session tokens they carried.
//!
//! Why: the proofs built on this emulator assert on the traffic, not only on what an SDK returned
//! (a stale read that an SDK retried elsewhere, the token a proxy added, how many 404/1002 the
//! read region answered). Counting at the HTTP front sees every SDK alike.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// How many requests the log keeps (the oldest go first).
pub const LOG_CAPACITY: usize = 10_000;

/// One request the emulator answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedRequest {
    /// The region whose port received it.
    pub region: String,
    /// The HTTP method.
    pub method: String,
    /// The path as the client sent it (before the trailing slash was stripped).
    pub path: String,
    /// The response status.
    pub status: u16,
    /// The response's `x-ms-substatus`, 0 when absent.
    pub substatus: u32,
    /// The request's `x-ms-session-token`, if any.
    pub request_session_token: Option<String>,
    /// The response's `x-ms-session-token` as sent to the client (normalised), if any.
    pub response_session_token: Option<String>,
}

/// The number of requests with one (region, method, status, substatus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestCount {
    /// The region whose port received them.
    pub region: String,
    /// The HTTP method.
    pub method: String,
    /// The response status.
    pub status: u16,
    /// The response substatus, 0 when absent.
    pub substatus: u32,
    /// How many since the start or the last reset.
    pub count: u64,
}

type CountKey = (String, String, u16, u32);

/// The counts and the log, shared by every region's listener.
#[derive(Debug, Default)]
pub struct RequestLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    counts: BTreeMap<CountKey, u64>,
    log: VecDeque<LoggedRequest>,
}

impl RequestLog {
    /// Records one answered request.
    pub fn record(&self, request: LoggedRequest) {
        let mut inner = self.lock();
        let key = (
            request.region.clone(),
            request.method.clone(),
            request.status,
            request.substatus,
        );
        *inner.counts.entry(key).or_insert(0) += 1;
        if inner.log.len() == LOG_CAPACITY {
            inner.log.pop_front();
        }
        inner.log.push_back(request);
    }

    /// The counts, ordered by region, method, status, substatus.
    pub fn counts(&self) -> Vec<RequestCount> {
        self.lock()
            .counts
            .iter()
            .map(
                |((region, method, status, substatus), count)| RequestCount {
                    region: region.clone(),
                    method: method.clone(),
                    status: *status,
                    substatus: *substatus,
                    count: *count,
                },
            )
            .collect()
    }

    /// The latest requests, oldest first (at most [`LOG_CAPACITY`]).
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.lock().log.iter().cloned().collect()
    }

    /// Forgets every count and logged request.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.counts.clear();
        inner.log.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(region: &str, status: u16, substatus: u32) -> LoggedRequest {
        LoggedRequest {
            region: region.to_owned(),
            method: "GET".to_owned(),
            path: "/dbs/shop/colls/orders/docs/a".to_owned(),
            status,
            substatus,
            request_session_token: None,
            response_session_token: Some("0:0#1".to_owned()),
        }
    }

    #[test]
    fn counts_group_by_region_method_status_and_substatus() {
        let log = RequestLog::default();
        log.record(request("West US", 404, 0));
        log.record(request("West US", 404, 0));
        log.record(request("West US", 404, 1002));
        log.record(request("East US", 200, 0));
        let counts: Vec<_> = log
            .counts()
            .into_iter()
            .map(|c| (c.region, c.status, c.substatus, c.count))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("East US".to_owned(), 200, 0, 1),
                ("West US".to_owned(), 404, 0, 2),
                ("West US".to_owned(), 404, 1002, 1),
            ]
        );
        assert_eq!(log.log().len(), 4);
        assert_eq!(log.log()[0].region, "West US");
    }

    #[test]
    fn reset_forgets_everything_and_the_log_is_bounded() {
        let log = RequestLog::default();
        for _ in 0..LOG_CAPACITY + 5 {
            log.record(request("East US", 201, 0));
        }
        assert_eq!(log.log().len(), LOG_CAPACITY);
        assert_eq!(log.counts()[0].count, (LOG_CAPACITY + 5) as u64);
        log.reset();
        assert!(log.counts().is_empty());
        assert!(log.log().is_empty());
    }
}
