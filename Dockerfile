# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home chatstats
COPY --from=build /src/target/release/chatstats /src/target/release/chatstats-worker \
     /src/target/release/chatstats-api /src/target/release/chatstats-sim /usr/local/bin/
USER chatstats
EXPOSE 3000 7000
CMD ["chatstats"]
