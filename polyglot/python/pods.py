"""Write-then-read pairs across pods: the cross-pod stale-read count.

Why: this is the product's question asked of the Python SDK. Each pod is its own CosmosClient
(its own session cache) on its own endpoint, as pods behind a round-robin balancer are; pair i
writes through pod i % N and reads right after through pod (i + 1) % N, which never saw the
write's session token. Against Cosmos directly some reads are stale; through the sidecars none
should be.

Usage: python pods.py '<config JSON>' (or the JSON on stdin):
  {"endpoints": ["http://127.0.0.1:P1/", ...],   one per pod
   "pairs": 100, "database": "shop", "container": "orders",
   "preferred_region": "West US",                  where pods read (optional)
   "keys": 100,                                    distinct items (default: pairs, each fresh)
   "run": "r1",                                    item id prefix (default: a random one)
   "progress": false}                              print {"progress": n} after each pair
Prints one JSON object: {"pairs", "fresh", "stale", "failed", "errors": [first 20 messages],
"outcomes": one letter per pair, f fresh, s stale, x failed}. With progress on, a
{"progress": n} line precedes it after each pair, so a driver can act mid-run (kill a broker).
stale: the read returned 404 or an older value; failed: a request raised anything else.
"""

import sys
import uuid

from cosmos_pods import load_config, new_pod, print_json, read_or_none

MAX_ERRORS = 20


def main():
    config = load_config(sys.argv)
    pairs = int(config["pairs"])
    keys = int(config.get("keys") or pairs)
    run = config.get("run") or uuid.uuid4().hex[:12]
    pods = [
        new_pod(endpoint, config["database"], config["container"], config.get("preferred_region"))
        for endpoint in config["endpoints"]
    ]
    progress = bool(config.get("progress"))
    counts = {"pairs": pairs, "fresh": 0, "stale": 0, "failed": 0, "errors": []}
    outcomes = []
    for i in range(pairs):
        if progress and i > 0:
            print_json({"progress": i})
        key = f"{run}-{i % keys}"
        writer = pods[i % len(pods)]
        reader = pods[(i + 1) % len(pods)]
        try:
            writer.upsert_item({"id": key, "pk": key, "seq": i})
            read = read_or_none(reader, key, key)
        except Exception as error:  # every other failure is counted, with its reason
            counts["failed"] += 1
            outcomes.append("x")
            if len(counts["errors"]) < MAX_ERRORS:
                counts["errors"].append(f"pair {i}: {type(error).__name__}: {error}"[:500])
            continue
        if read is None or read.get("seq", -1) < i:
            counts["stale"] += 1
            outcomes.append("s")
        else:
            counts["fresh"] += 1
            outcomes.append("f")
    counts["outcomes"] = "".join(outcomes)
    print_json(counts)


if __name__ == "__main__":
    main()
