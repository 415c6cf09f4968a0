//! The HTTP front of one region: turns each request into the emulator's request for that
//! region's URL, smooths the answer (see `quirks`), records it, and sends it back.
//!
//! Why a front per region rather than one port: the emulator tells regions apart by the URL a
//! request was sent to, and the SDKs call each region on the endpoint the account lists, so each
//! region needs an endpoint of its own. HTTP/1.1 serves the Python and JavaScript SDKs; HTTP/2
//! with prior knowledge is also accepted because the Rust SDK probes it first.

use std::convert::Infallible;
use std::sync::Arc;

use azure_core::http::{Method, Request, Url};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::account::Account;
use crate::admin;
use crate::quirks::{self, SESSION_TOKEN};
use crate::requests::LoggedRequest;

/// A response as the front sends it.
pub(crate) type Response = http::Response<Full<Bytes>>;

/// One region's listener and what it serves.
pub(crate) struct RegionFront {
    pub(crate) account: Arc<Account>,
    /// The region's name.
    pub(crate) name: String,
    /// Its base URL without the trailing slash (`http://127.0.0.1:PORT`), as configured in the
    /// emulator.
    pub(crate) base: String,
}

/// Accepts connections until `shutdown` turns true; the connections end with the task (their
/// set is dropped, which aborts them).
pub(crate) async fn serve(
    listener: TcpListener,
    front: Arc<RegionFront>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let front = Arc::clone(&front);
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let front = Arc::clone(&front);
                            async move { Ok::<_, Infallible>(front.handle(request).await) }
                        });
                        let builder = auto::Builder::new(TokioExecutor::new());
                        if let Err(error) =
                            builder.serve_connection(TokioIo::new(stream), service).await
                        {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "accept failed"),
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

impl RegionFront {
    async fn handle(&self, request: http::Request<Incoming>) -> Response {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the body: {error}"),
                );
            }
        };
        let path = parts.uri.path();
        if let Some(route) = path.strip_prefix(admin::PREFIX) {
            return admin::handle(
                &self.account,
                &parts.method,
                route,
                parts.uri.query(),
                &body,
            )
            .await;
        }
        let response = self.forward(&parts, body).await;
        self.account.requests.record(LoggedRequest {
            region: self.name.clone(),
            method: parts.method.to_string(),
            path: path.to_owned(),
            status: response.status().as_u16(),
            substatus: header(response.headers(), "x-ms-substatus")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            request_session_token: header(&parts.headers, SESSION_TOKEN),
            response_session_token: header(response.headers(), SESSION_TOKEN),
        });
        response
    }

    /// Sends the request to the emulator as a request to this region's URL.
    async fn forward(&self, parts: &http::request::Parts, body: Bytes) -> Response {
        let path = quirks::strip_trailing_slash(parts.uri.path());
        let url = match parts.uri.query() {
            Some(query) => format!("{}{path}?{query}", self.base),
            None => format!("{}{path}", self.base),
        };
        let Some(method) = method(&parts.method) else {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not supported");
        };
        let url = match Url::parse(&url) {
            Ok(url) => url,
            Err(error) => return text(StatusCode::BAD_REQUEST, &format!("{url}: {error}")),
        };
        let mut request = Request::new(url, method);
        for name in parts.headers.keys() {
            let values: Vec<&str> = parts
                .headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect();
            request
                .headers_mut()
                .insert(name.as_str().to_owned(), values.join(","));
        }
        if !body.is_empty() {
            request.set_body(body.to_vec());
        }
        let raw = match self.emulator_call(&request).await {
            Ok(raw) => raw,
            Err(response) => return response,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in raw.headers().iter() {
            let value = if name.as_str() == SESSION_TOKEN {
                quirks::normalise_session_token(value.as_str())
            } else {
                value.as_str().to_owned()
            };
            insert(&mut headers, name.as_str(), &value);
        }
        if let Some((database, container)) = quirks::container_owner(path)
            && !headers.contains_key(quirks::CONTENT_PATH)
            && let Some(rid) = self.container_rid(database, container).await
        {
            for (name, value) in quirks::owner_headers(database, container, &rid) {
                insert(&mut headers, &name, &value);
            }
        }
        // hyper frames the body itself.
        headers.remove(http::header::CONTENT_LENGTH);
        headers.remove(http::header::TRANSFER_ENCODING);
        let mut response =
            http::Response::new(Full::new(Bytes::copy_from_slice(raw.body().as_ref())));
        *response.status_mut() =
            StatusCode::from_u16(u16::from(raw.status())).unwrap_or(StatusCode::BAD_GATEWAY);
        *response.headers_mut() = headers;
        response
    }

    /// The emulator's buffered answer, or the response for a request it could not route (a
    /// region taken offline: 503, as a client would see a refused connection).
    async fn emulator_call(
        &self,
        request: &Request,
    ) -> Result<azure_core::http::RawResponse, Response> {
        let response = self
            .account
            .emulator
            .execute_request(request)
            .await
            .map_err(|e| text(StatusCode::SERVICE_UNAVAILABLE, &format!("emulator: {e}")))?;
        response.try_into_raw_response().await.map_err(|e| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("emulator body: {e}"),
            )
        })
    }

    /// The container's `_rid`, read from the emulator in this region (not recorded). Read on
    /// each request rather than cached: a container deleted and created again under the same name
    /// has a new `_rid`, and in-memory reads cost microseconds.
    async fn container_rid(&self, database: &str, container: &str) -> Option<String> {
        let url = Url::parse(&format!("{}/dbs/{database}/colls/{container}", self.base)).ok()?;
        let raw = self
            .emulator_call(&Request::new(url, Method::Get))
            .await
            .ok()?;
        if !raw.status().is_success() {
            return None;
        }
        let body: serde_json::Value = serde_json::from_slice(raw.body().as_ref()).ok()?;
        body.get("_rid")?.as_str().map(str::to_owned)
    }
}

fn method(method: &http::Method) -> Option<Method> {
    Some(match *method {
        http::Method::GET => Method::Get,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::PATCH => Method::Patch,
        http::Method::DELETE => Method::Delete,
        http::Method::HEAD => Method::Head,
        _ => return None,
    })
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    match (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        (Ok(name), Ok(value)) => {
            headers.insert(name, value);
        }
        _ => tracing::warn!(name, value, "dropping a response header HTTP cannot carry"),
    }
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, message: &str) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(message.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
