"""Writes one item through the write region and reads it back on the same client.

Why: the smallest proof that the Python SDK works against an endpoint (the HTTP emulator, or a
proxy in front of it): account discovery, container and partition key range reads, an upsert, a
point read, and the session token the SDK kept and sent.

Usage: python roundtrip.py '{"endpoint": "http://127.0.0.1:PORT/", "database": "shop",
  "container": "orders", "id": "item-1", "preferred_region": "West US"}'
(or the JSON on stdin). preferred_region is optional: with it, the read goes to that region and
must still see the write, through the session token. Prints one JSON object:
{"written": item, "read": item or null, "write_session_token": ..., "read_session_token": ...}.
"""

import sys

from cosmos_pods import last_session_token, load_config, new_pod, print_json, read_or_none


def main():
    config = load_config(sys.argv)
    container = new_pod(
        config["endpoint"],
        config["database"],
        config["container"],
        config.get("preferred_region"),
    )
    item = {"id": config["id"], "pk": config["id"], "value": "written by python"}
    written = container.upsert_item(item)
    write_token = last_session_token(container)
    read = read_or_none(container, config["id"], config["id"])
    read_token = last_session_token(container)
    print_json(
        {
            "written": {k: written[k] for k in ("id", "pk", "value")},
            "read": None if read is None else {k: read[k] for k in ("id", "pk", "value")},
            "write_session_token": write_token,
            "read_session_token": read_token,
        }
    )


if __name__ == "__main__":
    main()
