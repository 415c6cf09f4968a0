"""Pods on the Python Cosmos SDK (azure-cosmos): what roundtrip.py and pods.py share.

Why a module: a "pod" is one CosmosClient with its own session cache and its own endpoint, made
the same way by every script, so that the baseline and the runs through a proxy differ only in
the endpoints they are given.
"""

import json
import sys

from azure.cosmos import CosmosClient, exceptions

# The emulator does not check keys; the SDK wants one. This is the well-known key of Microsoft's
# Cosmos DB emulator.
EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)


def new_pod(endpoint, database, container, preferred_region=None, key=EMULATOR_KEY):
    """A pod: its own client (Session consistency, endpoint discovery on) and container."""
    options = {
        "consistency_level": "Session",
        "enable_endpoint_discovery": True,
        "connection_timeout": 10,
    }
    if preferred_region:
        options["preferred_locations"] = [preferred_region]
    client = CosmosClient(endpoint, credential=key, **options)
    return client.get_database_client(database).get_container_client(container)


def last_session_token(container):
    """The x-ms-session-token of the container's last response, if any."""
    headers = container.client_connection.last_response_headers or {}
    return headers.get("x-ms-session-token")


def read_or_none(container, item_id, pk):
    """The item, or None on 404 (absent here: stale if it was written)."""
    try:
        return container.read_item(item=item_id, partition_key=pk)
    except exceptions.CosmosResourceNotFoundError:
        return None


def load_config(argv):
    """The JSON configuration: the first argument, or stdin with "-" or no argument."""
    if len(argv) > 1 and argv[1] != "-":
        return json.loads(argv[1])
    return json.load(sys.stdin)


def print_json(value):
    sys.stdout.write(json.dumps(value, sort_keys=True) + "\n")
    sys.stdout.flush()
