//! What an SDK's request is: the account, a container, or an item operation, and which.
//!
//! Why from the wire: the sidecar sees HTTP only, from any SDK in any language. The gateway
//! protocol names the operation by verb, path and a few headers (the Cosmos REST API, as the
//! .NET, Java, Python and JavaScript SDKs send it):
//! - `GET /` reads the database account (its regional endpoints);
//! - `GET /dbs/{db}/colls/{coll}` reads the container (its `_rid` tells generations apart);
//! - under `/dbs/{db}/colls/{coll}/docs`: `GET …/docs/{id}` point read, `GET …/docs` read feed,
//!   `POST …/docs` create, or upsert (`x-ms-documentdb-is-upsert: True`), or query
//!   (`x-ms-documentdb-isquery: True` or `Content-Type: application/query+json`), or a
//!   transactional batch (`x-ms-cosmos-is-batch-request: True`); `PUT …/docs/{id}` replace;
//!   `PATCH …/docs/{id}` patch; `DELETE …/docs/{id}` delete. A query-plan request
//!   (`x-ms-cosmos-is-query-plan-request: True`, JavaScript) reads no items.
//!
//! Links by resource id (`/dbs/AbC=/colls/AbCdE=/…`) are classified the same way; the names
//! then are resource ids, which only ever match a container read made the same way.

use http::{HeaderMap, Method};

/// `x-ms-documentdb-partitionkey`: the partition key as a JSON array (`["user-1"]`).
pub const PARTITION_KEY: &str = "x-ms-documentdb-partitionkey";
/// `x-ms-session-token`: the session token sent with a request or returned by a response.
pub const SESSION_TOKEN: &str = "x-ms-session-token";
/// `x-ms-substatus`: the sub-status of an error answer (1002: read session not available).
pub const SUBSTATUS: &str = "x-ms-substatus";
/// `x-ms-content-path`: the resource id of the owner (the container, for items).
pub const CONTENT_PATH: &str = "x-ms-content-path";

/// A container, by the names (or resource ids) in the request's link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerLink {
    /// The database's name.
    pub database: String,
    /// The container's name.
    pub container: String,
}

/// What reads items: the token the broker has for the key may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// `GET …/docs/{id}`.
    Point,
    /// `POST …/docs` as a query.
    Query,
    /// `GET …/docs` (change feed or read feed).
    Feed,
}

/// What writes items: the response's token is recorded with PutToken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// `POST …/docs`.
    Create,
    /// `POST …/docs` with `x-ms-documentdb-is-upsert: True`.
    Upsert,
    /// `PUT …/docs/{id}`.
    Replace,
    /// `PATCH …/docs/{id}`.
    Patch,
    /// `DELETE …/docs/{id}`.
    Delete,
    /// `POST …/docs` with `x-ms-cosmos-is-batch-request: True`.
    Batch,
}

/// A request, as far as the sidecar cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the database account; its regional endpoints are rewritten.
    Account,
    /// `GET /dbs/{db}/colls/{coll}`: the container's properties (its `_rid`).
    ContainerRead(ContainerLink),
    /// A read of items in a container.
    Read(ContainerLink, ReadKind),
    /// A write of items in a container.
    Write(ContainerLink, WriteKind),
    /// Anything else: forwarded untouched.
    Other,
}

impl ReadKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Point => "read",
            Self::Query => "query",
            Self::Feed => "read_feed",
        }
    }
}

impl WriteKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Upsert => "upsert",
            Self::Replace => "replace",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Batch => "batch",
        }
    }
}

impl Route {
    /// The operation's name in metrics and spans: `account`, `container`, `read`, `query`,
    /// `read_feed`, `create`, `upsert`, `replace`, `patch`, `delete`, `batch` or `other`.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::ContainerRead(_) => "container",
            Self::Read(_, kind) => kind.as_str(),
            Self::Write(_, kind) => kind.as_str(),
            Self::Other => "other",
        }
    }
}

fn header_is_true(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn is_query(headers: &HeaderMap) -> bool {
    header_is_true(headers, "x-ms-documentdb-isquery")
        || headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/query+json"))
}

/// Classifies a request by its method, path (without the query string) and headers.
pub fn classify(method: &Method, path: &str, headers: &HeaderMap) -> Route {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return if method == Method::GET {
            Route::Account
        } else {
            Route::Other
        };
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    // Names as the application named them (`my db`, not `my%20db`): the scope and the policy
    // use them, as the Rust client does.
    let decode = |segment: &str| {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_or_else(|_| segment.to_owned(), |name| name.into_owned())
    };
    let link = |db: &str, coll: &str| ContainerLink {
        database: decode(db),
        container: decode(coll),
    };
    match parts.as_slice() {
        ["dbs", db, "colls", coll] if method == Method::GET => Route::ContainerRead(link(db, coll)),
        ["dbs", db, "colls", coll, "docs"] => {
            let link = link(db, coll);
            if method == Method::GET {
                Route::Read(link, ReadKind::Feed)
            } else if method == Method::POST {
                if header_is_true(headers, "x-ms-cosmos-is-query-plan-request") {
                    Route::Other
                } else if header_is_true(headers, "x-ms-cosmos-is-batch-request") {
                    Route::Write(link, WriteKind::Batch)
                } else if is_query(headers) {
                    Route::Read(link, ReadKind::Query)
                } else if header_is_true(headers, "x-ms-documentdb-is-upsert") {
                    Route::Write(link, WriteKind::Upsert)
                } else {
                    Route::Write(link, WriteKind::Create)
                }
            } else {
                Route::Other
            }
        }
        ["dbs", db, "colls", coll, "docs", _id] => {
            let link = link(db, coll);
            match *method {
                Method::GET => Route::Read(link, ReadKind::Point),
                Method::PUT => Route::Write(link, WriteKind::Replace),
                Method::PATCH => Route::Write(link, WriteKind::Patch),
                Method::DELETE => Route::Write(link, WriteKind::Delete),
                _ => Route::Other,
            }
        }
        _ => Route::Other,
    }
}

/// The partition key of a request, as compact JSON (`["user-1"]`, `["a",42]`): the broker key
/// the Rust client (`tokenbroker-cosmos`) uses for the same partition key, so services in any
/// language share tokens. `None` without the header or when it is not a JSON array.
pub fn partition_key(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(PARTITION_KEY)?.to_str().ok()?;
    let value: serde_json::Value = serde_json::from_str(raw).ok()?;
    value.is_array().then(|| ascii_json(&value.to_string()))
}

/// JSON with every character outside printable ASCII written `\uXXXX` (UTF-16 units,
/// lowercase hex), as `azure_data_cosmos` writes the partition key header: the same key for
/// `["é"]` whichever SDK sent it. Such characters only occur inside JSON strings, where the
/// escape means the same character.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && c != '\u{7f}' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// The sub-status of an answer (`x-ms-substatus`), if any.
pub fn substatus(headers: &HeaderMap) -> Option<u32> {
    headers.get(SUBSTATUS)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, http::HeaderValue::from_static(v));
        }
        map
    }

    fn link() -> ContainerLink {
        ContainerLink {
            database: "shop".into(),
            container: "orders".into(),
        }
    }

    #[test]
    fn classifies_every_item_operation() {
        let none = HeaderMap::new();
        let docs = "/dbs/shop/colls/orders/docs";
        let doc = "/dbs/shop/colls/orders/docs/o1";
        assert_eq!(classify(&Method::GET, "/", &none), Route::Account);
        assert_eq!(classify(&Method::GET, "", &none), Route::Account);
        assert_eq!(
            classify(&Method::GET, "/dbs/shop/colls/orders/", &none),
            Route::ContainerRead(link())
        );
        assert_eq!(
            classify(&Method::GET, doc, &none),
            Route::Read(link(), ReadKind::Point)
        );
        assert_eq!(
            classify(&Method::GET, docs, &none),
            Route::Read(link(), ReadKind::Feed)
        );
        assert_eq!(
            classify(&Method::POST, docs, &none),
            Route::Write(link(), WriteKind::Create)
        );
        assert_eq!(
            classify(
                &Method::POST,
                docs,
                &headers(&[("x-ms-documentdb-is-upsert", "True")])
            ),
            Route::Write(link(), WriteKind::Upsert)
        );
        assert_eq!(
            classify(
                &Method::POST,
                docs,
                &headers(&[("x-ms-documentdb-isquery", "True")])
            ),
            Route::Read(link(), ReadKind::Query)
        );
        assert_eq!(
            classify(
                &Method::POST,
                docs,
                &headers(&[("content-type", "application/query+json")])
            ),
            Route::Read(link(), ReadKind::Query)
        );
        assert_eq!(
            classify(
                &Method::POST,
                docs,
                &headers(&[("x-ms-cosmos-is-batch-request", "True")])
            ),
            Route::Write(link(), WriteKind::Batch)
        );
        assert_eq!(
            classify(
                &Method::POST,
                docs,
                &headers(&[
                    ("x-ms-cosmos-is-query-plan-request", "True"),
                    ("x-ms-documentdb-isquery", "True")
                ])
            ),
            Route::Other,
            "a query plan reads no items"
        );
        assert_eq!(
            classify(&Method::PUT, doc, &none),
            Route::Write(link(), WriteKind::Replace)
        );
        assert_eq!(
            classify(&Method::PATCH, doc, &none),
            Route::Write(link(), WriteKind::Patch)
        );
        assert_eq!(
            classify(&Method::DELETE, doc, &none),
            Route::Write(link(), WriteKind::Delete)
        );
        assert_eq!(
            classify(&Method::GET, "/dbs/shop/colls/orders/pkranges", &none),
            Route::Other
        );
        assert_eq!(classify(&Method::GET, "/dbs/shop", &none), Route::Other);
        assert_eq!(
            classify(&Method::GET, "/dbs/my%20shop/colls/or%C3%A9/docs/x", &none),
            Route::Read(
                ContainerLink {
                    database: "my shop".into(),
                    container: "oré".into(),
                },
                ReadKind::Point
            ),
            "names percent-decoded"
        );
        assert_eq!(
            classify(&Method::POST, "/dbs/shop/colls/orders/sprocs/s/x", &none),
            Route::Other
        );
    }

    #[test]
    fn the_partition_key_is_compact_json() {
        assert_eq!(
            partition_key(&headers(&[(PARTITION_KEY, "[\"user-1\"]")])).as_deref(),
            Some(r#"["user-1"]"#)
        );
        assert_eq!(
            partition_key(&headers(&[(PARTITION_KEY, "[ \"a\", 42 ]")])).as_deref(),
            Some(r#"["a",42]"#)
        );
        assert_eq!(
            partition_key(&headers(&[(PARTITION_KEY, "[\"\\u00e9\\ud83d\\ude00\"]")])).as_deref(),
            Some(r#"["\u00e9\ud83d\ude00"]"#),
            "non-ASCII as the Rust SDK writes it"
        );
        assert_eq!(partition_key(&headers(&[(PARTITION_KEY, "\"a\"")])), None);
        assert_eq!(partition_key(&headers(&[(PARTITION_KEY, "[")])), None);
        assert_eq!(partition_key(&HeaderMap::new()), None);
    }

    #[test]
    fn reads_the_substatus() {
        assert_eq!(substatus(&headers(&[(SUBSTATUS, "1002")])), Some(1002));
        assert_eq!(substatus(&headers(&[(SUBSTATUS, "x")])), None);
    }
}
