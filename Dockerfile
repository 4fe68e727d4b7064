# favicon-finder: build with the locked dependencies, run from a small image as a non-root user.
#
#   docker build -t favicon-finder .
#   docker run --rm -p 3000:3000 -v ff-data:/data favicon-finder          # serve, SQLite in /data
#   docker run --rm favicon-finder find example.com                        # any subcommand
#
# See deploy/README.md for the PostgreSQL/Redis fleet (docker-compose.yml, deploy/k8s/).

# ---- build ------------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: the manifests and the lock file with stub sources, so
# this (long) step is redone only when Cargo.toml, migration/Cargo.toml or Cargo.lock change.
# The workspace is "." (lib + the favicon-finder binary) and "migration" (a lib). If Cargo.toml
# ever declares explicit [[bench]]/[[test]]/[[example]] targets, add an empty stub for each path
# here too: cargo checks that declared target files exist even when building one binary.
COPY Cargo.toml Cargo.lock ./
COPY migration/Cargo.toml migration/
RUN mkdir -p src migration/src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && : > migration/src/lib.rs \
 && cargo build --release --locked --bin favicon-finder \
 && rm -rf src migration/src

# Then the real sources (the context is trimmed by .dockerignore). COPY keeps the files' own
# modification times, which may be older than the stub build's outputs: touch the crate roots so
# cargo rebuilds both workspace crates instead of shipping the stub binary.
COPY . .
RUN touch src/main.rs src/lib.rs migration/src/lib.rs \
 && cargo build --release --locked --bin favicon-finder \
 && cp target/release/favicon-finder /usr/local/bin/favicon-finder

# ---- runtime ----------------------------------------------------------------------------------
# Same Debian release as the build image, so the glibc the binary links against is there.
FROM debian:bookworm-slim

# ca-certificates: the fetcher verifies TLS against the system roots.
# curl: only for the HEALTHCHECK below (the binary has no health subcommand).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 favicon \
 && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin favicon \
 && mkdir -p /data \
 && chown 10001:10001 /data

COPY --from=build /usr/local/bin/favicon-finder /usr/local/bin/favicon-finder

# The default DATABASE_URL (sqlite://favicon-finder.db?mode=rwc) is relative to the working
# directory: /data, a volume owned by the service user, so the embedded setup keeps its data.
WORKDIR /data
VOLUME ["/data"]

# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001

ENV HOST=0.0.0.0 \
    PORT=3000
EXPOSE 3000

# Meaningful for `serve` only: `worker` and `migrate` listen on no port, so turn the check off
# for them (docker-compose.yml does). Kubernetes ignores it and uses its own probes.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT}/healthz" || exit 1

# The binary is PID 1 and handles SIGTERM/SIGINT itself (graceful shutdown within
# SHUTDOWN_GRACE_SECS); it starts no child processes, so no init is needed.
ENTRYPOINT ["favicon-finder"]
CMD ["serve"]
