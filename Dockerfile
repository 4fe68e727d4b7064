# Build with the locked dependencies, then run from a small image as a non-root user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin favicon-finder

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /data favicon \
 && mkdir -p /data && chown favicon /data
COPY --from=build /src/target/release/favicon-finder /usr/local/bin/favicon-finder
USER favicon
WORKDIR /data
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS http://127.0.0.1:3000/healthz || exit 1
ENTRYPOINT ["favicon-finder"]
CMD ["serve"]
