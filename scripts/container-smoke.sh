#!/usr/bin/env bash
# Run the Dockerfile's runtime stage on a machine with a Docker engine but no image registry
# (docs/operations.md, "What was checked").
#
#   scripts/container-smoke.sh BINARY BASE_IMAGE [POSTGRES_URL]
#
# BINARY is a sektorbro binary built on this machine (glibc-compatible with BASE_IMAGE);
# BASE_IMAGE a local image standing in for the distroless runtime base, e.g. a Debian 12 rootfs
# made with `debootstrap --variant=minbase bookworm DIR` and `tar -C DIR -c . | docker import -
# NAME`. The build stage is replaced by one that copies BINARY; every instruction of the runtime
# stage is taken from the Dockerfile as it is. Then, on loopback only (host network, ports
# chosen free):
#   1. one container on its SQLite volume: runs as 65532, becomes healthy through its own
#      HEALTHCHECK command, answers /healthz and a FHIR write, keeps its database on the volume
#      owned by 65532, and stops with exit code 0 on SIGTERM;
#   2. with POSTGRES_URL (a server URL; a fresh schema is made in it): two containers on that
#      schema, a resource written through one is read through the other, and both serve /metrics.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:?usage: $0 BINARY BASE_IMAGE [POSTGRES_URL]}
base=${2:?usage: $0 BINARY BASE_IMAGE [POSTGRES_URL]}
postgres=${3:-}
tag=sektorbro-smoke:local
token=smoke-development-token-0123456789
ctx=$(mktemp -d)
run_id=$$
containers=()
volume=sektorbro-smoke-$run_id

cleanup() {
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  docker volume rm "$volume" >/dev/null 2>&1 || true
  rm -rf "$ctx"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# The Dockerfile with its build stage replaced, its runtime stage verbatim.
cp "$binary" "$ctx/sektorbro"
mkdir -p "$ctx/deploy"
cp deploy/container.toml "$ctx/deploy/container.toml"
{
  echo "FROM $base AS build"
  echo "COPY sektorbro /sektorbro"
  echo "RUN chmod 755 /sektorbro && mkdir -p /state/var/lib/sektorbro"
  sed -n '/^FROM .* AS runtime$/,$p' Dockerfile | sed "1s|^FROM .* AS runtime\$|FROM $base AS runtime|"
} > "$ctx/Dockerfile"
grep -q '^HEALTHCHECK' "$ctx/Dockerfile" || fail "the runtime stage was not found in the Dockerfile"
echo "== build the runtime stage on $base"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null

wait_for() { # URL
  for _ in $(seq 1 150); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

echo "== 1. SQLite on the image's volume"
port=$(free_port)
c1=sektorbro-smoke-1-$run_id
containers+=("$c1")
docker run -d --name "$c1" --network host -v "$volume:/var/lib/sektorbro" \
  -e SEKTORBRO_LISTEN="127.0.0.1:$port" -e SEKTORBRO_DEV_TOKEN="$token" \
  --health-interval 1s --health-start-period 1s "$tag" >/dev/null
wait_for "http://127.0.0.1:$port/healthz" || { docker logs "$c1" >&2; fail "no /healthz"; }
[ "$(docker inspect -f '{{.Config.User}}' "$c1")" = "65532:65532" ] || fail "not the image's user"
uid=$(docker top "$c1" -o uid | awk 'NR==2 {print $1}')
[ "$uid" = "65532" ] || fail "the gateway runs as uid $uid"
for _ in $(seq 1 60); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$c1")" = healthy ] && break
  sleep 0.5
done
[ "$(docker inspect -f '{{.State.Health.Status}}' "$c1")" = healthy ] \
  || fail "HEALTHCHECK: $(docker inspect -f '{{json .State.Health}}' "$c1")"
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/fhir/Patient" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/fhir+json' \
  -d '{"resourceType":"Patient","name":[{"family":"Smoke"}]}')
[ "$status" = 201 ] || fail "create answered $status"
owner=$(docker run --rm --network none -v "$volume:/data" "$base" stat -c '%u' /data/sektorbro.db)
[ "$owner" = 65532 ] || fail "the database file belongs to uid $owner"
docker stop -t 30 "$c1" >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' "$c1")" = 0 ] || fail "exit code after SIGTERM"
echo "ok: user 65532, healthy by its HEALTHCHECK, /healthz, a write, database on the volume, clean stop"

if [ -n "$postgres" ]; then
  echo "== 2. two instances on one PostgreSQL schema"
  schema="smoke_$run_id"
  psql "$postgres" -qc "CREATE SCHEMA $schema" >/dev/null
  sep='?'; case "$postgres" in *\?*) sep='&';; esac
  url="$postgres${sep}options=-c%20search_path%3D$schema"
  ports=()
  for n in 1 2; do
    p=$(free_port); ports+=("$p")
    c=sektorbro-smoke-pg$n-$run_id
    containers+=("$c")
    docker run -d --name "$c" --network host -e SEKTORBRO_LISTEN="127.0.0.1:$p" \
      -e SEKTORBRO_DATABASE_URL="$url" -e SEKTORBRO_DEV_TOKEN="$token" "$tag" >/dev/null
  done
  for p in "${ports[@]}"; do
    wait_for "http://127.0.0.1:$p/readyz" || fail "instance on $p not ready"
  done
  curl -fsS -X PUT "http://127.0.0.1:${ports[0]}/fhir/Patient/smoke-1" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/fhir+json' \
    -d '{"resourceType":"Patient","id":"smoke-1","name":[{"family":"Shared"}]}' >/dev/null
  curl -fsS "http://127.0.0.1:${ports[1]}/fhir/Patient/smoke-1" -H "Authorization: Bearer $token" \
    | grep -q '"Shared"' || fail "the second instance does not see the first's write"
  for p in "${ports[@]}"; do
    curl -fsS "http://127.0.0.1:$p/metrics" | grep -q '^sektorbro_http_requests_total' \
      || fail "no request metrics on $p"
  done
  psql "$postgres" -qc "DROP SCHEMA $schema CASCADE" >/dev/null
  echo "ok: a write through one instance read through the other; both serve /metrics"
fi
echo "container smoke: passed"
