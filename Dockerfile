# syntax=docker/dockerfile:1
#
# gpt-load container image.
#
#   docker build -t gpt-load --build-arg VERSION=v1.2.3 .
#   docker run -d -p 3000:3000 -v "$PWD/keys.txt:/app/keys.txt:ro" \
#       --stop-timeout 70 gpt-load
#
# The build stage runs on the builder's own platform and cross-compiles
# (CGO is off), so `docker buildx build --platform linux/amd64,linux/arm64`
# needs no emulation for the Go compile.

# ---------------------------------------------------------------- build ----
FROM --platform=$BUILDPLATFORM golang:1.26-alpine AS build

WORKDIR /src

# Module downloads get their own layer: it is rebuilt only when go.mod or
# go.sum change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download

COPY . .

ARG VERSION=dev
# Set by buildx from --platform; empty in a plain `docker build`, where Go
# then builds for the builder's own OS and architecture.
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/gpt-load ./cmd/gpt-load

# -------------------------------------------------------------- runtime ----
FROM alpine:3.22

# ca-certificates: TLS to the upstreams. tzdata: log times in TZ if set.
# busybox (part of alpine) provides the wget used by HEALTHCHECK.
RUN apk add --no-cache ca-certificates tzdata \
    && addgroup -S -g 10001 gpt-load \
    && adduser -S -D -H -u 10001 -G gpt-load -h /app gpt-load \
    && mkdir -p /app/logs \
    && chown 10001:10001 /app/logs

COPY --from=build /out/gpt-load /usr/local/bin/gpt-load

# The binary reads .env from its working directory when one is present
# (mount one at /app/.env, or pass variables with -e / --env-file).
WORKDIR /app

# KEYS_FILE is where the keys file is expected: mount it read-only, e.g.
# -v ./keys.txt:/app/keys.txt:ro. It must be readable by uid 10001.
# HOST=0.0.0.0 so that published ports reach the proxy.
# With LOG_ENABLE_FILE=true the default LOG_FILE_PATH (logs/app.log) lands
# in /app/logs, which uid 10001 owns.
# Variables set here win over a mounted /app/.env (the environment always
# wins), so change them with -e / environment:. PORT is left unset (default
# 3000); set it with -e PORT=… rather than in /app/.env, or the HEALTHCHECK
# below, which only sees the environment, probes the wrong port.
ENV KEYS_FILE=/app/keys.txt \
    HOST=0.0.0.0

USER 10001:10001

EXPOSE 3000

# /health needs no AUTH_KEY; it answers 503 only when no key is usable
# (benched upstreams, even all of them, leave it 200 "degraded"), and
# busybox wget turns the 503 into a non-zero exit. Shell form so that
# a PORT given at run time is honoured.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD wget -q -O /dev/null "http://127.0.0.1:${PORT:-3000}/health" || exit 1

# SIGTERM (docker stop) drains in-flight requests for up to
# SERVER_GRACEFUL_SHUTDOWN_TIMEOUT (60 s by default): give docker stop a
# longer timeout: docker run --stop-timeout 70 (or docker stop -t 70), or
# stop_grace_period in compose. Docker's default of 10 s cuts the drain.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/gpt-load"]
