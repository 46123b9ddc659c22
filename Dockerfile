# The image the chart runs, for those with docker: a static zen-watcher binary on distroless, as a
# non-root user. `make image` writes the same binary as an OCI archive without docker.
# Reproducible: pin both base images by digest in CI (docker buildx imagetools inspect prints
# them); -trimpath and an empty build ID make the binary depend on the sources and Go version only.
#   make image-docker   (docker build -t ghcr.io/kube-zen/zen-watcher:<appVersion> .)
ARG GO_VERSION=1.26.8
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY pkg ./pkg
RUN CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w -buildid=" \
	-o /out/zen-watcher ./cmd/zen-watcher

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/zen-watcher /zen-watcher
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/zen-watcher"]
