# Dockerfile: the oauth2-exporter container image. A build stage compiles the exporter and
# assembles the final root filesystem (scripts/image-rootfs); the final stage is FROM scratch:
# the binary, exactly the shared libraries it links, CA certificates, exporter.toml. It runs as
# UID/GID 65534, writes nothing (a read-only root filesystem works) and listens on 9875.
#
#   docker build -t oauth2-exporter:0.1.0 .        # or: podman build -t oauth2-exporter:0.1.0 .
#   docker run --read-only -p 9875:9875 oauth2-exporter:0.1.0
#
# Without a registry to pull the Rust image from, scripts/build-image builds this same file
# offline: it assembles the root filesystem from a locally built binary and passes it with
# `--build-context rootfs=DIR`, which replaces the `rootfs` stage below (see docs/deployment.md).

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm

FROM ${RUST_IMAGE} AS rootfs
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin oauth2-exporter \
 && scripts/image-rootfs target/release/oauth2-exporter /rootfs

FROM scratch
COPY --from=rootfs /rootfs/ /
LABEL org.opencontainers.image.title="oauth2-exporter" \
      org.opencontainers.image.description="Prometheus exporter that continuously proves OAuth2 machine-to-machine credentials work" \
      org.opencontainers.image.licenses="Apache-2.0"
# Not root: the exporter needs no privilege (9875 is not a privileged port).
USER 65534:65534
# The default --config.file is exporter.toml in the working directory, so `docker run IMAGE
# check` or any other arguments still find the shipped configuration.
WORKDIR /etc/oauth2-exporter
EXPOSE 9875
ENTRYPOINT ["/usr/bin/oauth2-exporter"]
CMD ["--config.file=/etc/oauth2-exporter/exporter.toml"]
