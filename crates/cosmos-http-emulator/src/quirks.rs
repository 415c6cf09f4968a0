//! The three places where the in-memory emulator and the HTTP SDKs disagree, each smoothed by
//! one small function.
//!
//! Why here and nowhere else: the emulator was written for the Rust SDK, which calls it in
//! process; the Python and JavaScript SDKs reach it over HTTP and trip on details the real service
//! gets right. Each fix is a property of this test front, not a product rule: a proxy in front of
//! the real service must forward paths and headers byte for byte.

/// The `x-ms-alt-content-path` response header: the owner resource by name
/// (`dbs/{db}/colls/{coll}`).
pub const ALT_CONTENT_PATH: &str = "x-ms-alt-content-path";
/// The `x-ms-content-path` response header: the owner resource's `_rid`.
pub const CONTENT_PATH: &str = "x-ms-content-path";
/// The session token header, on requests and responses.
pub const SESSION_TOKEN: &str = "x-ms-session-token";

/// The request path with its trailing slash removed (`/` itself is kept).
///
/// Why: the Python SDK sends `GET /dbs/shop/colls/orders/`, `.../docs/a/` and `.../pkranges/`;
/// the real gateway accepts them, the emulator answers 400.
pub fn strip_trailing_slash(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

/// The container that owns the resource at `path`, as `(database, container)` path segments,
/// when the path names something inside a container (items, partition key ranges, stored
/// procedures...), not the container itself.
///
/// Why: responses for such resources must name their owner (see [`owner_headers`]); the segments
/// are kept as the client sent them (percent-encoded if it encoded them).
pub fn container_owner(path: &str) -> Option<(&str, &str)> {
    let mut segments = strip_trailing_slash(path)
        .trim_start_matches('/')
        .split('/');
    let (Some("dbs"), Some(db), Some("colls"), Some(coll), Some(_)) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return None;
    };
    if db.is_empty() || coll.is_empty() {
        return None;
    }
    Some((db, coll))
}

/// The owner headers the real service puts on a response for a resource inside a container:
/// `x-ms-alt-content-path: dbs/{db}/colls/{coll}` and `x-ms-content-path: {container _rid}`.
///
/// Why: the emulator omits both. The Python SDK keeps no session token from a response without
/// `x-ms-alt-content-path`, the JavaScript SDK none without `x-ms-content-path`; both then read
/// without a token and the test measures nothing.
pub fn owner_headers(
    database: &str,
    container: &str,
    container_rid: &str,
) -> [(String, String); 2] {
    [
        (
            ALT_CONTENT_PATH.to_owned(),
            format!("dbs/{database}/colls/{container}"),
        ),
        (CONTENT_PATH.to_owned(), container_rid.to_owned()),
    ]
}

/// A session token header value with each vector segment cut to `range:version#globalLSN`;
/// simple segments and anything that does not look like a token are kept unchanged.
///
/// Why: on a single-write account the emulator names the serving region in its tokens
/// (`1:0#1#0=1` from East US, `1:0#0#1=0` from West US), so two tokens of one range carry
/// different region sets, which the Python and JavaScript SDKs refuse to merge ("compared session
/// tokens ... have unexpected regions"). The real service's single-write tokens name the same
/// region set in every region. The emulator's session check compares only the version and the
/// global LSN, so dropping the region part changes no answer.
pub fn normalise_session_token(value: &str) -> String {
    value
        .split(',')
        .map(normalise_segment)
        .collect::<Vec<_>>()
        .join(",")
}

fn normalise_segment(segment: &str) -> &str {
    let Some(colon) = segment.find(':') else {
        return segment;
    };
    // `range:version#global` is everything before the token's second '#'.
    let mut hashes = segment[colon + 1..].match_indices('#').map(|(i, _)| i);
    match (hashes.next(), hashes.next()) {
        (Some(_), Some(second)) => &segment[..colon + 1 + second],
        _ => segment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slashes_are_stripped_but_root_is_kept() {
        assert_eq!(
            strip_trailing_slash("/dbs/shop/colls/orders/"),
            "/dbs/shop/colls/orders"
        );
        assert_eq!(
            strip_trailing_slash("/dbs/shop/colls/orders/docs/a/"),
            "/dbs/shop/colls/orders/docs/a"
        );
        assert_eq!(strip_trailing_slash("/dbs/shop"), "/dbs/shop");
        assert_eq!(strip_trailing_slash("/"), "/");
        assert_eq!(strip_trailing_slash("//"), "/");
    }

    #[test]
    fn resources_inside_a_container_have_an_owner() {
        assert_eq!(
            container_owner("/dbs/shop/colls/orders/docs/a"),
            Some(("shop", "orders"))
        );
        assert_eq!(
            container_owner("/dbs/shop/colls/orders/docs"),
            Some(("shop", "orders"))
        );
        assert_eq!(
            container_owner("/dbs/shop/colls/orders/pkranges/"),
            Some(("shop", "orders"))
        );
        assert_eq!(
            container_owner("/dbs/my%20db/colls/o/docs"),
            Some(("my%20db", "o"))
        );
    }

    #[test]
    fn the_container_and_what_is_above_it_have_no_container_owner() {
        assert_eq!(container_owner("/dbs/shop/colls/orders"), None);
        assert_eq!(container_owner("/dbs/shop/colls/orders/"), None);
        assert_eq!(container_owner("/dbs/shop/colls"), None);
        assert_eq!(container_owner("/dbs/shop"), None);
        assert_eq!(container_owner("/"), None);
        assert_eq!(container_owner("/offers/x/y/z/w"), None);
        assert_eq!(container_owner("/dbs//colls/o/docs"), None);
    }

    #[test]
    fn owner_headers_name_the_container_by_path_and_by_rid() {
        let [alt, rid] = owner_headers("shop", "orders", "AbCdAA==");
        assert_eq!(
            alt,
            (
                ALT_CONTENT_PATH.to_owned(),
                "dbs/shop/colls/orders".to_owned()
            )
        );
        assert_eq!(rid, (CONTENT_PATH.to_owned(), "AbCdAA==".to_owned()));
    }

    #[test]
    fn vector_tokens_lose_their_region_part() {
        assert_eq!(normalise_session_token("1:0#1#0=1"), "1:0#1");
        assert_eq!(normalise_session_token("1:0#0#1=0"), "1:0#0");
        assert_eq!(normalise_session_token("0:2#57#0=9#1=3"), "0:2#57");
        assert_eq!(
            normalise_session_token("0:0#2#0=2,3:1#7#1=4"),
            "0:0#2,3:1#7"
        );
    }

    #[test]
    fn tokens_without_regions_and_odd_values_are_kept() {
        assert_eq!(normalise_session_token("0:0#5"), "0:0#5");
        assert_eq!(normalise_session_token("0:-1#5"), "0:-1#5");
        assert_eq!(normalise_session_token("M:12"), "M:12");
        assert_eq!(normalise_session_token("not a token"), "not a token");
        assert_eq!(normalise_session_token(""), "");
    }
}
