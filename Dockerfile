# syntax=docker/dockerfile:1
#
# Switchboard image: one static binary per command, no shell, runs as non-root.
#
#   docker build -t switchboard .
#   docker run --rm switchboard --help          (ENTRYPOINT is /chatd)
#   docker run --rm --entrypoint /chatctl switchboard hosts
#
# docker-compose.yml builds it for the chatd1..chatd3 services.

# ---- build stage ---------------------------------------------------------------------
FROM golang:1.26 AS build

WORKDIR /src

# Pure-Go static binaries (no libc): they run on distroless/static. GOTOOLCHAIN=auto lets
# an older 1.26.x image fetch the exact toolchain go.mod asks for.
ENV CGO_ENABLED=0 \
    GOTOOLCHAIN=auto

# Dependencies first, in their own layer: source edits don't re-download modules.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .

# -trimpath: no build-machine paths in the binary (reproducible, no leak of $HOME);
# -s -w: drop the symbol table and DWARF (smaller image; stack traces keep function names).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags='-s -w' -o /out/chatd ./cmd/chatd && \
    go build -trimpath -ldflags='-s -w' -o /out/chatctl ./cmd/chatctl

# ---- runtime stage -------------------------------------------------------------------
# distroless/static: CA certificates, /etc/passwd with a "nonroot" user (65532), tzdata;
# no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/chatd /chatd
COPY --from=build /out/chatctl /chatctl
# The documented example config, for `--config /etc/switchboard/chatd.yaml`; it only
# restates the defaults, so the image behaves the same without it.
COPY configs/chatd.yaml /etc/switchboard/chatd.yaml

USER nonroot:nonroot

# 8080: public listener (API, /ws, web client, /healthz, /readyz, /metrics).
# 9080: internal host-to-host listener; publish it only on a private network.
EXPOSE 8080 9080

ENTRYPOINT ["/chatd"]
CMD ["serve"]
