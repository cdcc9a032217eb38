#!/usr/bin/env bash
# A Docker engine for building and testing the images on this machine.
#   images/docker-engine.sh start   an engine that answers: the running one, else Debian's docker.io (and
#                                   mmdebstrap, for a base image where no registry can be pulled from)
#                                   installed and dockerd started (as root only)
#   images/docker-engine.sh stop    stop the dockerd that `start` started (none other)
set -euo pipefail
STATE=${CHAMPION_DOCKERD_STATE:-/run/champion-dockerd}
say() { printf 'docker-engine: %s\n' "$*" >&2; }

answers() { docker info >/dev/null 2>&1 || /usr/bin/docker info >/dev/null 2>&1; }

start() {
  if answers; then
    echo "running"
    return
  fi
  if [[ "$(id -u)" != 0 ]]; then
    say "no Docker engine answers, and only root can install and start one here. Start dockerd, or set DOCKER_HOST."
    exit 2
  fi
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io mmdebstrap) >/dev/null \
      || { say "apt-get could not install docker.io and mmdebstrap"; exit 2; }
  fi
  mkdir -p "$STATE"
  dockerd >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/dockerd.pid"
  for _ in $(seq 60); do
    if answers; then
      echo "started"
      return
    fi
    sleep 0.5
  done
  say "dockerd did not answer within 30 s (its log: $STATE/dockerd.log)"
  tail -n 20 "$STATE/dockerd.log" >&2 || true
  exit 2
}

stop() {
  [[ -f "$STATE/dockerd.pid" ]] || return 0
  pid=$(cat "$STATE/dockerd.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  rm -f "$STATE/dockerd.pid"
  echo "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) say "usage: $0 start|stop"; exit 2 ;;
esac
