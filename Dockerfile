# favicon-finder: build with the locked dependencies, run from a small image as a non-root user.
#
#   docker build -t favicon-finder .
#   docker run --rm -p 3000:3000 -v ff-data:/data favicon-finder          # serve, SQLite in /data
#   docker run --rm favicon-finder find example.com                        # any subcommand
#
# See deploy/README.md for the PostgreSQL/Redis fleet (docker-compose.yml, deploy/k8s/).

# ---- build ------------------------------------------------------------------------------------
# Dependencies are cached in a layer of their own with cargo-chef: `prepare` writes a recipe of
# every manifest, lock file and declared target (lib, bins, benches, tests, examples) with
# placeholder sources, and `cook` builds the dependencies from it. Nothing here is a hand-made
# stub, so a target added to Cargo.toml cannot break the build. `.ci/dockerfile-check` runs
# these stages outside Docker, so keep every RUN of the chef, planner and build stages a cargo
# command (that script reads them from this file).
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe changes only when a manifest, the lock file or the set of targets changes.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin favicon-finder
# Then the real sources (the context is trimmed by .dockerignore).
COPY . .
RUN cargo build --release --locked --bin favicon-finder

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

COPY --from=build /src/target/release/favicon-finder /usr/local/bin/favicon-finder

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
