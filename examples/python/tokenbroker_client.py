"""A thin Python client for tokenbroker, generated from proto/ with grpcio-tools at run time.

Two kinds of calls:

- the raw RPCs (`put_token`, `get_token`, `merge_tokens`, `discard_token`) raise `grpc.RpcError`
  like any gRPC stub;
- the helpers you call around Cosmos operations (`token_for_read`, `record_write`,
  `read_with_fallback`) never raise because of the broker: on any broker error or deadline they log
  a warning, count the failure and return None, so the Cosmos call goes ahead with the database's
  normal session semantics.

The fallback contract (docs/clients.md), the same in every language: a read that carried the
broker's token and failed because Cosmos cannot serve that token (404/1002, 503/20310, any 400 such
as 400/1024 after a container was recreated) is made once more without it, that result is returned,
and the token is then discarded from the broker (DiscardToken). `read_with_fallback` does exactly
that around a read function of yours.

Usage around the azure-cosmos SDK (keyword `session_token=` on read_item / query_items; the write's
token is the `x-ms-session-token` response header, handed to `response_hook(headers, result)` or
left in `container.client_connection.last_response_headers`):

    broker = TokenBrokerClient("dns:///tokenbroker-headless:50051")
    SCOPE = "myaccount/shop/orders"           # one scope per container

    def save_order(container, order):
        headers = {}
        container.upsert_item(order, response_hook=lambda h, _: headers.update(h))
        # Before answering our own caller, so that its next read (on any pod) sees the write.
        broker.record_write(SCOPE, order["customerId"], headers.get("x-ms-session-token"))

    def load_order(container, customer_id, order_id):
        def read(token):                                    # None: the SDK's own session token
            extra = {"session_token": token} if token else {}
            return container.read_item(order_id, partition_key=customer_id, **extra)
        return broker.read_with_fallback(SCOPE, customer_id, read)

Nothing generated is committed: `load_stubs()` runs grpc_tools.protoc on proto/ into a temporary
directory the first time it is called (or imports stubs you generated with generate.sh).
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Optional, TypeVar

import grpc

log = logging.getLogger("tokenbroker")

T = TypeVar("T")


def _status_of(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    sub_status = getattr(error, "sub_status", None)
    return f"{status}/{sub_status}" if sub_status else f"{status}"


def is_unservable(error: BaseException) -> bool:
    """True when a Cosmos read failed in a way the broker's token may have caused.

    Reads the `status_code` and `sub_status` attributes of the SDK's exception (azure-cosmos's
    `CosmosHttpResponseError` has both): 404 with sub-status 1002 (ReadSessionNotAvailable), 503
    with 20310 (the SDK's ClientReadSessionNotAvailable), and any 400 (400/1024
    CollectionRidMismatch after a container was recreated, a token the service rejects).
    """
    status = getattr(error, "status_code", None)
    sub_status = getattr(error, "sub_status", None)
    return (status == 404 and sub_status == 1002) or (status == 503 and sub_status == 20310) or status == 400

PROTO_FILE = "tokenbroker/v1/token_broker.proto"
# The repository's proto/ directory; TOKENBROKER_PROTO_DIR overrides it.
DEFAULT_PROTO_DIR = Path(__file__).resolve().parent.parent.parent / "proto"

# Deadlines for the never-fail helpers, in seconds. GetToken sits on the read path: keep it short,
# a miss only costs a possibly stale read. PutToken decides whether the next read on another pod
# sees the write: a little more patience.
DEFAULT_READ_TIMEOUT = 0.1
DEFAULT_WRITE_TIMEOUT = 0.25

_stubs_lock = threading.Lock()
_stubs = None


def load_stubs(stubs_dir: Optional[str] = None):
    """Returns the generated modules (token_broker_pb2, token_broker_pb2_grpc).

    With `stubs_dir`, imports stubs generated beforehand by generate.sh. Without it, generates them
    from the proto with grpc_tools.protoc into a temporary directory (once per process).
    """
    global _stubs
    with _stubs_lock:
        if _stubs is not None:
            return _stubs
        if stubs_dir is None:
            stubs_dir = _generate()
        sys.path.insert(0, str(stubs_dir))
        pb2 = importlib.import_module("tokenbroker.v1.token_broker_pb2")
        pb2_grpc = importlib.import_module("tokenbroker.v1.token_broker_pb2_grpc")
        _stubs = (pb2, pb2_grpc)
        return _stubs


def _generate() -> str:
    try:
        from grpc_tools import protoc
    except ImportError as e:
        raise RuntimeError(
            "grpcio-tools is missing: install python3-grpc-tools (Debian) or "
            "`pip install grpcio grpcio-tools` (same release as grpcio)"
        ) from e
    proto_dir = Path(os.environ.get("TOKENBROKER_PROTO_DIR", DEFAULT_PROTO_DIR))
    if not (proto_dir / PROTO_FILE).is_file():
        raise RuntimeError(f"{proto_dir / PROTO_FILE} not found (set TOKENBROKER_PROTO_DIR)")
    out = tempfile.mkdtemp(prefix="tokenbroker-stubs-")
    atexit.register(shutil.rmtree, out, True)
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(proto_dir / PROTO_FILE),
        ]
    )
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed on {proto_dir / PROTO_FILE} (exit {rc})")
    return out


# After this many helper failures in a row, the helpers log an error (once, until a call
# succeeds again): a broker that stays unreachable must not leave reads quietly without tokens.
LOUD_AFTER_CONSECUTIVE_FAILURES = 10

# The `:authority` sent when the target names several addresses (`ipv4:a:p,b:p`): grpcio would
# otherwise send the whole list, which is not a valid host[:port], and the broker's HTTP/2 server
# resets every such call (PROTOCOL_ERROR, seen as INTERNAL "Received RST_STREAM").
DEFAULT_AUTHORITY = "tokenbroker"


class TokenBrokerClient:
    """A client for one broker target.

    `target` is a gRPC target: `host:port` for one broker, `dns:///tokenbroker-headless:50051`
    for every pod behind a headless Service, or a static list `ipv4:10.0.0.1:50051,10.0.0.2:50051`;
    calls are spread over the addresses with the round_robin policy (a plain ClusterIP Service
    would pin the HTTP/2 connection to one pod). For a list, `authority` (default "tokenbroker")
    is sent as `:authority`, since the list itself is not a valid one.

    TLS: pass `root_certificates` (PEM bytes of the CA that signed the broker's certificate; None
    with `tls=True` uses the system's roots), and for mutual TLS `certificate_chain` and
    `private_key`. `tls_name` is the name the broker's certificate is checked against when the
    target's host is not it (IP addresses, a headless Service: for example "tokenbroker").
    `bearer_token` is sent as `authorization: Bearer <token>` with every call.
    """

    def __init__(
        self,
        target: str,
        *,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        stubs_dir: Optional[str] = None,
        channel: Optional[grpc.Channel] = None,
        tls: bool = False,
        root_certificates: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        tls_name: Optional[str] = None,
        bearer_token: Optional[str] = None,
        authority: Optional[str] = None,
    ):
        pb2, pb2_grpc = load_stubs(stubs_dir)
        self._pb2 = pb2
        self.target = target
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        options = [("grpc.lb_policy_name", "round_robin")]
        if authority is None and "," in target:
            authority = DEFAULT_AUTHORITY
        if authority is not None:
            options.append(("grpc.default_authority", authority))
        if tls_name is not None:
            options.append(("grpc.ssl_target_name_override", tls_name))
        if channel is not None:
            self._channel = channel
        elif tls or root_certificates or certificate_chain:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._metadata = (("authorization", f"Bearer {bearer_token}"),) if bearer_token else None
        self._stub = pb2_grpc.TokenBrokerStub(self._channel)
        # Helper failures in a row (reset by a helper call that reaches the broker).
        self.consecutive_failures = 0
        self._failures_lock = threading.Lock()
        self._failures: Counter = Counter()
        # Reads made again without the broker's token (read_with_fallback).
        self.fallback_reads = 0

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "TokenBrokerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- raw RPCs: raise grpc.RpcError -------------------------------------------------------

    def put_token(self, scope: str, key: str, session_token: str, *, timeout: Optional[float] = None) -> str:
        """PutToken: merges the token into the stored one; returns the stored result."""
        req = self._pb2.PutTokenRequest(scope=scope, key=key, session_token=session_token)
        return self._stub.PutToken(req, metadata=self._metadata, timeout=self._deadline(timeout, self.write_timeout)).session_token

    def get_token(
        self, scope: str, key: str, range_ids: Iterable[str] = (), *, timeout: Optional[float] = None
    ):
        """GetToken: the GetTokenResponse (session_token, found, degraded)."""
        req = self._pb2.GetTokenRequest(scope=scope, key=key, partition_key_range_ids=list(range_ids))
        return self._stub.GetToken(req, metadata=self._metadata, timeout=self._deadline(timeout, self.read_timeout))

    def merge_tokens(self, session_tokens: Iterable[str], *, timeout: Optional[float] = None) -> str:
        """MergeToken: merges tokens without storing anything."""
        req = self._pb2.MergeTokenRequest(session_tokens=list(session_tokens))
        return self._stub.MergeToken(req, metadata=self._metadata, timeout=self._deadline(timeout, self.read_timeout)).session_token

    def discard_token(
        self,
        scope: str,
        key: str,
        session_token: str,
        range_ids: Iterable[str] = (),
        *,
        timeout: Optional[float] = None,
    ):
        """DiscardToken: removes from the stored token the ranges of `session_token` (all, or only
        `range_ids`) whose stored segment is at or ahead of it. The DiscardTokenResponse
        (discarded_partition_key_range_ids, session_token: what remains)."""
        req = self._pb2.DiscardTokenRequest(
            scope=scope, key=key, session_token=session_token, partition_key_range_ids=list(range_ids)
        )
        return self._stub.DiscardToken(req, metadata=self._metadata, timeout=self._deadline(timeout, self.write_timeout))

    # -- never-fail helpers around Cosmos operations ----------------------------------------

    def token_for_read(
        self, scope: str, key: str, range_ids: Iterable[str] = (), *, timeout: Optional[float] = None
    ) -> Optional[str]:
        """The token to send with a read, or None (nothing stored, or the broker failed).

        Pass the target partition key range id in `range_ids` when you know it: a whole composite
        token can exceed Cosmos's header limits.
        """
        try:
            resp = self.get_token(scope, key, range_ids, timeout=timeout)
        except grpc.RpcError as e:
            self._failed("GetToken", e)
            return None
        except Exception:  # a bug or a closed channel must not fail the read either
            self._failed("GetToken", None)
            return None
        self._succeeded()
        if resp.degraded:
            log.info("tokenbroker GetToken degraded for scope=%r", scope)
        return resp.session_token if resp.found else None

    def record_write(
        self, scope: str, key: str, session_token: Optional[str], *, timeout: Optional[float] = None
    ) -> Optional[str]:
        """Records a write's token; returns the stored token, or None if nothing was recorded.

        Call it after the Cosmos write and before answering your own caller. A write response
        without a session token (None or empty) is skipped.
        """
        if not session_token:
            return None
        try:
            stored = self.put_token(scope, key, session_token, timeout=timeout)
        except grpc.RpcError as e:
            self._failed("PutToken", e)
            return None
        except Exception:
            self._failed("PutToken", None)
            return None
        self._succeeded()
        return stored

    def read_with_fallback(
        self,
        scope: str,
        key: str,
        read: Callable[[Optional[str]], T],
        range_ids: Iterable[str] = (),
        *,
        timeout: Optional[float] = None,
    ) -> T:
        """Runs `read(token)` with the broker's token, and once more with `read(None)` if Cosmos
        could not serve that token (`is_unservable`); then discards the token from the broker.

        `read` is your Cosmos read (point read, query page, read feed): given a token it sends it
        as the session token, given None it lets the SDK send its own. Errors of `read` other than
        an unservable token propagate unchanged, and so does any error of the read without the
        token: the broker never fails your read, but it does not hide Cosmos's own failures.
        """
        token = self.token_for_read(scope, key, range_ids, timeout=timeout)
        if token is None:
            return read(None)
        try:
            return read(token)
        except Exception as e:
            if not is_unservable(e):
                raise
            first_error = e
        result = read(None)  # raises what the SDK alone would raise
        self.fallback_reads += 1
        ranges = ",".join(segment.split(":", 1)[0] for segment in token.split(","))
        log.warning(
            "tokenbroker: Cosmos could not serve the broker's token for scope=%r ranges=%s (%s); "
            "read again without it, discarding it",
            scope,
            ranges,
            _status_of(first_error),
        )
        try:
            self.discard_token(scope, key, token, timeout=timeout)
        except grpc.RpcError as e:
            self._failed("DiscardToken", e)
        except Exception:
            self._failed("DiscardToken", None)
        return result

    # -- failures ---------------------------------------------------------------------------

    @property
    def failures(self) -> dict:
        """Helper failures so far, keyed by (rpc, status code name)."""
        with self._failures_lock:
            return dict(self._failures)

    @property
    def failure_count(self) -> int:
        with self._failures_lock:
            return sum(self._failures.values())

    def _succeeded(self) -> None:
        if self.consecutive_failures >= LOUD_AFTER_CONSECUTIVE_FAILURES:
            log.warning("tokenbroker reachable again after %d failed calls", self.consecutive_failures)
        self.consecutive_failures = 0

    def _failed(self, rpc: str, error: Optional[grpc.RpcError]) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures == LOUD_AFTER_CONSECUTIVE_FAILURES:
            log.error(
                "tokenbroker: %d broker calls in a row failed (last: %s): reads run without tokens "
                "and writes are not shared until it answers again",
                self.consecutive_failures,
                rpc,
            )
        if error is None:
            code = "CLIENT_ERROR"
            log.warning("tokenbroker %s failed in the client; going ahead without a token", rpc, exc_info=True)
        else:
            status = error.code() if hasattr(error, "code") else None
            code = status.name if status is not None else "UNKNOWN"
            details = error.details() if hasattr(error, "details") else str(error)
            log.warning("tokenbroker %s failed (%s: %s); going ahead without a token", rpc, code, details)
        with self._failures_lock:
            self._failures[(rpc, code)] += 1

    @staticmethod
    def _deadline(timeout: Optional[float], default: float) -> float:
        return default if timeout is None else timeout
