#!/usr/bin/env bash
# The Docker set-up, end to end: docker/test.sh (or `make docker-test`), as root.
#
#  1. a Docker engine: Debian's docker.io, docker-compose and debootstrap are installed when
#     missing; dockerd is started when none answers (vfs storage, no bridge: every container
#     uses the host's network, as docker/compose.yaml does anyway);
#  2. the image: a Debian bookworm base made with debootstrap (no registry needed; set
#     TFSPARK_DOCKER_BASE=python:3.11-slim-bookworm to build on the public image instead), then
#     docker/Dockerfile on it, with this machine's extra CA certificates in docker/certs/;
#  3. the cluster of docker/compose.yaml, and the MNIST example in it with docs/deploying.md's
#     commands: data setup to HDFS, training (2 TF workers fed by Spark), export, inference;
#  4. checks: the printed test accuracy (>= TFSPARK_MIN_ACCURACY, default 0.90) and the
#     exported SavedModel on the cluster's HDFS;
#  5. the cluster goes down (containers, volumes) whatever happened; a dockerd started here is
#     stopped. Images are kept for the next run.
#
# Every step has a time limit; the whole run stops after TFSPARK_DOCKER_TIMEOUT seconds
# (default 1500) with a message naming the step.
#
# docker/test.sh --build-only does steps 1 and 2 only (CI runs it while the test suite runs, so
# that the downloads overlap the suite; the full run then finds the image built).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_ONLY=""
[ "${1:-}" = --build-only ] && BUILD_ONLY=1

BASE_IMAGE=${TFSPARK_DOCKER_BASE:-tfspark-base:bookworm}
MIN_ACCURACY=${TFSPARK_MIN_ACCURACY:-0.90}
STARTED=$(date +%s)
DEADLINE=$(( STARTED + ${TFSPARK_DOCKER_TIMEOUT:-1500} ))
COMPOSE_FILE=docker/compose.yaml
LOGS=${TFSPARK_DOCKER_LOGS:-$(mktemp -d /tmp/tfspark-docker-test.XXXXXX)}
started_dockerd=""
step_started=$(date +%s)

say() { echo "[docker-test] $*"; }
fail() { echo "[docker-test] FAILED: $*" >&2; exit 1; }

# step NAME SECONDS COMMAND: run the shell command COMMAND within SECONDS (and the deadline)
step() {
  local name=$1 limit=$2 command=$3
  local left=$(( DEADLINE - $(date +%s) ))
  (( left < limit )) && limit=$left
  (( limit > 0 )) || fail "no time left for '$name' (TFSPARK_DOCKER_TIMEOUT)"
  step_started=$(date +%s)
  say "$name (limit ${limit}s)"
  local rc=0
  timeout --kill-after=10 "$limit" bash -euo pipefail -c "$command" || rc=$?
  (( rc == 124 || rc == 137 )) && fail "'$name' did not finish within ${limit}s"
  (( rc == 0 )) || fail "'$name' exited with status $rc"
  say "$name: done in $(( $(date +%s) - step_started ))s"
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -f "$COMPOSE_FILE" "$@"
  else
    docker-compose -f "$COMPOSE_FILE" "$@"
  fi
}

install_tools() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
    || missing+=(docker-compose)
  (( ${#missing[@]} )) || return 0
  command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] \
    || fail "missing ${missing[*]}: install them (Debian/Ubuntu: apt-get install ${missing[*]})"
  # (another apt-get, e.g. make test's, may hold the lock for a while)
  apt-get -qq -o DPkg::Lock::Timeout=600 update
  DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends "${missing[@]}"
}

start_engine() {
  docker info >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || fail "no Docker engine answers and starting one needs root"
  say "starting dockerd (log: $LOGS/dockerd.log)"
  # the engine picks its storage driver (overlay2 where the kernel allows it, else vfs)
  dockerd --iptables=false --bridge=none >"$LOGS/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$started_dockerd" 2>/dev/null || break
    sleep 1
  done
  tail -20 "$LOGS/dockerd.log" >&2
  fail "the Docker engine did not start (see $LOGS/dockerd.log)"
}

# vfs copies the whole image (about 4 GB) for every container: the cluster's 6 need room
check_disk() {
  local driver root free_gb need_gb=6
  driver=$(docker info --format '{{.Driver}}')
  root=$(docker info --format '{{.DockerRootDir}}')
  [ "$driver" = vfs ] && need_gb=30
  free_gb=$(( $(df -Pk "$root" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
  say "storage driver $driver, ${free_gb} GB free in $root"
  (( free_gb >= need_gb )) || fail "$root has ${free_gb} GB free; the image and the cluster's \
containers need about ${need_gb} GB with the $driver storage driver"
}

build_base() {
  if [ "$BASE_IMAGE" != tfspark-base:bookworm ] || docker image inspect "$BASE_IMAGE" \
      >/dev/null 2>&1; then
    return 0
  fi
  local root
  root=$(mktemp -d /tmp/tfspark-rootfs.XXXXXX)
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian \
    >"$LOGS/debootstrap.log" 2>&1 || { tail -20 "$LOGS/debootstrap.log" >&2; rm -rf "$root"; return 1; }
  tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
}

build_image() {
  # a TLS-intercepting proxy's CA, where this machine has one, is trusted in the build too
  find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' \
    -exec cp {} docker/certs/ \; 2>/dev/null || true
  docker build --network host --build-arg BASE="$BASE_IMAGE" -t tfspark-node:latest \
    -f docker/Dockerfile . >"$LOGS/build.log" 2>&1 || { tail -40 "$LOGS/build.log" >&2; return 1; }
}

teardown() {
  local rc=$?
  if docker info >/dev/null 2>&1; then
    if (( rc != 0 )); then
      compose logs --no-color --tail 80 >"$LOGS/cluster.log" 2>&1 || true
      say "end of the cluster's logs ($LOGS/cluster.log):"
      tail -60 "$LOGS/cluster.log" >&2 || true
    fi
    say "taking the cluster down"
    timeout 120 bash -c "compose --profile client down -v --remove-orphans --timeout 10" \
      >/dev/null 2>&1 || say "warning: 'compose down' failed"
  fi
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null && wait "$started_dockerd" 2>/dev/null || true
  fi
  if (( rc == 0 )) && [ -n "$BUILD_ONLY" ]; then say "image built in $(( $(date +%s) - STARTED ))s"
  elif (( rc == 0 )); then say "PASSED in $(( $(date +%s) - STARTED ))s"; else say "logs in $LOGS"; fi
}

# run_client NAME LIMIT ARGS...: spark-submit ARGS in the cluster, output kept in $LOGS/NAME.log
run_client() {
  local name=$1 limit=$2; shift 2
  step "$name" "$limit" "compose run --rm -T client $* >'$LOGS/$name.log' 2>&1 \
    || { tail -60 '$LOGS/$name.log' >&2; exit 1; }"
  grep -v '^\s*$' "$LOGS/$name.log" | grep -iv 'warn\|info' | tail -5 || true
}

check_outcome() {
  local accuracy
  accuracy=$(sed -n 's/^test accuracy: \([0-9.]*\)$/\1/p' "$LOGS/inference.log" | tail -1)
  [ -n "$accuracy" ] || fail "inference printed no 'test accuracy:' line ($LOGS/inference.log)"
  python3 - "$accuracy" "$MIN_ACCURACY" <<'EOF' || exit 1
import sys
accuracy, bar = map(float, sys.argv[1:])
sys.exit(0 if accuracy >= bar else f"[docker-test] FAILED: test accuracy {accuracy} < {bar}")
EOF
  say "test accuracy $accuracy (>= $MIN_ACCURACY)"
  # the SavedModel the training exported, read back from the cluster's HDFS (WebHDFS)
  python3 - <<'EOF' || exit 1
import json, sys, urllib.request
base = "http://127.0.0.1:9870/webhdfs/v1/user/root/mnist/export"
def ls(path):
    with urllib.request.urlopen(f"{base}{path}?op=LISTSTATUS&user.name=root", timeout=30) as r:
        return {s["pathSuffix"]: s for s in json.load(r)["FileStatuses"]["FileStatus"]}
versions = sorted(int(v) for v in ls("") if v.isdigit())
if not versions:
    sys.exit("[docker-test] FAILED: no SavedModel version under hdfs:///user/root/mnist/export")
files = ls(f"/{versions[-1]}")
variables = ls(f"/{versions[-1]}/variables")
if "saved_model.pb" not in files or files["saved_model.pb"]["length"] == 0 or not any(
        name.startswith("variables.data") and s["length"] > 0 for name, s in variables.items()):
    sys.exit(f"[docker-test] FAILED: version {versions[-1]} is not a complete SavedModel: "
             f"{sorted(files)} / variables: {sorted(variables)}")
print(f"[docker-test] SavedModel on HDFS: /user/root/mnist/export/{versions[-1]} "
      f"(saved_model.pb {files['saved_model.pb']['length']} bytes)")
EOF
}

export COMPOSE_FILE BASE_IMAGE LOGS
export -f say fail compose install_tools build_base build_image
trap teardown EXIT
say "logs in $LOGS"
step "install docker.io, docker-compose, debootstrap" 600 install_tools
start_engine
check_disk
step "base image $BASE_IMAGE" 600 build_base
step "image tfspark-node" 1200 build_image
[ -n "$BUILD_ONLY" ] && exit 0
compose --profile client down -v --remove-orphans >/dev/null 2>&1 || true  # leftovers
step "cluster up (HDFS, Spark master, 2 workers)" 300 "compose up -d"
run_client data-setup 300 examples/mnist/mnist_data_setup.py --output mnist/data
run_client training 600 examples/mnist/mnist_spark.py --cluster_size 2 \
  --images_labels mnist/data/train --export_dir mnist/export --epochs 5
run_client inference 300 examples/mnist/mnist_inference.py --export_dir mnist/export \
  --images_labels mnist/data/test --output mnist/predictions
check_outcome
