# Build stage: the Go release line named by the go directive in go.mod.
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first, so this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# Static binary: the runtime image shares no libc with the build image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/orderstream .

# Runtime stage: Alpine rather than distroless because a container
# healthcheck needs an HTTP client inside the image (busybox wget), and the
# binary has no health subcommand of its own. Alpine's base also carries the
# CA bundle, for TLS connections to managed Postgres or Redis.
#
# No HEALTHCHECK here: only `all` and `api` serve HTTP, while the same image
# also runs `worker` and `forwarder`. The compose file checks /healthz on the
# service that serves it.
FROM alpine:3.22
RUN addgroup -S -g 10001 orderstream \
 && adduser -S -D -H -u 10001 -G orderstream orderstream
COPY --from=build /out/orderstream /orderstream
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/orderstream"]
CMD ["all"]
