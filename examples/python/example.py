#!/usr/bin/env python3
"""Runs the Python client against a live broker: Put, Get, Merge, the never-fail helpers, and the
helpers against a dead broker. Prints what it sees; exits 1 on any mismatch.

    python3 examples/python/example.py --broker 127.0.0.1:50051

Each run uses fresh keys, so it can run again against the same broker. The last lines are
`name: value` pairs that tests read (scope, key, stored_token, helper_key, helper_token).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402

from tokenbroker_client import TokenBrokerClient, is_unservable  # noqa: E402

SCOPE = "acct/db/orders"

failures: list[str] = []


def check(what: str, got, want) -> None:
    ok = got == want
    print(f"{'ok  ' if ok else 'FAIL'} {what}: {got!r}" + ("" if ok else f" (want {want!r})"))
    if not ok:
        failures.append(what)


def closed_port_address() -> str:
    """A loopback address where nothing listens: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", required=True, help="host:port of a running tokenbroker")
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="deadline in seconds for the calls to the live broker (generous: this is a check, "
        "not a latency budget)",
    )
    parser.add_argument(
        "--dead-timeout", type=float, default=0.3, help="helper deadline against the dead brokers (seconds)"
    )
    parser.add_argument("--ca", help="PEM CA of the broker's certificate: talk TLS")
    parser.add_argument("--cert", help="PEM client certificate (mutual TLS), with --cert-key")
    parser.add_argument("--cert-key", help="PEM private key of --cert")
    parser.add_argument("--tls-name", help="name the broker's certificate is checked against")
    parser.add_argument("--token", help="bearer token sent with every call")
    args = parser.parse_args()
    read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
    security = dict(
        root_certificates=read(args.ca),
        certificate_chain=read(args.cert),
        private_key=read(args.cert_key),
        tls_name=args.tls_name,
        bearer_token=args.token,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    run = uuid.uuid4().hex[:12]
    key = f"python-example-{run}"
    helper_key = f"python-helper-{run}"

    client = TokenBrokerClient(
        args.broker, read_timeout=args.timeout, write_timeout=args.timeout, **security
    )
    print(f"broker {args.broker}, tls {bool(args.ca)}, token {bool(args.token)}, scope {SCOPE!r}, key {key!r}")

    # PutToken merges per partition key range and returns the canonical stored token.
    check("put #1", client.put_token(SCOPE, key, "3:1#100#1=20,0:2#5#1=1"), "0:2#5#1=1,3:1#100#1=20")
    # An older global LSN does not go backwards; a newer region LSN advances.
    stored = client.put_token(SCOPE, key, "3:1#90#1=30")
    check("put #2", stored, "0:2#5#1=1,3:1#100#1=30")

    got = client.get_token(SCOPE, key)
    check("get all ranges", (got.found, got.degraded, got.session_token), (True, False, stored))
    got = client.get_token(SCOPE, key, ["3"])
    check("get range 3", (got.found, got.session_token), (True, "3:1#100#1=30"))
    got = client.get_token(SCOPE, f"absent-{run}")
    check("get absent key", (got.found, got.session_token), (False, ""))

    check("merge", client.merge_tokens(["0:1#5#1=3", "0:2#3#1=1"]), "0:2#3#1=3")

    # Bad input: the raw call raises INVALID_ARGUMENT; the helper swallows it and counts it.
    try:
        client.put_token(SCOPE, key, "0:1#10#")
        check("raw put of a malformed token raises", "no error", "INVALID_ARGUMENT")
    except grpc.RpcError as e:
        check("raw put of a malformed token raises", e.code().name, "INVALID_ARGUMENT")
    check("record_write of a malformed token", client.record_write(SCOPE, key, "0:1#10#"), None)
    check("helper failures counted", client.failures, {("PutToken", "INVALID_ARGUMENT"): 1})
    check("stored token unchanged", client.get_token(SCOPE, key).session_token, stored)

    # The helpers around a Cosmos call, on a live broker.
    helper_token = client.record_write(SCOPE, helper_key, "0:1#7#1=7")
    check("record_write", helper_token, "0:1#7#1=7")
    check("token_for_read", client.token_for_read(SCOPE, helper_key, ["0"]), "0:1#7#1=7")
    check("token_for_read of another range", client.token_for_read(SCOPE, helper_key, ["5"]), None)
    check("record_write without a token", client.record_write(SCOPE, helper_key, None), None)

    # The fallback contract: a token Cosmos cannot serve never fails the read. A stand-in for the
    # SDK's read answers 404/1002 (as azure-cosmos raises it: status_code, sub_status) to a token
    # at or ahead of what the "container" holds, and the document otherwise.
    fallback_key = f"python-fallback-{run}"
    container_lsn = 7
    client.record_write(SCOPE, fallback_key, "0:1#1000007")  # far ahead of the container

    class ReadSessionNotAvailable(Exception):
        status_code, sub_status = 404, 1002

    sent: list = []

    def cosmos_read(token):
        sent.append(token)
        if token is not None and int(token.split("#")[1]) > container_lsn:
            raise ReadSessionNotAvailable("404/1002: the read session is not available")
        return {"id": "order-1", "items": 3}

    check("is_unservable(404/1002)", is_unservable(ReadSessionNotAvailable()), True)
    check("is_unservable(ValueError)", is_unservable(ValueError()), False)
    doc = client.read_with_fallback(SCOPE, fallback_key, cosmos_read, ["0"])
    check("read_with_fallback returns the read without the token", doc, {"id": "order-1", "items": 3})
    check("read_with_fallback: one read more", sent, ["0:1#1000007", None])
    check("fallback counted", client.fallback_reads, 1)
    check("the unservable token was discarded", client.get_token(SCOPE, fallback_key).found, False)
    sent.clear()
    client.read_with_fallback(SCOPE, fallback_key, cosmos_read, ["0"])
    check("the next read carries no token", sent, [None])
    client.close()

    # Dead brokers: the helpers return None within their deadline and never raise.
    # 1. Nothing listens: the connection is refused.
    # 2. A socket that accepts connections and never answers: only the deadline ends the call.
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(16)
    dead_targets = {
        "refused": closed_port_address(),
        "silent": f"127.0.0.1:{black_hole.getsockname()[1]}",
    }
    for name, target in dead_targets.items():
        dead = TokenBrokerClient(target, read_timeout=args.dead_timeout, write_timeout=args.dead_timeout)
        started = time.monotonic()
        try:
            read = dead.token_for_read(SCOPE, key, ["3"])
            written = dead.record_write(SCOPE, key, "0:1#1")
        except Exception as e:  # the point of the check: this must not happen
            read = written = f"raised {type(e).__name__}: {e}"
        elapsed = time.monotonic() - started
        dead.close()
        check(f"{name} broker: token_for_read", read, None)
        check(f"{name} broker: record_write", written, None)
        check(f"{name} broker: failures counted", dead.failure_count, 2)
        # Two calls of at most dead_timeout each, plus generous slack for a loaded machine.
        check(f"{name} broker: within the deadlines", elapsed < 2 * args.dead_timeout + 2.0, True)
        print(f"     {name} broker {target}: {dead.failures}, {elapsed:.2f}s")
    black_hole.close()

    print(f"scope: {SCOPE}")
    print(f"key: {key}")
    print(f"stored_token: {stored}")
    print(f"helper_key: {helper_key}")
    print(f"helper_token: {helper_token}")
    print(f"fallback_key: {fallback_key}")
    if failures:
        print(f"{len(failures)} check(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as e:  # the live broker failed a raw call: nothing to check against
        print(f"FAIL: broker call failed: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(1)
