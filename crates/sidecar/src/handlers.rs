//! What the sidecar does with each kind of request: rewrite the account's endpoints, learn the
//! container's generation, add the broker's token to reads, record writes' tokens.
//!
//! Why each step is where it is:
//! - **Writes** record the response's token with PutToken *before* the application sees the
//!   response: the application may answer its own caller next, and that caller's next read may
//!   land on another pod. Recorded for 2xx, 409, 412 and 404 other than 1002, the answers the
//!   SDKs capture tokens from. The broker client has a deadline and a breaker, so a broker in
//!   trouble costs the write at most `sidecar.broker_deadline`, never its result.
//! - **Reads** (point reads; queries and read feeds with a partition key) ask the broker for the
//!   key's token and send it merged with the application's own ([`crate::read_token`]).
//! - **Unservable tokens never reach the application**: if the upstream answers a read that
//!   carried the broker's token with 404/1002 (read session not available), the read is first
//!   repeated in the write region, which has every acknowledged write (a lagging read region
//!   answers 404/1002 for a token ahead of it: the JavaScript SDK 4.9.3 would then retry in the
//!   same region without a token and return a stale 404; Python retries in the write region).
//!   If that also fails, or the answer was a 400 (400/1024 after a recreation, or any 400 the
//!   added token may have caused), the read is repeated with the application's own header, that
//!   answer is returned, and the broker's token is discarded (DiscardToken, in the background).

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::account;
use crate::policy::Mode;
use crate::proxy::{Shared, bad_gateway, to_app};
use crate::route::{self, CONTENT_PATH, ContainerLink, Route, SESSION_TOKEN, classify};
use crate::upstream::{Body, full, stream};

/// Largest account or container response the sidecar reads whole (they are a few kB).
const MAX_METADATA_BYTES: usize = 4 * 1024 * 1024;

/// Answers one request of the application, forwarded to `base`.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    base: &str,
    request: http::Request<Incoming>,
) -> Response<Body> {
    let route = classify(request.method(), request.uri().path(), request.headers());
    let span = tracing::info_span!(
        "sidecar.request",
        http.request.method = %request.method(),
        operation = route.operation(),
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(parent) = shared.span_parent.get() {
        parent(&span, request.headers());
    }
    let response = dispatch(shared, base, request, route)
        .instrument(span.clone())
        .await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    response
}

async fn dispatch(
    shared: Arc<Shared>,
    base: &str,
    request: http::Request<Incoming>,
    route: Route,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    shared.metrics.count(&route);
    let session = parts
        .headers
        .remove(&shared.session_header)
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .filter(|s| !s.is_empty());
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match route {
        Route::Account => account_read(&shared, base, parts, &path, body).await,
        Route::ContainerRead(link) => {
            container_read(&shared, base, parts, &path, body, &link).await
        }
        Route::Read(link, _) => {
            crate::read::read(&shared, base, parts, &path, body, &link, session).await
        }
        Route::Write(link, _) => write(&shared, base, &parts, &path, body, &link, session).await,
        Route::Other => forward(&shared, base, &parts, &path, stream(body)).await,
    }
}

pub(crate) async fn forward(
    shared: &Shared,
    base: &str,
    parts: &Parts,
    path: &str,
    body: Body,
) -> Response<Body> {
    match shared
        .send(base, &parts.method, path, &parts.headers, body)
        .await
    {
        Ok(response) => to_app(response),
        Err(response) => response,
    }
}

/// A response whose body was read whole, with its length set.
fn buffered(mut parts: http::response::Parts, bytes: Bytes) -> Response<Body> {
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Response::from_parts(parts, full(bytes))
}

/// Sends a metadata request and reads a 200 answer whole; any other answer (or a failure) is
/// returned as the application's response.
async fn fetch_whole(
    shared: &Shared,
    base: &str,
    parts: &Parts,
    path: &str,
    body: Incoming,
) -> Result<(http::response::Parts, Bytes), Response<Body>> {
    let response = match shared
        .send(base, &parts.method, path, &parts.headers, stream(body))
        .await
    {
        Ok(response) if response.status() == StatusCode::OK => response,
        Ok(response) => return Err(to_app(response)),
        Err(response) => return Err(response),
    };
    let (parts, body) = response.into_parts();
    match Limited::new(body, MAX_METADATA_BYTES).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(error) => Err(bad_gateway(&format!(
            "reading the upstream's answer: {error}"
        ))),
    }
}

async fn account_read(
    shared: &Arc<Shared>,
    base: &str,
    mut parts: Parts,
    path: &str,
    body: Incoming,
) -> Response<Body> {
    // The body is rewritten: ask for it uncompressed.
    parts.headers.remove(http::header::ACCEPT_ENCODING);
    let (parts, bytes) = match fetch_whole(shared, base, &parts, path, body).await {
        Ok(whole) => whole,
        Err(response) => return response,
    };
    let Ok(mut document) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        tracing::warn!("the account response is not JSON: forwarded as it is");
        return buffered(parts, bytes);
    };
    let mut local = std::collections::HashMap::new();
    for endpoint in account::endpoints(&document) {
        if let Some(url) = shared.local_url_for(&endpoint).await {
            local.insert(endpoint, url);
        }
    }
    if let Some(write) = account::write_endpoint(&document) {
        *shared
            .write_endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(write);
    }
    account::rewrite(&mut document, |endpoint| local.get(endpoint).cloned());
    match serde_json::to_vec(&document) {
        Ok(rewritten) => buffered(parts, rewritten.into()),
        Err(_) => buffered(parts, bytes),
    }
}

async fn container_read(
    shared: &Shared,
    base: &str,
    mut parts: Parts,
    path: &str,
    body: Incoming,
    link: &ContainerLink,
) -> Response<Body> {
    // The body is read for its `_rid`: ask for it uncompressed.
    parts.headers.remove(http::header::ACCEPT_ENCODING);
    let (parts, bytes) = match fetch_whole(shared, base, &parts, path, body).await {
        Ok(whole) => whole,
        Err(response) => return response,
    };
    let rid = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("_rid").and_then(|r| r.as_str()).map(str::to_owned));
    if let Some(rid) = rid
        && shared.learned.learn_rid(link, &rid)
    {
        tracing::info!(database = %link.database, container = %link.container, %rid, "container generation learned");
    }
    buffered(parts, bytes)
}

/// The broker key of an operation under `mode`.
pub(crate) fn broker_key(
    mode: Mode,
    session: Option<&str>,
    partition_key: Option<&str>,
) -> Option<String> {
    match (mode, session) {
        (Mode::Session, Some(session)) => Some(format!("session:{session}")),
        _ => partition_key.map(str::to_owned),
    }
}

/// Learns the container's generation and the key's range from an item response; returns the
/// scope of the generation that answered, if known.
pub(crate) fn learn(
    shared: &Shared,
    link: &ContainerLink,
    partition_key: Option<&str>,
    headers: &HeaderMap,
) -> Option<String> {
    if let Some(rid) = headers.get(CONTENT_PATH).and_then(|v| v.to_str().ok()) {
        shared.learned.learn_rid(link, rid);
    }
    let scope = shared.learned.scope(link)?;
    if let (Some(pk), Some(token)) = (
        partition_key,
        headers.get(SESSION_TOKEN).and_then(|v| v.to_str().ok()),
    ) {
        shared.learned.learn_range(&scope, pk, token);
    }
    Some(scope)
}

/// 404/1002: the region cannot serve the token (yet).
pub(crate) fn session_not_available(response: &Response<Incoming>) -> bool {
    response.status() == StatusCode::NOT_FOUND && route::substatus(response.headers()) == Some(1002)
}

async fn write(
    shared: &Shared,
    base: &str,
    parts: &Parts,
    path: &str,
    body: Incoming,
    link: &ContainerLink,
    session: Option<String>,
) -> Response<Body> {
    let mode = shared.policy.mode(&link.database, &link.container);
    let response = match shared
        .send(base, &parts.method, path, &parts.headers, stream(body))
        .await
    {
        Ok(response) => response,
        Err(response) => return response,
    };
    if mode == Mode::PassThrough {
        return to_app(response);
    }
    let status = response.status();
    let captured = status.is_success()
        || status == StatusCode::CONFLICT
        || status == StatusCode::PRECONDITION_FAILED
        || (status == StatusCode::NOT_FOUND && !session_not_available(&response));
    let token = response
        .headers()
        .get(SESSION_TOKEN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (Some(token), true) = (token, captured) else {
        return to_app(response);
    };
    let partition_key = route::partition_key(&parts.headers);
    let scope = learn(shared, link, partition_key.as_deref(), response.headers());
    let key = broker_key(mode, session.as_deref(), partition_key.as_deref());
    let (Some(scope), Some(key)) = (scope, key) else {
        shared.metrics.unscoped.increment(1);
        tracing::debug!(database = %link.database, container = %link.container, "write not recorded: container generation or key unknown");
        return to_app(response);
    };
    if shared.broker.record_write(&scope, &key, &token).await {
        shared.metrics.puts_recorded.increment(1);
    } else {
        shared.metrics.puts_failed.increment(1);
    }
    to_app(response)
}
