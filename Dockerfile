# syntax=docker/dockerfile:1
#
# tokenbroker's container image: a Debian bookworm Rust builder, then distroless/cc.
#
# Why distroless/cc: the binary links glibc (and nothing else: Redis TLS is rustls with ring, the
# proto code is generated at build time by protox, no system protoc), and the image needs CA
# certificates for rediss:// URLs, which distroless ships. There is no shell or package manager
# to patch or to exploit. Kubernetes' native gRPC probes (`grpc: {port: 50051, service: ...}`)
# are made by the kubelet against grpc.health.v1.Health, so the image needs no probe tool (no
# grpc_health_probe). For Docker's own HEALTHCHECK (which runs inside the container) the binary
# itself is the tool: `tokenbroker health` exits 0 only when SERVING.
#
# Build:  docker build -t tokenbroker .
# Run:    docker run -p 50051:50051 -p 9464:9464 tokenbroker
#         (in-memory store; set TOKENBROKER_REDIS__PRIMARY_URL/FALLBACK_URL for Redis)

ARG RUST_VERSION=1.88

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# Only what the build reads; see .dockerignore.
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY crates ./crates
# Cache mounts keep the registry and the target dir between builds (BuildKit); the binary is
# copied out of the cached target dir because the mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tokenbroker --bin tokenbroker \
    && install -D -m 0755 target/release/tokenbroker /out/tokenbroker

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/tokenbroker /usr/local/bin/tokenbroker
# Numeric UID/GID (distroless' "nonroot"), so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# gRPC (TokenBroker, grpc.health.v1.Health, reflection) and Prometheus /metrics.
EXPOSE 50051 9464
ENV TOKENBROKER_LOG__FORMAT=json
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["tokenbroker", "health", "--timeout", "2s"]
ENTRYPOINT ["tokenbroker"]
CMD ["serve"]
