# capwatch container image: `capwatch serve` on the bundled model, as a non-root user (10001) that
# works with a read-only root filesystem (only /opt/capwatch/logs and /tmp need to be writable).
#
#   docker build -t capwatch .            (or: podman build --format docker -t capwatch .)
#   docker run --rm -p 8000:8000 capwatch
#
# Three stages, each from a pinned official image (override with --build-arg; the same file builds
# from local stand-ins of these images in `make bench-container`, see tools/container/):
#   build        the release binary, cargo build --release --locked
#   onnxruntime  libonnxruntime.so from the same pinned PyPI wheel as `make setup`
#                (tools/fetch_onnxruntime.py)
#   runtime      Debian slim + the binary, the library, models/default, the config, test_images
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
# Parallel rustc jobs; empty means one per core. `make bench-container` passes 1 so that a build
# in the background leaves the machine's cores to whoever else is working on it.
ARG CARGO_BUILD_JOBS=
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY assets ./assets
COPY src ./src
# The cargo registry and target/ live in cache mounts (BuildKit and buildah/podman both keep them
# between builds), so a source change recompiles capwatch alone, not its ~300 dependencies. The
# binary is copied out of the cache mount in the same step, without its debug line tables
# (Cargo.toml's release profile keeps them: 106 MB; with symbols only, 20 MB; a backtrace still
# names the functions, without file:line).
RUN --mount=type=cache,id=capwatch-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=capwatch-cargo-target,target=/src/target,sharing=locked \
    set -eu; \
    jobs="${CARGO_BUILD_JOBS:-}"; unset CARGO_BUILD_JOBS; \
    cargo build --release --locked ${jobs:+--jobs "$jobs"}; \
    install -D -m 0755 target/release/capwatch /out/capwatch; \
    strip --strip-debug /out/capwatch; \
    /out/capwatch --version

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS onnxruntime
# `pip download` of the pinned onnxruntime wheel (PyPI only), libonnxruntime.so taken out of it:
# the library `make setup` puts in .ort/, the one the tests run against.
COPY tools/fetch_onnxruntime.py /fetch/fetch_onnxruntime.py
RUN python3 /fetch/fetch_onnxruntime.py --dest /ort && ls -l /ort

# ---------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
RUN groupadd --gid 10001 capwatch \
 && useradd --uid 10001 --gid 10001 --home-dir /opt/capwatch --no-create-home --shell /usr/sbin/nologin capwatch
# CA certificates for the monitor's HTTPS alert sinks (rustls reads the system roots), one file
# from the build image instead of the ca-certificates package and its openssl dependency.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=onnxruntime /ort/libonnxruntime.so /opt/capwatch/lib/libonnxruntime.so
COPY --from=onnxruntime /ort/VERSION /opt/capwatch/lib/ONNXRUNTIME_VERSION
COPY models/default /opt/capwatch/models/default
COPY test_images /opt/capwatch/test_images
COPY config/monitoring_config.yaml /opt/capwatch/config/monitoring_config.yaml
COPY tools/container/healthcheck.sh /usr/local/bin/capwatch-healthcheck
# Everything above is root's and read-only to the server; the one directory it may write
# (the monitor's logs, a drift reference if the config puts one there) belongs to 10001. With a
# read-only root filesystem, mount a writable volume here and at /tmp.
RUN install -d -o 10001 -g 10001 -m 0755 /opt/capwatch/logs
COPY --from=build /out/capwatch /usr/local/bin/capwatch

WORKDIR /opt/capwatch
# The binary finds ONNX Runtime here (src/engine/runtime.rs: ORT_DYLIB_PATH first). Relative
# paths in the config (models/default, test_images/, logs/) resolve against the WORKDIR, also
# when the config is mounted elsewhere (--config /etc/capwatch/monitoring_config.yaml).
ENV ORT_DYLIB_PATH=/opt/capwatch/lib/libonnxruntime.so
USER 10001:10001
EXPOSE 8000
# GET /health without curl (bash /dev/tcp); 200 is healthy. Serving on another port: set
# CAPWATCH_HEALTH_PORT as well. The first caption is a warm-up, so give it a start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/capwatch-healthcheck"]
# SIGTERM: stop accepting, finish in-flight requests, drain the queue, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["capwatch"]
CMD ["serve", "--config", "/opt/capwatch/config/monitoring_config.yaml", "--host", "0.0.0.0", "--port", "8000"]
