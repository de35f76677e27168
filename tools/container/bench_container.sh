#!/usr/bin/env bash
# `make bench-container`: build the capwatch image from the repository's Dockerfile with podman,
# run it the way the Kubernetes manifests do (user 10001, read-only root filesystem, writable
# tmpfs at /opt/capwatch/logs and /tmp) and check it: /ready, a real caption, the image's
# HEALTHCHECK, the user, the image size, a graceful stop (exit code 0). Every step prints what
# it checked; the first failure stops the run with a non-zero exit code.
#
# Base images. Where a registry is reachable, the Dockerfile's defaults (official rust, python
# and debian images) are pulled. Where none is (this project's machines), local stand-ins
# for the three are made once and reused (tools/container/: a debootstrap'ed, slimmed Debian
# bookworm; Debian's Python 3.11 on it; this machine's Rust toolchain on it) and passed with
# --build-arg; the Dockerfile itself is the same.
#
# Settings (environment):
#   BASES=auto|official|standin  which base images (auto: official when a registry answers)
#   IMAGE=localhost/capwatch:dev the tag to build and run
#   CARGO_BUILD_JOBS=1           rustc jobs in the build stage (empty: one per core)
#   NICE=19                      build priority (leaves the cores to interactive work)
#   RUNTIME=runc                 OCI runtime (default runc when installed: crun fails on
#                                hybrid cgroup hosts such as this project's machines)
#   PORT=0                       host port on 127.0.0.1 (0: a free one)
#   REBUILD_STANDINS=1           remake the stand-in base images
#   VERBOSE=1                    stream the build output (else it goes to the log only)
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$ROOT/.tmp/container
mkdir -p "$WORK"

IMAGE=${IMAGE:-localhost/capwatch:dev}
BASES=${BASES:-auto}
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS-1}
NICE=${NICE:-19}
PORT=${PORT:-0}
VERBOSE=${VERBOSE:-0}
CONTAINER=capwatch-bench
STANDIN=localhost/capwatch-standin
TEST_IMAGE=test_images/a_small_red_triangle.jpg
TEST_TYPE=image/jpeg

if [ -t 1 ]; then GREEN=$'\e[32m' RED=$'\e[31m' BOLD=$'\e[1m' OFF=$'\e[0m'; else GREEN='' RED='' BOLD='' OFF=''; fi
step() { printf '%s==> %s%s\n' "$BOLD" "$*" "$OFF"; }
ok() { printf '    %sok%s   %s\n' "$GREEN" "$OFF" "$*"; }
info() { printf '    %s\n' "$*"; }
fail() { printf '    %sFAIL%s %s\n' "$RED" "$OFF" "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------
step "tools"
need_install=()
command -v podman >/dev/null || need_install+=(podman buildah runc fuse-overlayfs uidmap)
for tool in curl python3; do command -v "$tool" >/dev/null || fail "$tool is needed (to talk to the container)"; done
if [ ${#need_install[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    info "podman is not installed; installing ${need_install[*]} with apt-get (running as root)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_install[@]}"
  else
    fail "podman is not installed. Install podman (Debian/Ubuntu: sudo apt-get install podman runc), or build with Docker: docker build -t capwatch ."
  fi
fi
ok "$(podman --version)"

# The OCI runtime and ulimits, for build and run alike. Root podman asks for nofile/nproc limits
# above the host's hard limits unless told otherwise, which fails without CAP_SYS_RESOURCE.
if [ -z "${RUNTIME:-}" ] && command -v runc >/dev/null; then RUNTIME=runc; fi
ENGINE_FLAGS=()
if [ -n "${RUNTIME:-}" ]; then ENGINE_FLAGS+=(--runtime "$RUNTIME"); fi
hard_nofile=$(ulimit -Hn); hard_nproc=$(ulimit -Hu)
if [ "$hard_nofile" != unlimited ]; then ENGINE_FLAGS+=(--ulimit "nofile=$hard_nofile:$hard_nofile"); fi
if [ "$hard_nproc" != unlimited ]; then
  nproc_limit=$(( hard_nproc < 32768 ? hard_nproc : 32768 ))
  ENGINE_FLAGS+=(--ulimit "nproc=$nproc_limit:$nproc_limit")
fi
ok "engine flags: ${ENGINE_FLAGS[*]:-(none)}"

# ---------------------------------------------------------------------------------------------
step "base images"
registry_answers() {
  curl -sI -m 5 https://registry-1.docker.io/v2/ 2>/dev/null | grep -qi '^docker-distribution-api-version'
}
if [ "$BASES" = auto ]; then
  if registry_answers; then BASES=official; else BASES=standin; fi
  info "docker.io $( [ "$BASES" = official ] && echo "answers: using the official" || echo "does not answer: using local stand-ins of the") base images"
fi

# A stand-in is reused while the recipe it was made from is unchanged (label capwatch.recipe).
recipe_of() { cat "$@" | sha256sum | cut -c1-16; }
have_current() {  # IMAGE RECIPE
  [ "${REBUILD_STANDINS:-0}" != 1 ] && podman image exists "$1" &&
    [ "$(podman image inspect --format '{{index .Labels "capwatch.recipe"}}' "$1" 2>/dev/null)" = "$2" ]
}
ca_bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
CA_FLAGS=()
if [ -s "$ca_bundle" ]; then CA_FLAGS=(--volume "$ca_bundle:/host-ca/ca-certificates.crt:ro"); fi

BUILD_ARGS=()
if [ "$BASES" = standin ]; then
  DEBIAN_IMAGE=$STANDIN/debian:bookworm-slim
  recipe=$(recipe_of tools/container/slim-rootfs.sh)
  if have_current "$DEBIAN_IMAGE" "$recipe"; then
    ok "$DEBIAN_IMAGE (reused)"
  else
    if ! command -v debootstrap >/dev/null; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        info "debootstrap is not installed; installing it with apt-get (running as root)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
      else
        fail "debootstrap is needed to make the Debian stand-in (or run with BASES=official where a registry is reachable)"
      fi
    fi
    [ "$(id -u)" = 0 ] || fail "making the Debian stand-in with debootstrap needs root"
    rootfs=$(mktemp -d /var/tmp/capwatch-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    started=$(now)
    info "debootstrap --variant=minbase bookworm (log: $WORK/debootstrap.log)"
    debootstrap --variant=minbase bookworm "$rootfs/root" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
      { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
    tools/container/slim-rootfs.sh "$rootfs/root"
    tar --numeric-owner -C "$rootfs/root" -c . | podman import -q \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' --change "LABEL capwatch.recipe=$recipe" - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$rootfs"; trap - EXIT
    ok "$DEBIAN_IMAGE made in $(since "$started") s"
  fi

  PYTHON_IMAGE=$STANDIN/python:3.11-slim-bookworm
  recipe=$(recipe_of tools/container/python.Containerfile "$ca_bundle" <(podman image inspect --format '{{.Id}}' "$DEBIAN_IMAGE"))
  if have_current "$PYTHON_IMAGE" "$recipe"; then
    ok "$PYTHON_IMAGE (reused)"
  else
    started=$(now)
    nice -n "$NICE" podman build -q --format docker "${ENGINE_FLAGS[@]}" "${CA_FLAGS[@]}" --label "capwatch.recipe=$recipe" \
      --build-arg "BASE=$DEBIAN_IMAGE" -f tools/container/python.Containerfile -t "$PYTHON_IMAGE" tools/container >"$WORK/standin-python.log" 2>&1 ||
      { tail -20 "$WORK/standin-python.log" >&2; fail "building $PYTHON_IMAGE"; }
    ok "$PYTHON_IMAGE made in $(since "$started") s"
  fi

  command -v rustc >/dev/null || fail "the Rust stand-in copies this machine's toolchain, and there is no rustc (install rustup)"
  sysroot=$(rustc --print sysroot)
  rust_version=$(rustc --version | awk '{print $2}')
  RUST_IMAGE=$STANDIN/rust:${rust_version%.*}-slim-bookworm
  recipe=$(recipe_of tools/container/rust.Containerfile "$ca_bundle" <(rustc --version --verbose) <(podman image inspect --format '{{.Id}}' "$DEBIAN_IMAGE"))
  if have_current "$RUST_IMAGE" "$recipe"; then
    ok "$RUST_IMAGE (reused; rustc $rust_version)"
  else
    started=$(now)
    nice -n "$NICE" podman build -q --format docker "${ENGINE_FLAGS[@]}" "${CA_FLAGS[@]}" --volume "$sysroot:/host-toolchain:ro" \
      --label "capwatch.recipe=$recipe" --build-arg "BASE=$DEBIAN_IMAGE" -f tools/container/rust.Containerfile -t "$RUST_IMAGE" \
      tools/container >"$WORK/standin-rust.log" 2>&1 || { tail -20 "$WORK/standin-rust.log" >&2; fail "building $RUST_IMAGE"; }
    ok "$RUST_IMAGE made in $(since "$started") s (toolchain: $sysroot)"
  fi
  BUILD_ARGS+=(--build-arg "RUST_IMAGE=$RUST_IMAGE" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "RUNTIME_IMAGE=$DEBIAN_IMAGE")
elif [ "$BASES" != official ]; then
  fail "BASES must be auto, official or standin (got $BASES)"
else
  ok "the Dockerfile's defaults (pulled as needed)"
fi

# ---------------------------------------------------------------------------------------------
step "build $IMAGE (podman build --format docker, nice $NICE, CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-cores}; log: $WORK/build.log)"
BUILD_ARGS+=(--build-arg "CARGO_BUILD_JOBS=$CARGO_BUILD_JOBS")
started=$(now)
build=(nice -n "$NICE" podman build --format docker --layers "${ENGINE_FLAGS[@]}" "${BUILD_ARGS[@]}" -t "$IMAGE" -f Dockerfile .)
info "${build[*]}"
if [ "$VERBOSE" = 1 ]; then
  "${build[@]}" 2>&1 | tee "$WORK/build.log" || { fail "podman build failed (log: $WORK/build.log)"; }
else
  "${build[@]}" >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "podman build failed (log: $WORK/build.log)"; }
fi
build_s=$(since "$started")
ok "built in $build_s s"

size_bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$(awk -v b="$size_bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
ok "image size: $size_bytes bytes ($size_mb MB)"
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = 10001:10001 ] || fail "image user is '$user', expected 10001:10001"
ok "image user: $user"
health_cmd=$(podman image inspect --format '{{json .HealthCheck.Test}}' "$IMAGE" 2>/dev/null || true)
case "$health_cmd" in *capwatch-healthcheck*) ok "HEALTHCHECK kept: $health_cmd" ;; *) fail "no HEALTHCHECK in the image (built without --format docker?)" ;; esac

# ---------------------------------------------------------------------------------------------
if [ "$PORT" = 0 ]; then
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
URL=http://127.0.0.1:$PORT
cleanup() { podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

# The Kubernetes manifests' conditions: read-only root filesystem, writable emptyDirs at the
# logs directory and /tmp only (no other tmpfs podman would add by itself), user 10001; `U`
# makes the tmpfs belong to the image's user, as an emptyDir with fsGroup does.
RUN_FLAGS=("${ENGINE_FLAGS[@]}" --read-only --read-only-tmpfs=false
  --tmpfs /tmp:rw,size=64m,mode=1777 --tmpfs /opt/capwatch/logs:rw,size=64m,mode=0755,U)

wait_ready() {  # prints the seconds to /ready 200
  local started=$1 deadline=$(( $(date +%s) + 120 ))
  until curl -sf -o /dev/null "$URL/ready"; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" != true ]; then
      podman logs "$CONTAINER" 2>&1 | tail -20 >&2; fail "the container stopped before it was ready"
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then podman logs "$CONTAINER" 2>&1 | tail -20 >&2; fail "not ready after 120 s"; fi
    sleep 0.1
  done
  since "$started"
}

caption_check() {  # prints the caption; fails unless it is the expected one
  local answer caption expected
  answer=$(curl -sf --data-binary "@$TEST_IMAGE" -H "Content-Type: $TEST_TYPE" "$URL/caption") ||
    fail "POST /caption with $TEST_IMAGE failed"
  caption=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["caption"])' "$answer")
  expected=$(python3 -c 'import json, sys; print(next(e["caption"] for e in json.load(open("test_images/expected.json")) if e["file"] == sys.argv[1]))' "$(basename "$TEST_IMAGE")")
  [ "$caption" = "$expected" ] || fail "caption '$caption', expected '$expected' (answer: $answer)"
  printf '%s\n' "$answer"
}

step "run $IMAGE (read-only root, tmpfs /tmp and /opt/capwatch/logs, 127.0.0.1:$PORT -> 8000)"
started=$(now)
podman run -d --name "$CONTAINER" "${RUN_FLAGS[@]}" -p "127.0.0.1:$PORT:8000" "$IMAGE" >/dev/null 2>"$WORK/podman-run.err" ||
  { cat "$WORK/podman-run.err" >&2; fail "podman run"; }
if grep -q 'systemd connection' "$WORK/podman-run.err"; then
  info "(no systemd on this machine: podman starts no healthcheck timer; the check is run by hand below)"
fi
ready_s=$(wait_ready "$started")
ok "GET /ready 200 after $ready_s s (from podman run)"

answer=$(caption_check)
caption=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["caption"])' "$answer")
ok "POST /caption $TEST_IMAGE -> \"$caption\" (as expected.json says)"
info "$answer"

health=$(podman healthcheck run "$CONTAINER" 2>>"$WORK/podman-run.err") || fail "podman healthcheck run: ${health:-unhealthy}"
ok "podman healthcheck run: ${health:-healthy}"
health_log=$(podman inspect --format '{{with .State.Health}}{{range .Log}}{{.ExitCode}} {{.Output}}{{end}}{{end}}' "$CONTAINER" 2>/dev/null | head -c 200 || true)
[ -z "$health_log" ] || info "health log: $health_log"

uids=$(podman exec "$CONTAINER" grep -E '^(Uid|Gid):' /proc/1/status | awk '{print $1, $2}' | paste -sd' ')
[ "$uids" = "Uid: 10001 Gid: 10001" ] || fail "server process runs as $uids, expected 10001"
ok "server process (pid 1): $uids"
if podman exec "$CONTAINER" touch /opt/capwatch/probe 2>/dev/null; then fail "the root filesystem is writable"; fi
podman exec "$CONTAINER" sh -c 'touch /opt/capwatch/logs/probe /tmp/probe && rm /opt/capwatch/logs/probe /tmp/probe' ||
  fail "/opt/capwatch/logs or /tmp is not writable for 10001"
ok "root filesystem read-only; /opt/capwatch/logs and /tmp writable by 10001"

started=$(now)
podman stop -t 10 "$CONTAINER" >/dev/null 2>>"$WORK/podman-run.err"
stop_s=$(since "$started")
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER")
[ "$exit_code" = 0 ] || { podman logs "$CONTAINER" 2>&1 | tail -10 >&2; fail "exit code $exit_code after podman stop -t 10 (137: killed, SIGTERM ignored)"; }
ok "podman stop -t 10: exit code $exit_code after $stop_s s ($(podman logs "$CONTAINER" 2>&1 | grep -c 'server stopped cleanly') 'server stopped cleanly' line)"
cleanup

# The manifests mount the config at /etc/capwatch/ and pass --config there; relative paths in it
# (models/default, test_images) still resolve against the WORKDIR.
step "run with the config mounted at /etc/capwatch/monitoring_config.yaml (as the Kubernetes manifests do)"
started=$(now)
podman run -d --name "$CONTAINER" "${RUN_FLAGS[@]}" -p "127.0.0.1:$PORT:8000" \
  --volume "$ROOT/config/monitoring_config.yaml:/etc/capwatch/monitoring_config.yaml:ro" "$IMAGE" \
  serve --config /etc/capwatch/monitoring_config.yaml --host 0.0.0.0 --port 8000 >/dev/null 2>"$WORK/podman-run.err" ||
  { cat "$WORK/podman-run.err" >&2; fail "podman run"; }
k8s_ready_s=$(wait_ready "$started")
caption_check >/dev/null
podman stop -t 10 "$CONTAINER" >/dev/null 2>>"$WORK/podman-run.err"
k8s_exit=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER")
[ "$k8s_exit" = 0 ] || fail "exit code $k8s_exit after podman stop"
ok "ready after $k8s_ready_s s, caption as expected, stopped with exit code 0"
cleanup

# ---------------------------------------------------------------------------------------------
step "summary"
summary=$(cat <<EOF
| image | bases | build | size | ready (podman run -> /ready 200) | caption of $(basename "$TEST_IMAGE") | healthcheck | stop -t 10 |
|---|---|---|---|---|---|---|---|
| $IMAGE | $BASES | $build_s s | $size_mb MB | $ready_s s | "$caption" | ${health:-healthy} | exit $exit_code in $stop_s s |
EOF
)
printf '%s\n' "$summary" | tee "$WORK/results.md"
info "(also in $WORK/results.md)"
