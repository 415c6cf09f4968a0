// Write-then-read pairs across pods: the cross-pod stale-read count.
//
// Why: this is the product's question asked of the JavaScript SDK. Each pod is its own
// CosmosClient (its own session cache) on its own endpoint, as pods behind a round-robin
// balancer are; pair i writes through pod i % N and reads right after through pod (i + 1) % N,
// which never saw the write's session token. Against Cosmos directly some reads are stale;
// through the sidecars none should be.
//
// Usage: node pods.js '<config JSON>' (or the JSON on stdin), the same as pods.py's:
//   {"endpoints": [...one per pod], "pairs": 100, "database": "shop", "container": "orders",
//    "preferred_region": "West US", "keys": 100, "run": "r1", "progress": false}
// Prints one JSON object: {"pairs", "fresh", "stale", "failed", "errors": [first 20 messages],
// "outcomes": one letter per pair, f fresh, s stale, x failed}. With progress on, a
// {"progress": n} line precedes it after each pair, so a driver can act mid-run (kill a broker).
// stale: the read returned 404 or an older value; failed: a request threw anything else.

import { randomUUID } from "node:crypto";
import { loadConfig, newPod, printJson, readOrNull } from "./cosmos-pods.js";

const MAX_ERRORS = 20;

const config = loadConfig(process.argv);
const pairs = Number(config.pairs);
const keys = Number(config.keys || pairs);
const run = config.run || randomUUID().slice(0, 12);
const pods = config.endpoints.map((endpoint) =>
  newPod(endpoint, config.database, config.container, config.preferred_region),
);
const progress = Boolean(config.progress);
const counts = { pairs, fresh: 0, stale: 0, failed: 0, errors: [] };
const outcomes = [];
for (let i = 0; i < pairs; i++) {
  if (progress && i > 0) {
    printJson({ progress: i });
  }
  const key = `${run}-${i % keys}`;
  const writer = pods[i % pods.length];
  const reader = pods[(i + 1) % pods.length];
  let read;
  try {
    await writer.items.upsert({ id: key, pk: key, seq: i });
    read = await readOrNull(reader, key, key);
  } catch (error) {
    counts.failed += 1;
    outcomes.push("x");
    if (counts.errors.length < MAX_ERRORS) {
      counts.errors.push(`pair ${i}: ${error.code ?? ""} ${error.message}`.slice(0, 500));
    }
    continue;
  }
  if (read.item === null || (read.item.seq ?? -1) < i) {
    counts.stale += 1;
    outcomes.push("s");
  } else {
    counts.fresh += 1;
    outcomes.push("f");
  }
}
counts.outcomes = outcomes.join("");
printJson(counts);
