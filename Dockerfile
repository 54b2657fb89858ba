# syntax=docker/dockerfile:1
# The gateway as a container image (docs/operations.md, "Container image").
#
#   docker build -t sektorbro .
#   docker run -p 8080:8080 -v sektorbro-data:/var/lib/sektorbro sektorbro
#
# Two stages: the Rust toolchain builds the release binary; the runtime image is distroless
# (glibc and CA certificates, no shell, no package manager) and runs as an unprivileged user.
# The binary needs nothing else: SQLite is compiled in, TLS is rustls, profiles/ are embedded.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# .dockerignore keeps target/, data/ and .git out of the context.
COPY . .
# Cache mounts keep the crate downloads and the build folder between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sektorbro \
 && cp target/release/sektorbro /sektorbro \
 && mkdir -p /state/var/lib/sektorbro

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /sektorbro /usr/local/bin/sektorbro
COPY deploy/container.toml /etc/sektorbro/sektorbro.toml
# The data folder (SQLite file, Bulk Data exports) belongs to the runtime user, so a named volume
# mounted there starts out writable.
COPY --from=build --chown=65532:65532 /state/var/lib/sektorbro /var/lib/sektorbro
# `serve` and `healthcheck` both read this file; SEKTORBRO_LISTEN, SEKTORBRO_DATABASE_URL,
# SEKTORBRO_OTLP_ENDPOINT and SEKTORBRO_DEV_TOKEN override it (docs/operations.md).
ENV SEKTORBRO_CONFIG=/etc/sektorbro/sektorbro.toml
WORKDIR /var/lib/sektorbro
VOLUME ["/var/lib/sektorbro"]
USER 65532:65532
EXPOSE 8080
# The image has no curl: the binary asks its own /healthz on loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/sektorbro", "healthcheck", "--timeout", "4"]
# SIGTERM lets in-flight requests finish (server.shutdown_timeout_secs), then flushes traces.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sektorbro"]
CMD ["serve"]
