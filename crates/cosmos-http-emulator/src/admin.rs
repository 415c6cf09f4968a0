//! The test-only admin routes, under `/_emulator/` on every region's port (the routes are listed
//! in the crate documentation).
//!
//! Why HTTP routes: tests in Python, JavaScript or a shell drive the emulator binary as a black
//! box; the prefix starts with `_`, which no Cosmos resource path does (they start with `dbs`,
//! `offers`, or are `/`), so the routes cannot shadow an SDK's request.

use std::collections::HashMap;
use std::time::Duration;

use azure_core::http::Url;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::Error;
use crate::account::Account;
use crate::server::Response;

/// The prefix of every admin route.
pub const PREFIX: &str = "/_emulator/";

/// Answers admin route `route` (the path after [`PREFIX`]).
pub(crate) async fn handle(
    account: &Account,
    method: &http::Method,
    route: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    let params = match params(query, body) {
        Ok(params) => params,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let region = params.get("region").map(String::as_str);
    let is_post = method == http::Method::POST;
    let result = match (route.trim_end_matches('/'), is_post) {
        ("regions", false) => Ok(json!({ "regions": account.regions })),
        ("replication/pause", true) => account
            .pause_replication(region)
            .map(|regions| json!({ "paused": regions })),
        ("replication/resume", true) => account
            .resume_replication(region)
            .map(|regions| json!({ "resumed": regions })),
        ("replication/drain", true) => {
            account.drain_replications().await;
            Ok(json!({ "drained": true }))
        }
        ("split", true) => split(account, &params).await,
        ("requests/counts", false) => Ok(json!({ "counts": account.requests.counts() })),
        ("requests/log", false) => Ok(json!({ "requests": account.requests.log() })),
        ("requests/reset", true) => {
            account.requests.reset();
            Ok(json!({ "reset": true }))
        }
        (
            "regions" | "requests/counts" | "requests/log" | "replication/pause"
            | "replication/resume" | "replication/drain" | "split" | "requests/reset",
            _,
        ) => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "wrong method for this route",
            );
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no admin route {PREFIX}{route}"),
            );
        }
    };
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(e @ (Error::UnknownRegion { .. } | Error::Options(_))) => {
            error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
    }
}

async fn split(account: &Account, params: &HashMap<String, String>) -> Result<Value, Error> {
    let required = |name: &str| {
        params
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Options(format!("split needs `{name}`")))
    };
    let database = required("database")?;
    let container = required("container")?;
    let range = required("range")?
        .parse::<u32>()
        .map_err(|e| Error::Options(format!("range: {e}")))?;
    let lock = match params.get("lock_ms") {
        Some(ms) => Duration::from_millis(
            ms.parse()
                .map_err(|e| Error::Options(format!("lock_ms: {e}")))?,
        ),
        None => Duration::ZERO,
    };
    let children = account
        .split_partition(&database, &container, range, lock)
        .await?;
    Ok(json!({
        "database": database, "container": container, "range": range, "children": children
    }))
}

/// The route's parameters: the query string's, then a JSON object body's (strings or numbers).
fn params(query: Option<&str>, body: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut params = HashMap::new();
    if let Some(query) = query {
        let url = Url::parse(&format!("http://admin/?{query}")).map_err(|e| e.to_string())?;
        params.extend(
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        let Value::Object(object) =
            serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?
        else {
            return Err("body: expected a JSON object".to_owned());
        };
        for (key, value) in object {
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                other => return Err(format!("body: `{key}` is {other}, not a string or number")),
            };
            params.insert(key, value);
        }
    }
    Ok(params)
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_come_from_the_query_and_a_json_body() {
        let parsed = params(
            Some("region=West%20US&range=1"),
            br#"{"database":"shop","range":2}"#,
        )
        .unwrap();
        assert_eq!(parsed["region"], "West US");
        assert_eq!(parsed["database"], "shop");
        assert_eq!(parsed["range"], "2", "the body wins over the query");
        assert!(params(None, b"  \n").unwrap().is_empty());
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        assert!(params(None, b"[1]").unwrap_err().contains("JSON object"));
        assert!(
            params(None, br#"{"range":[1]}"#)
                .unwrap_err()
                .contains("range")
        );
        assert!(params(None, b"{").unwrap_err().starts_with("body:"));
    }
}
