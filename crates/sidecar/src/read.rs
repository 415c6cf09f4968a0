//! Brokered reads: point reads, and queries and read feeds with a partition key.
//!
//! Why each step:
//! - The broker's token for the target range is merged into the application's own
//!   ([`crate::read_token`]); the request body is kept (queries are small; a larger one goes
//!   ahead without the broker) so that the read can be repeated.
//! - **A 404/1002 is repeated in the write region**, whoever's token it was: a lagging read
//!   region answers 404/1002 for a token ahead of it, and the write region has every
//!   acknowledged write. The JavaScript SDK 4.9.3 answers 404/1002 by retrying the same region
//!   without any token and returns a stale 404 (measured on the emulator: 200 of 200 reads
//!   stale); Python retries in the write region itself, which this step spares it.
//! - **A token the upstream cannot serve never reaches the application**: if a read that
//!   carried the broker's token is still answered 404/1002, or 400 (400/1024 after a
//!   recreation, or any 400 the added token may have caused), it is repeated with the
//!   application's own header, that answer is returned, and, if that read was served, the
//!   broker's token is discarded (DiscardToken, in the background, so the answer is not
//!   delayed). A read repeated in the write region that fails or takes over 5 s gives way to
//!   the region's own answer.
//! - **First contact**: a pod whose SDK has not read the container yet (JavaScript reads items
//!   first) has no scope for it. The read goes ahead with the application's token; its answer
//!   names the container's generation (`x-ms-content-path`) and the range; if the broker then
//!   holds a token for that range that the answer's own token does not cover, the answer may be
//!   stale, and the read is made again, brokered. One extra round trip, once per container per
//!   sidecar.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use session_token::SessionToken;

use crate::handlers::{broker_key, learn, session_not_available};
use crate::policy::Mode;
use crate::proxy::{Shared, bad_gateway, to_app};
use crate::read_token::compose;
use crate::route::{self, ContainerLink, SESSION_TOKEN};
use crate::upstream::{Body, full, stream};

/// The most a read repeated in the write region may take.
const WRITE_REGION_REPLAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One read, as the application sent it (body kept).
struct Read<'a> {
    shared: &'a Arc<Shared>,
    base: &'a str,
    parts: Parts,
    path: &'a str,
    body: Bytes,
    link: &'a ContainerLink,
    partition_key: Option<String>,
}

impl Read<'_> {
    /// Sends the read with `headers` to `base`; a 404/1002 is repeated in the write region.
    async fn send(&self, headers: &HeaderMap) -> Result<Response<Incoming>, Response<Body>> {
        let response = self
            .shared
            .send(
                self.base,
                &self.parts.method,
                self.path,
                headers,
                full(self.body.clone()),
            )
            .await?;
        if !session_not_available(&response) {
            return Ok(response);
        }
        let write = self
            .shared
            .write_endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(write) = write.filter(|w| w.as_str() != self.base) else {
            return Ok(response);
        };
        self.shared.metrics.write_region_replays.increment(1);
        // An attempt the application did not ask for: bounded, and if it fails the region's
        // own answer is returned (the SDK then retries as it would without the sidecar).
        let replay = self.shared.send(
            &write,
            &self.parts.method,
            self.path,
            headers,
            full(self.body.clone()),
        );
        match tokio::time::timeout(WRITE_REGION_REPLAY_TIMEOUT, replay).await {
            Ok(Ok(replayed)) => Ok(replayed),
            _ => {
                tracing::warn!(write_region = %write, "the read repeated in the write region failed: the region's 404/1002 is returned");
                Ok(response)
            }
        }
    }

    fn learn(&self, headers: &HeaderMap) -> Option<String> {
        learn(
            self.shared,
            self.link,
            self.partition_key.as_deref(),
            headers,
        )
    }

    fn app_token(&self) -> Option<String> {
        self.parts
            .headers
            .get(SESSION_TOKEN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// Answers a read of items in `link`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read(
    shared: &Arc<Shared>,
    base: &str,
    parts: Parts,
    path: &str,
    body: Incoming,
    link: &ContainerLink,
    session: Option<String>,
) -> Response<Body> {
    let mode = shared.policy.mode(&link.database, &link.container);
    let partition_key = route::partition_key(&parts.headers);
    let key = broker_key(mode, session.as_deref(), partition_key.as_deref());
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let small = parts.method == http::Method::GET
        || declared.is_some_and(|n| n <= shared.max_replay_body_bytes);
    let (Some(key), false, true) = (key, mode == Mode::PassThrough, small) else {
        if mode != Mode::PassThrough {
            shared.metrics.unscoped.increment(1);
        }
        let response = match shared
            .send(base, &parts.method, path, &parts.headers, stream(body))
            .await
        {
            Ok(response) => response,
            Err(response) => return response,
        };
        if mode != Mode::PassThrough {
            learn(shared, link, partition_key.as_deref(), response.headers());
        }
        return to_app(response);
    };
    let body = match Limited::new(body, shared.max_replay_body_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let mut response = bad_gateway(&format!("reading the request: {error}"));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let read = Read {
        shared,
        base,
        parts,
        path,
        body,
        link,
        partition_key,
    };
    match shared.learned.scope(link) {
        Some(scope) => brokered(&read, scope, key).await,
        None => first_contact(&read, key).await,
    }
}

/// The read of a pod that does not know the container's generation yet.
async fn first_contact(read: &Read<'_>, key: String) -> Response<Body> {
    read.shared.metrics.unscoped.increment(1);
    let response = match read.send(&read.parts.headers).await {
        Ok(response) => response,
        Err(response) => return response,
    };
    let Some(scope) = read.learn(response.headers()) else {
        return to_app(response);
    };
    let status = response.status();
    let answered = status.is_success()
        || (status == StatusCode::NOT_FOUND && !session_not_available(&response));
    let answered_token = response
        .headers()
        .get(SESSION_TOKEN)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| SessionToken::parse(t).ok());
    let (true, Some(answered_token)) = (answered, answered_token) else {
        return to_app(response);
    };
    let target = read
        .partition_key
        .as_deref()
        .and_then(|pk| read.shared.learned.range(&scope, pk));
    let Some(target) = target else {
        return to_app(response);
    };
    let broker = read
        .shared
        .broker
        .token_for_read(&scope, &key, std::slice::from_ref(&target))
        .await
        .and_then(|t| SessionToken::parse(&t).ok())
        .and_then(|t| t.filter(&[target.as_str()]));
    match broker {
        Some(broker) if !broker.is_covered_by(&answered_token) => {
            tracing::debug!(%scope, "first read of the container here answered behind the broker: read again, brokered");
            brokered(read, scope, key).await
        }
        _ => to_app(response),
    }
}

/// The read with the broker's token for the target range merged in.
async fn brokered(read: &Read<'_>, scope: String, key: String) -> Response<Body> {
    let shared = read.shared;
    let app_token = read.app_token();
    let target = read
        .partition_key
        .as_deref()
        .and_then(|pk| shared.learned.range(&scope, pk));
    let ranges: Vec<String> = target.iter().cloned().collect();
    let composed = match shared.broker.token_for_read(&scope, &key, &ranges).await {
        Some(broker) => compose(app_token.as_deref(), &broker, target.as_deref()),
        None => None,
    };
    let with_broker = composed.and_then(|c| {
        let value = HeaderValue::from_str(&c.header).ok()?;
        let mut headers = read.parts.headers.clone();
        headers.insert(SESSION_TOKEN, value);
        Some((c, headers))
    });
    let Some((composed, headers)) = with_broker else {
        shared.metrics.reads_without_broker_token.increment(1);
        let response = match read.send(&read.parts.headers).await {
            Ok(response) => response,
            Err(response) => return response,
        };
        read.learn(response.headers());
        return to_app(response);
    };
    shared.metrics.broker_tokens_added.increment(1);
    let response = match read.send(&headers).await {
        Ok(response) => response,
        Err(response) => return response,
    };
    let unservable =
        session_not_available(&response) || response.status() == StatusCode::BAD_REQUEST;
    if !unservable {
        read.learn(response.headers());
        return to_app(response);
    }
    if response.status() == StatusCode::BAD_REQUEST
        && route::substatus(response.headers()) == Some(1024)
    {
        // CollectionRidMismatch: the container was recreated; learn its generation again.
        shared.learned.forget_rid(read.link);
    }
    shared.metrics.fallback_reads.increment(1);
    let failed_status = response.status();
    let response = match read.send(&read.parts.headers).await {
        Ok(response) => response,
        Err(response) => return response,
    };
    read.learn(response.headers());
    // The broker's token is to blame only if the same read without it was served (as
    // docs/clients.md has every language do): a malformed query fails both ways.
    let status = response.status();
    let served = status.is_success()
        || status == StatusCode::CONFLICT
        || status == StatusCode::PRECONDITION_FAILED
        || (status == StatusCode::NOT_FOUND && !session_not_available(&response));
    if served {
        tracing::warn!(%scope, token = %composed.from_broker, status = %failed_status, "the upstream could not serve the broker's token: read again without it, token discarded");
        let discard = (Arc::clone(shared), scope, key, composed.from_broker);
        tokio::spawn(async move {
            let (shared, scope, key, token) = discard;
            shared.broker.report_unservable(&scope, &key, &token).await;
        });
    }
    to_app(response)
}
