# books-lab/rust: the lab's stand-in for the public rust:<version>-bookworm
# image, which cannot be pulled here. lab/up.sh builds it (build_rust_image)
# from a context it streams itself: this file plus rust/, the host's active
# rustup toolchain without its documentation.
#
# Laid out like the official image where it matters to a Dockerfile:
# CARGO_HOME=/usr/local/cargo with cargo and rustc in /usr/local/cargo/bin
# (first on PATH), RUST_VERSION set. There is no rustup: the toolchain sits
# at a plain prefix, /usr/local/rust, and its programs are linked into
# CARGO_HOME/bin (rustc finds its sysroot through the link).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

# What a Rust build needs from the system (the official image has these
# from buildpack-deps): a C compiler and libc headers (the linker driver,
# build scripts like ring's, static glibc for crt-static builds),
# pkg-config, git, and CA certificates for cargo's downloads. The base image
# has no docker-clean hook, so the downloaded .debs (150 MB) are removed here.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates gcc libc6-dev pkg-config git \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

ARG RUST_VERSION
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH \
    RUST_VERSION=${RUST_VERSION}

COPY rust /usr/local/rust
# The smoke test compiles and links a program, so a broken copy fails here
# and not in the first project build.
RUN mkdir -p "$CARGO_HOME/bin" \
 && ln -s /usr/local/rust/bin/* "$CARGO_HOME/bin/" \
 && chmod -R a+w "$CARGO_HOME" \
 && cargo --version && rustc --version \
 && printf 'fn main() { println!("rustc links"); }\n' >/tmp/smoke.rs \
 && rustc -o /tmp/smoke /tmp/smoke.rs && /tmp/smoke \
 && rm -f /tmp/smoke /tmp/smoke.rs
