// Writes one item through the write region and reads it back on the same client.
//
// Why: the smallest proof that the JavaScript SDK works against an endpoint (the HTTP emulator,
// or a proxy in front of it): account discovery, container and partition key range reads, an
// upsert, a point read, and the session token the SDK kept.
//
// Usage: node roundtrip.js '{"endpoint": "http://127.0.0.1:PORT/", "database": "shop",
//   "container": "orders", "id": "item-1", "preferred_region": "West US"}'
// (or the JSON on stdin); preferred_region is optional. Prints one JSON object:
// {"written": item, "read": item or null, "write_session_token": ..., "read_session_token": ...}.

import { loadConfig, newPod, printJson, readOrNull } from "./cosmos-pods.js";

const pick = (item) => (item ? { id: item.id, pk: item.pk, value: item.value } : null);

const config = loadConfig(process.argv);
const container = newPod(
  config.endpoint,
  config.database,
  config.container,
  config.preferred_region,
);
const id = config.id;
const written = await container.items.upsert({ id, pk: id, value: "written by javascript" });
const read = await readOrNull(container, id, id);
printJson({
  written: pick(written.resource),
  read: pick(read.item),
  write_session_token: written.headers["x-ms-session-token"] ?? null,
  read_session_token: read.sessionToken,
});
