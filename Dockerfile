# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
#
# The dependencies are built in a layer of their own (from Cargo.toml and Cargo.lock with
# placeholder sources), so a change to the code rebuilds only the crate. The binaries are built
# without debug info and stripped (~60 MB image instead of ~350 MB).
FROM rust:1-bookworm AS build
WORKDIR /src
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin benches \
    && for b in chatstats chatstats-worker chatstats-api chatstats-sim chatstats-migrate; do echo 'fn main() {}' > "src/bin/$b.rs"; done \
    && for b in pipeline memory_store memory_per_member e2e_latency; do echo 'fn main() {}' > "benches/$b.rs"; done \
    && touch src/lib.rs \
    && cargo build --release --locked --bins \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# Make the real sources newer than the placeholders' build outputs.
RUN touch src/lib.rs src/bin/*.rs && cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home chatstats
COPY --from=build /src/target/release/chatstats /src/target/release/chatstats-worker \
     /src/target/release/chatstats-api /src/target/release/chatstats-sim \
     /src/target/release/chatstats-migrate /usr/local/bin/
COPY emote-names.txt /usr/local/share/chatstats/emote-names.txt
USER chatstats
EXPOSE 3000 7000
# The API's (and chatstats') health; docker-compose turns it off for the worker and simulator,
# which serve no HTTP on NODE_PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${NODE_PORT:-3000}/healthcheck" >/dev/null || exit 1
CMD ["chatstats"]
