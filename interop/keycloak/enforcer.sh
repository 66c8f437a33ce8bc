#!/usr/bin/env bash
# Keycloak's own policy enforcer as an HTTP service: the Quarkus app of quarkus/ (extensions
# quarkus-oidc and quarkus-keycloak-authorization), configured from the same keycloak.json (or
# policy-enforcer.json) that uma-proxy reads with --keycloak-config.
#
#   interop/keycloak/enforcer.sh build
#       mvn -B -q package in quarkus/ (output in quarkus/target/, gitignored); nothing when the
#       built app is newer than pom.xml and every source file
#   interop/keycloak/enforcer.sh start --port P --config FILE [--upstream URL]
#       builds if needed, starts the app on 127.0.0.1:P, waits until it answers and prints
#       `enforcer ready at http://127.0.0.1:P`. With --upstream every request the enforcer lets
#       through is forwarded there (method, path and query, headers, body) and its answer
#       relayed; without, the app answers 200 with {"method": …, "path": …}
#   interop/keycloak/enforcer.sh stop [--port P]
#       stops the app this script started on P (every one it started, without --port) and
#       deletes its log
#
# Its log is .work/enforcer-P.log, its pid .work/enforcer-P.pid (gitignored); a start that
# fails prints the end of the log. It needs a Java 17
# or later (ENFORCER_JAVA_HOME, else JAVA_HOME, else the `java` on PATH) and Maven for the
# build; the build fetches from Maven Central only, once, into ~/.m2. Environment:
# ENFORCER_START_TIMEOUT (seconds to wait for readiness, default 300).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
app="$here/quarkus"
jar="$app/target/quarkus-app/quarkus-run.jar"
work="$here/.work"
start_timeout=${ENFORCER_START_TIMEOUT:-300}

say() { echo "enforcer.sh: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

java_bin() {
  local home=${ENFORCER_JAVA_HOME:-${JAVA_HOME:-}} bin m
  if [[ -n "$home" ]]; then bin="$home/bin/java"; else bin=$(command -v java || true); fi
  [[ -n "$bin" && -x "$bin" ]] || die "no Java found: install a JDK 17 or later (Debian: apt-get install openjdk-17-jdk-headless) or set ENFORCER_JAVA_HOME"
  m=$("$bin" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1)
  [[ -n "$m" && "$m" -ge 17 ]] || die "$bin is Java ${m:-?}; the enforcer needs 17 or later (set ENFORCER_JAVA_HOME)"
  echo "$bin"
}

build() {
  if [[ -f "$jar" ]] && [[ -z "$(find "$app/pom.xml" "$app/src" -newer "$jar" -print -quit)" ]]; then
    return
  fi
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is not installed (Debian: apt-get install maven)"
  say "building the Quarkus app in $app (mvn -B -q package)"
  local out
  # Offline first: once ~/.m2 holds everything, no network is needed.
  if ! out=$(cd "$app" && mvn -B -q -o package 2>&1); then
    if ! out=$(cd "$app" && mvn -B -q package 2>&1); then
      echo "$out" | tail -n 40 >&2
      die "the build failed (above). Is Maven Central reachable (a proxy goes into ~/.m2/settings.xml)?"
    fi
  fi
  [[ -f "$jar" ]] || die "Maven reported success but $jar is missing"
  # A build that changed nothing leaves the jar's time alone: mark it as up to date.
  touch "$jar"
}

answers() { curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$1/" 2>/dev/null; }

start() {
  local port="" config="" upstream=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
    --port) port=${2:-}; shift 2 ;;
    --config) config=${2:-}; shift 2 ;;
    --upstream) upstream=${2:-}; shift 2 ;;
    *) die "start: unknown argument $1 (usage: start --port P --config FILE [--upstream URL])" ;;
    esac
  done
  [[ "$port" =~ ^[0-9]+$ ]] || die "start: --port P is required"
  [[ -n "$config" && -f "$config" ]] || die "start: --config FILE is required and must exist (got '${config}')"
  config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
  command -v curl >/dev/null 2>&1 || die "curl is not installed (Debian: apt-get install curl); it checks readiness"
  local java pidfile="$work/enforcer-$port.pid" log="$work/enforcer-$port.log" pid
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    die "an enforcer this script started already runs on port $port (pid $(cat "$pidfile")); stop it first"
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port 127.0.0.1:$port is in use by another program"
  fi
  java=$(java_bin)
  build
  mkdir -p "$work"
  say "starting on 127.0.0.1:$port with $config${upstream:+, upstream $upstream}; log: $log"
  ENFORCER_CONFIG="$config" UPSTREAM_URL="$upstream" \
    setsid "$java" -Dquarkus.http.port="$port" -jar "$jar" </dev/null >"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  local t0=$SECONDS
  until answers "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      tail -n 40 "$log" >&2 || true
      die "the enforcer exited before it answered (its log above; all of it in $log)"
    fi
    if ((SECONDS - t0 >= start_timeout)); then
      tail -n 20 "$log" >&2 || true
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      rm -f "$pidfile"
      die "the enforcer did not answer within ${start_timeout}s (log in $log); stopped it"
    fi
    sleep 0.5
  done
  say "ready after $((SECONDS - t0))s"
  echo "enforcer ready at http://127.0.0.1:$port"
}

stop_one() {
  local pidfile=$1 pid i
  pid=$(cat "$pidfile" 2>/dev/null || true)
  rm -f "$pidfile" "${pidfile%.pid}.log"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

stop() {
  local port=""
  if [[ "${1:-}" == "--port" ]]; then port=${2:-}; fi
  local f found=0
  for f in "$work"/enforcer-${port:-*}.pid; do
    [[ -f "$f" ]] || continue
    stop_one "$f"
    found=1
  done
  if [[ $found == 0 ]]; then say "no enforcer started by this script is running${port:+ on port $port}"; else say "stopped"; fi
}

cmd=${1:-}
shift || true
case "$cmd" in
build) build ;;
start) start "$@" ;;
stop) stop "$@" ;;
*)
  echo "usage: $0 build | start --port P --config FILE [--upstream URL] | stop [--port P]" >&2
  exit 2
  ;;
esac
