//! A table of bad inputs: each gets INVALID_ARGUMENT naming the field and the reason, and the
//! stored token survives all of them unchanged.

use tokenbroker_proto::v1::{
    DiscardTokenRequest, GetTokenRequest, MergeTokenRequest, PutTokenRequest,
};
use tonic::Code;

use crate::support::{TestBroker, settings};

const SCOPE: &str = "acct/db/c";
const KEY: &str = "k";
const STORED: &str = "0:1#10#1=5";

fn put(scope: &str, key: &str, token: &str) -> PutTokenRequest {
    PutTokenRequest {
        scope: scope.into(),
        key: key.into(),
        session_token: token.into(),
    }
}

#[tokio::test]
async fn bad_puts_are_invalid_argument_with_field_and_reason() {
    let mut s = settings();
    s.limits.max_scope_bytes = 32;
    s.limits.max_key_bytes = 16;
    s.limits.max_token_bytes = 200;
    s.limits.max_segments = 4;
    let broker = TestBroker::start(s).await;
    let mut c = broker.client().await;
    c.put_token(put(SCOPE, KEY, STORED)).await.unwrap();

    let long_scope = "s".repeat(33);
    let long_key = "k".repeat(17);
    let long_token = format!("0:1#{}", "1".repeat(200));
    let five_segments = "0:1#1,1:1#1,2:1#1,3:1#1,4:1#1";
    let over_i64 = format!("0:1#{}", u64::MAX);
    let cases: Vec<(PutTokenRequest, &str)> = vec![
        (put("", KEY, STORED), "scope: is required"),
        (
            put(&long_scope, KEY, STORED),
            "scope: is 33 bytes, more than the limit of 32",
        ),
        (put(SCOPE, "", STORED), "key: is required"),
        (
            put(SCOPE, &long_key, STORED),
            "key: is 17 bytes, more than the limit of 16",
        ),
        (
            put(SCOPE, "a\nb", STORED),
            "key: contains a control character",
        ),
        (put(SCOPE, KEY, ""), "session_token: is required"),
        (
            put(SCOPE, KEY, &long_token),
            "session_token: is 204 bytes, more than the limit of 200",
        ),
        (
            put(SCOPE, KEY, five_segments),
            "session_token: has 5 segments, more than the limit of 4",
        ),
        (
            put(SCOPE, KEY, "0:1#10 #1=5"),
            "session_token: session token contains whitespace at byte 6",
        ),
        (
            put(SCOPE, KEY, "1#10#1=5"),
            "has no ':' between pkRangeId and token",
        ),
        (put(SCOPE, KEY, "0/1:1#10"), "pkRangeId contains '/'"),
        (put(SCOPE, KEY, "0:v1#10"), "version \"v1\" is not a number"),
        (put(SCOPE, KEY, "0:1#"), "global LSN is empty"),
        (
            put(SCOPE, KEY, "0:1#10#"),
            "region entry is empty (a trailing or doubled '#')",
        ),
        (
            put(SCOPE, KEY, "0:1#10#1"),
            "region \"1\" has no '=' between region id and LSN",
        ),
        (
            put(SCOPE, KEY, "0:1#10#x=5"),
            "region id \"x\" is not a number",
        ),
        (
            put(SCOPE, KEY, "0:1#10#1=-0"),
            "region LSN \"-0\" is a negative zero",
        ),
        (
            put(SCOPE, KEY, "0:1#-9223372036854775809"),
            "global LSN \"-9223372036854775809\" is out of range",
        ),
        (
            put(SCOPE, KEY, &over_i64),
            "global LSN \"18446744073709551615\" is out of range",
        ),
        (put(SCOPE, KEY, "0:+5"), "LSN \"+5\" is not a number"),
        (
            put(SCOPE, KEY, "0:1#10,,1:1#1"),
            "segment 1 (\"\") is empty",
        ),
        // A range named twice is merged (as the SDKs do), unless its two tokens do not merge.
        (
            put(SCOPE, KEY, "0:1#10,0:1#11#2=5"),
            "segment 1 (\"0:1#11#2=5\") repeats the pkRangeId of an earlier segment and does not \
             merge with it: range 0: tokens at version 1 name different regions ([] vs [2])",
        ),
    ];
    for (request, reason) in cases {
        let label = format!("{:?}", request);
        let status = c.put_token(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{label}: {status:?}");
        assert!(
            status.message().contains(reason),
            "{label}: got {:?}, want {reason:?}",
            status.message()
        );
    }

    let stored = c
        .get_token(GetTokenRequest {
            scope: SCOPE.into(),
            key: KEY.into(),
            partition_key_range_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.session_token, STORED,
        "a bad put changed the stored token"
    );
    broker.stop().await;
}

#[tokio::test]
async fn bad_gets_and_merges_are_invalid_argument() {
    let mut s = settings();
    s.limits.max_merge_tokens = 2;
    s.limits.max_segments = 2;
    let broker = TestBroker::start(s).await;
    let mut c = broker.client().await;

    let get = |scope: &str, key: &str, ranges: &[&str]| GetTokenRequest {
        scope: scope.into(),
        key: key.into(),
        partition_key_range_ids: ranges.iter().map(|r| r.to_string()).collect(),
    };
    let get_cases = [
        (get("", KEY, &[]), "scope: is required"),
        (get(SCOPE, "", &[]), "key: is required"),
        (
            get(SCOPE, KEY, &["0", "a:b"]),
            "partition_key_range_ids[1]: contains ':'",
        ),
        (
            get(SCOPE, KEY, &["0", ""]),
            "partition_key_range_ids[1]: is empty",
        ),
        (
            get(SCOPE, KEY, &["0", "1", "2"]),
            "partition_key_range_ids: has 3 entries, more than the limit of 2",
        ),
    ];
    for (request, reason) in get_cases {
        let status = c.get_token(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains(reason),
            "got {:?}, want {reason:?}",
            status.message()
        );
    }

    let merge = |tokens: &[&str]| MergeTokenRequest {
        session_tokens: tokens.iter().map(|t| t.to_string()).collect(),
    };
    let merge_cases = [
        (merge(&[]), "session_tokens: needs at least one token"),
        (
            merge(&["0:1", "0:2", "0:3"]),
            "session_tokens: has 3 tokens, more than the limit of 2",
        ),
        (
            merge(&["0:1", "0:x"]),
            "session_tokens[1]: segment 0 (\"0:x\") LSN \"x\" is not a number",
        ),
    ];
    for (request, reason) in merge_cases {
        let status = c.merge_token(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains(reason),
            "got {:?}, want {reason:?}",
            status.message()
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn bad_discards_are_invalid_argument_and_leave_the_stored_token() {
    let mut s = settings();
    s.limits.max_segments = 2;
    let broker = TestBroker::start(s).await;
    let mut c = broker.client().await;
    c.put_token(put(SCOPE, KEY, STORED)).await.unwrap();

    let discard = |scope: &str, key: &str, token: &str, ranges: &[&str]| DiscardTokenRequest {
        scope: scope.into(),
        key: key.into(),
        session_token: token.into(),
        partition_key_range_ids: ranges.iter().map(|r| r.to_string()).collect(),
    };
    let cases = [
        (discard("", KEY, STORED, &[]), "scope: is required"),
        (discard(SCOPE, "", STORED, &[]), "key: is required"),
        (discard(SCOPE, KEY, "", &[]), "session_token: is required"),
        (
            discard(SCOPE, KEY, "0:1#10#", &[]),
            "session_token: segment 0 (\"0:1#10#\") region entry is empty",
        ),
        (
            discard(SCOPE, KEY, "0:1#1,1:1#1,2:1#1", &[]),
            "session_token: has 3 segments, more than the limit of 2",
        ),
        (
            discard(SCOPE, KEY, STORED, &["0", "a:b"]),
            "partition_key_range_ids[1]: contains ':'",
        ),
        (
            discard(SCOPE, KEY, STORED, &["0", "7"]),
            "partition_key_range_ids[1]: range \"7\" is not in session_token",
        ),
    ];
    for (request, reason) in cases {
        let label = format!("{request:?}");
        let status = c.discard_token(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{label}: {status:?}");
        assert!(
            status.message().contains(reason),
            "{label}: got {:?}, want {reason:?}",
            status.message()
        );
    }
    let stored = c
        .get_token(GetTokenRequest {
            scope: SCOPE.into(),
            key: KEY.into(),
            partition_key_range_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.session_token, STORED,
        "a bad discard changed the stored token"
    );
    broker.stop().await;
}
