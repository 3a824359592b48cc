# pgward: build with the Rust toolchain, run on a slim Debian.
FROM rust:1.88-bookworm AS build
# pg_query builds PostgreSQL's parser and generates bindings with bindgen.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY rules ./rules
COPY benches ./benches
RUN cargo build --release --locked --bin pgward

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /etc/pgward pgward \
    && mkdir -p /var/lib/pgward/audit \
    && chown pgward /var/lib/pgward/audit
COPY --from=build /src/target/release/pgward /usr/local/bin/pgward
COPY rules /etc/pgward/rules
COPY docker/pgward.toml /etc/pgward/pgward.toml
USER pgward
# The audit log (Parquet files and the write-ahead segment): mount a volume.
VOLUME /var/lib/pgward/audit
EXPOSE 6432
ENTRYPOINT ["pgward"]
CMD ["serve", "--config", "/etc/pgward/pgward.toml"]
