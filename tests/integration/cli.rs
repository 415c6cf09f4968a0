//! The operator CLI, run as the built `tokenbroker` binary against a real broker on loopback:
//! the README's examples, exit codes, and errors that name what is wrong.

use std::process::Output;

use tokio::process::Command;

use crate::support::{TestBroker, settings};

async fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenbroker"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[tokio::test]
async fn put_get_merge_and_health_against_a_running_broker() {
    let broker = TestBroker::start(settings()).await;
    let url = broker.url();
    let target = ["--broker", url.as_str()];
    let with = |cmd: &'static str, rest: &[&'static str]| {
        let mut v = vec![cmd];
        v.extend(target.iter().copied());
        v.extend(rest.iter().copied());
        v
    };

    let put = cli(&with(
        "put",
        &[
            "--scope",
            "acct/db/orders",
            "--key",
            "user-1",
            "3:1#100#1=20,0:2#5#1=1",
        ],
    ))
    .await;
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(stdout(&put), "0:2#5#1=1,3:1#100#1=20\n");

    // A second put merges into the stored token: the answer covers both.
    let put = cli(&with(
        "put",
        &[
            "--scope",
            "acct/db/orders",
            "--key",
            "user-1",
            "3:1#90#1=30",
        ],
    ))
    .await;
    assert_eq!(stdout(&put), "0:2#5#1=1,3:1#100#1=30\n");

    let get = cli(&with(
        "get",
        &[
            "--scope",
            "acct/db/orders",
            "--key",
            "user-1",
            "--range",
            "3",
        ],
    ))
    .await;
    assert_eq!(get.status.code(), Some(0), "{}", stderr(&get));
    assert_eq!(stdout(&get), "3:1#100#1=30\n");

    let missing = cli(&with(
        "get",
        &["--scope", "acct/db/orders", "--key", "nobody"],
    ))
    .await;
    assert_eq!(missing.status.code(), Some(1), "get exits 1 on a miss");
    assert_eq!(stdout(&missing), "");
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );

    // Discard: range 3's stored segment is ahead of the failed one and goes; range 0 stays.
    let discard = cli(&with(
        "discard",
        &[
            "--scope",
            "acct/db/orders",
            "--key",
            "user-1",
            "3:1#100#1=20",
        ],
    ))
    .await;
    assert_eq!(discard.status.code(), Some(0), "{}", stderr(&discard));
    assert_eq!(stdout(&discard), "0:2#5#1=1\n");
    assert!(
        stderr(&discard).contains("discarded ranges: 3"),
        "{}",
        stderr(&discard)
    );
    let again = cli(&with(
        "discard",
        &[
            "--scope",
            "acct/db/orders",
            "--key",
            "user-1",
            "--range",
            "0",
            "0:3#1#1=1,3:1#1#1=1",
        ],
    ))
    .await;
    assert_eq!(again.status.code(), Some(1), "nothing at or ahead: exit 1");
    assert_eq!(stdout(&again), "0:2#5#1=1\n");

    let merge = cli(&with("merge", &["0:1#5#1=3", "0:2#3#1=1"])).await;
    assert!(merge.status.success(), "{}", stderr(&merge));
    assert_eq!(stdout(&merge), "0:2#3#1=3\n");

    let ready = cli(&with("health", &[])).await;
    assert_eq!(ready.status.code(), Some(0));
    assert_eq!(stdout(&ready), "SERVING\n");
    let live = cli(&with("health", &["--service", ""])).await;
    assert_eq!(stdout(&live), "SERVING\n");

    // Bad input: the broker's INVALID_ARGUMENT reaches the operator, naming the field; exit 2.
    let bad = cli(&with(
        "put",
        &["--scope", "acct/db/orders", "--key", "user-1", "0:1#5#"],
    ))
    .await;
    assert_eq!(bad.status.code(), Some(2));
    let err = stderr(&bad);
    assert!(
        err.contains("InvalidArgument") && err.contains("session_token"),
        "{err}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn decode_prints_a_table_offline_and_rejects_bad_tokens() {
    let ok = cli(&["decode", "0:1#100#1=20#2=5,3:2#57#1=9"]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        stdout(&ok),
        "RANGE  KIND    VERSION  GLOBAL_LSN  REGION_LSNS\n\
         0      vector  1        100         1=20 2=5\n\
         3      vector  2        57          1=9\n"
    );
    let bad = cli(&["decode", "0:1#x"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("global LSN \"x\" is not a number"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test]
async fn unreachable_broker_is_a_clear_error() {
    // A port nothing listens on (bound, then released).
    let port = crate::support::process::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = cli(&["health", "--broker", &url, "--timeout", "2s"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("cannot connect to {url}")),
        "{}",
        stderr(&out)
    );
}
