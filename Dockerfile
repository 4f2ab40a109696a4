# The books-ms runtime image: one static binary and the web components, no
# shell, no package manager, a non-root user. Build dist/books-ms first
# (scripts/dist.sh, or the tests image of Dockerfile.test); the harness does
# both. What changes least is copied first, for the layer cache.
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/books-ms/books-ms
LABEL org.opencontainers.image.title="books-ms" \
      org.opencontainers.image.description="The books REST API over MongoDB, with its web components" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

# The original image's environment, kept for compatibility.
ENV DB_DBNAME=books \
    DB_COLLECTION=books \
    LISTEN_ADDR=0.0.0.0:8080 \
    STATIC_DIR=/app/client

WORKDIR /app
COPY client /app/client
COPY dist/books-ms /app/books-ms

# No user database in a scratch image: a numeric, unprivileged uid/gid.
USER 65532:65532
EXPOSE 8080
# The binary probes its own /health (no curl or shell in here). Docker runs
# the first probe one interval after the start, so the interval is how long
# a deploy waits to see a new container healthy (Docker 20.10 has no
# --start-interval); a probe costs about a millisecond of CPU.
HEALTHCHECK --interval=2s --timeout=2s --start-period=10s --retries=3 CMD ["/app/books-ms", "healthcheck"]
ENTRYPOINT ["/app/books-ms"]
