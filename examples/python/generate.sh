#!/usr/bin/env sh
# Generates the Python stubs from proto/ into OUT_DIR (default: examples/python/generated, which
# git ignores), for services that generate at build time instead of at run time:
#
#   examples/python/generate.sh /app/gen
#   TokenBrokerClient(target, stubs_dir="/app/gen")
#
# PYTHON picks the interpreter (default python3); it needs grpcio-tools.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-"$here/generated"}
mkdir -p "$out"
"${PYTHON:-python3}" -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$out" --grpc_python_out="$out" \
  "$root/proto/tokenbroker/v1/token_broker.proto"
echo "$out"
