# syntax=docker/dockerfile:1
# spanblame's container image: built from this checkout in Debian's Rust image, run in
# bookworm-slim as the unprivileged `spanblame` user, with its data in the volume
# /var/lib/spanblame and the packaged configuration (packaging/spanblame.toml) with its
# listeners moved off loopback.
#   docker build --build-arg SPANBLAME_BUILD_COMMIT=$(git rev-parse HEAD) -t spanblame .
#   docker run -p 7420:7420 -p 4317:4317 -p 4318:4318 -v spanblame-data:/var/lib/spanblame spanblame
# The tests cannot build it (no container engine runs there); packaging.rs checks that its
# settings are a valid configuration and that the health check and volume match them.

FROM rust:1.95-bookworm AS build
ARG SPANBLAME_BUILD_COMMIT=unknown
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    SPANBLAME_BUILD_COMMIT=$SPANBLAME_BUILD_COMMIT cargo build --release --locked -p spanblame \
    && objcopy --strip-all target/release/spanblame /usr/local/bin/spanblame

FROM debian:bookworm-slim
# git for the repository mirrors, curl for the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --home-dir /var/lib/spanblame \
        --shell /usr/sbin/nologin spanblame \
    && install -d -o spanblame -g spanblame -m 750 /var/lib/spanblame
COPY --from=build /usr/local/bin/spanblame /usr/bin/spanblame
COPY packaging/spanblame.toml /etc/spanblame/spanblame.toml
ENV SPANBLAME_SERVER_HTTP_ADDR=0.0.0.0:7420 \
    SPANBLAME_SERVER_OTLP_GRPC_ADDR=0.0.0.0:4317 \
    SPANBLAME_SERVER_OTLP_HTTP_ADDR=0.0.0.0:4318 \
    SPANBLAME_SERVER_ZIPKIN_ADDR=0.0.0.0:9411
USER spanblame
VOLUME /var/lib/spanblame
EXPOSE 7420 4317 4318 9411
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl --fail --silent --max-time 2 http://127.0.0.1:7420/readyz >/dev/null || exit 1
ENTRYPOINT ["/usr/bin/spanblame"]
CMD ["serve", "--config", "/etc/spanblame/spanblame.toml"]
