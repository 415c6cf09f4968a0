#!/usr/bin/env python3
"""Calls the broker without pause through one channel to several addresses until standard input
closes, then prints `calls: N` and `failures: M` (and each failure). Used by the rolling-restart
test: a static address list (`ipv4:127.0.0.1:P1,127.0.0.1:P2,...`) with round_robin, whose
`:authority` the client sets (the list itself is not a valid authority).

    python3 examples/python/load.py --target ipv4:127.0.0.1:50051,127.0.0.1:50052 < /dev/null
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402

from tokenbroker_client import TokenBrokerClient  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True)
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline of each call (seconds)")
    args = parser.parse_args()

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    client = TokenBrokerClient(args.target, read_timeout=args.timeout, write_timeout=args.timeout)
    calls, failures = 0, []
    print("started", flush=True)
    while not stop.is_set():
        try:
            if calls % 2 == 0:
                client.put_token("acct/db/rolling", f"k{calls % 50}", f"0:1#{calls + 1}")
            else:
                client.get_token("acct/db/rolling", f"k{calls % 50}")
        except grpc.RpcError as e:
            failures.append(f"{e.code().name}: {e.details()}")
        calls += 1
        if calls % 100 == 0:
            print(f"progress: {calls}", flush=True)
    client.close()
    print(f"calls: {calls}")
    print(f"failures: {len(failures)}")
    for f in failures[:20]:
        print(f"failure: {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
