#!/usr/bin/env bash
# Installs (when missing) and starts (when not answering) the Docker engine and gVisor's runsc;
# installs the other Debian packages the service and its tests use (nothing of them is started
# here: PostgreSQL is started by whoever needs a server, e.g. the test fixtures).
# Idempotent: every step checks first. Never stops or restarts a daemon it did not start,
# except for a SIGHUP so that a running daemon re-reads a runtime we just registered.
set -euo pipefail

log() { printf 'setup-engine: %s\n' "$*" >&2; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
[ -x /usr/bin/runsc ] || need_pkgs+=(runsc)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
# PostgreSQL: the job store's server option, and what the tests run it against.
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_pkgs+=(postgresql)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# Register runsc, merging with whatever daemon.json already holds.
changed=$(python3 "$(dirname "$0")/register_runsc.py")

engine_answers() { timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# A daemon left stopped (a fault test SIGSTOPs it and SIGCONTs it after; a test run killed in
# between leaves it stopped, and every engine call then hangs): let it go on.
for pid in $(pgrep -x dockerd); do
  if [ "$(ps -o stat= -p "$pid" | cut -c1)" = T ]; then
    log "dockerd ($pid) was stopped; continuing it"
    kill -CONT "$pid"
  fi
done

if engine_answers; then
  if [ "$changed" = changed ]; then
    log "runsc registered; asking the running daemon to reload its configuration"
    pkill -HUP -x dockerd || true
    sleep 1
  fi
else
  log "no engine answers; starting dockerd in the background (log: /var/log/bgc-dockerd.log)"
  # setsid: the daemon must outlive the make invocation that started it.
  setsid nohup dockerd >>/var/log/bgc-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    engine_answers && break
    sleep 0.5
  done
  engine_answers || { log "dockerd did not come up; see /var/log/bgc-dockerd.log"; exit 1; }
fi
log "engine ready: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"
