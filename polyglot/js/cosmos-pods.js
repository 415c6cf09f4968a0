// Pods on the JavaScript Cosmos SDK (@azure/cosmos): what roundtrip.js and pods.js share.
//
// Why a module: a "pod" is one CosmosClient with its own session cache and its own endpoint,
// made the same way by every script, so that the baseline and the runs through a proxy differ
// only in the endpoints they are given.

import { readFileSync } from "node:fs";
import { CosmosClient } from "@azure/cosmos";

// The emulator does not check keys; the SDK wants one. This is the well-known key of Microsoft's
// Cosmos DB emulator.
export const EMULATOR_KEY =
  "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

// A pod: its own client (Session consistency: without it the SDK attaches no session token;
// endpoint discovery on) and container.
export function newPod(endpoint, database, container, preferredRegion, key = EMULATOR_KEY) {
  const connectionPolicy = { enableEndpointDiscovery: true, requestTimeout: 10_000 };
  if (preferredRegion) {
    connectionPolicy.preferredLocations = [preferredRegion];
  }
  const client = new CosmosClient({ endpoint, key, consistencyLevel: "Session", connectionPolicy });
  return client.database(database).container(container);
}

// The item, or null on 404 (absent here: stale if it was written), with the response's
// session token.
export async function readOrNull(container, id, pk) {
  try {
    const response = await container.item(id, pk).read();
    return {
      item: response.statusCode === 404 ? null : (response.resource ?? null),
      sessionToken: response.headers["x-ms-session-token"] ?? null,
    };
  } catch (error) {
    if (error.code === 404) {
      return { item: null, sessionToken: error.headers?.["x-ms-session-token"] ?? null };
    }
    throw error;
  }
}

// The JSON configuration: the first argument, or stdin with "-" or no argument.
export function loadConfig(argv) {
  const arg = argv[2];
  return JSON.parse(arg && arg !== "-" ? arg : readFileSync(0, "utf8"));
}

export function printJson(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}
