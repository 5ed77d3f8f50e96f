# Docker engine and the example tool images. Sourced by scripts/test and scripts/bench.
# shellcheck shell=bash

ORIEN_DOCKER_SOCK=${ORIEN_DOCKER_SOCK:-/var/run/docker.sock}

# docker_engine_answers — true when the engine behind the socket answers a ping.
docker_engine_answers() {
  [ -S "$ORIEN_DOCKER_SOCK" ] && timeout 10 docker -H "unix://$ORIEN_DOCKER_SOCK" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# ensure_docker_engine — installs docker.io when missing, starts dockerd in the
# background when the socket does not answer, and waits for it (60 s at most).
ensure_docker_engine() {
  # Any engine will do (docker-ce, docker.io); Debian's is installed only when none is.
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    ensure_apt docker.io
  fi
  if docker_engine_answers; then
    info "docker engine: $(docker version --format '{{.Server.Version}}' 2>/dev/null) (already running)"
    return 0
  fi
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl start docker >/dev/null 2>&1 || true
  fi
  if ! docker_engine_answers; then
    local log=${ORIEN_DOCKERD_LOG:-/var/log/orien-dockerd.log}
    info "starting dockerd in the background (log: $log)"
    # setsid: the engine outlives this script and is not killed with its process group.
    as_root setsid dockerd --host "unix://$ORIEN_DOCKER_SOCK" >>"$log" 2>&1 < /dev/null &
  fi
  local waited=0
  until docker_engine_answers; do
    [ "$waited" -ge 60 ] && die "the docker engine did not answer on $ORIEN_DOCKER_SOCK within 60 s; see ${ORIEN_DOCKERD_LOG:-/var/log/orien-dockerd.log} (start it by hand: 'dockerd &' or 'systemctl start docker')"
    sleep 1
    waited=$((waited + 1))
  done
  info "docker engine: $(docker version --format '{{.Server.Version}}') (started in ${waited}s)"
}

# ensure_tool_images — builds the example tool images (configs/images/*/build); each
# build script is idempotent and returns at once when its image is up to date.
ensure_tool_images() {
  local build
  for build in "$ORIEN_ROOT"/configs/images/*/build; do
    [ -x "$build" ] || continue
    "$build" || die "image build failed: $build"
  done
}
