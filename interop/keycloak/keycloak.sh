#!/usr/bin/env bash
# A real Keycloak on loopback for tower-uma's interop tests and the README's quick start.
#
#   interop/keycloak/keycloak.sh start    fetch (once, through Maven), start in dev mode, import
#                                         the photos realm, wait until the realm answers
#   interop/keycloak/keycloak.sh stop     stop the Keycloak this script started
#   interop/keycloak/keycloak.sh status   say whether it runs and answers
#   interop/keycloak/keycloak.sh reset    stop it and delete its data (the next start imports
#                                         photos-realm.json afresh)
#
# Keycloak listens on 127.0.0.1:8280 (management interface 127.0.0.1:8281, away from the 9000
# of uma-proxy's examples), keeps its embedded H2 database under interop/keycloak/.work/
# (gitignored) and has the admin user admin/admin in the master realm. `start` prints
# `keycloak ready at http://127.0.0.1:8280/realms/photos` once the realm's discovery document
# answers. The version is pinned in pom.xml, the zip's digest in keycloak.sha256.
#
# Environment: KEYCLOAK_START_TIMEOUT (seconds to wait for readiness, default 600),
# KEYCLOAK_JAVA_HOME (the JDK to run it with; otherwise the newest JDK 17 or later found).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(sed -n 's:.*<keycloak.version>\(.*\)</keycloak.version>.*:\1:p' "$here/pom.xml")
work="$here/.work"
home="$work/keycloak-$version"
pidfile="$work/keycloak.pid"
log="$work/keycloak.log"
host=127.0.0.1
port=8280
mgmt_port=8281
realm_url="http://$host:$port/realms/photos"
start_timeout=${KEYCLOAK_START_TIMEOUT:-600}

say() { echo "keycloak.sh: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# The Java major version of a `java` binary, or nothing.
java_major() {
  "$1" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1
}

# Picks the JDK: KEYCLOAK_JAVA_HOME if set, else the newest of JAVA_HOME, the `java` on PATH and
# /usr/lib/jvm/* that is Java 17 or later (Keycloak 26 supports OpenJDK 17, 21 and 25).
pick_java() {
  if [[ -n "${KEYCLOAK_JAVA_HOME:-}" ]]; then
    local m
    m=$(java_major "$KEYCLOAK_JAVA_HOME/bin/java" || true)
    [[ -n "$m" && "$m" -ge 17 ]] ||
      die "KEYCLOAK_JAVA_HOME=$KEYCLOAK_JAVA_HOME is not a Java 17 or later (found: ${m:-no java there})"
    java_home=$KEYCLOAK_JAVA_HOME
    java_version=$m
    return
  fi
  local candidates=() c m best="" best_m=0
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME")
  if command -v java >/dev/null 2>&1; then
    candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
  fi
  for c in /usr/lib/jvm/*; do [[ -x "$c/bin/java" ]] && candidates+=("$c"); done
  for c in "${candidates[@]}"; do
    [[ -x "$c/bin/java" ]] || continue
    m=$(java_major "$c/bin/java" || true)
    [[ -n "$m" ]] || continue
    if [[ "$m" -ge 17 && "$m" -gt "$best_m" ]]; then
      best=$c
      best_m=$m
    fi
  done
  [[ -n "$best" ]] || die "no Java 17 or later found (looked at JAVA_HOME, the java on PATH and /usr/lib/jvm/*).
  Keycloak $version runs on OpenJDK 17, 21 or 25: install one (Debian: apt-get install openjdk-17-jdk-headless)
  or point KEYCLOAK_JAVA_HOME at one."
  java_home=$best
  java_version=$best_m
}

# Fetches the pinned distribution through Maven (cached in ~/.m2: later runs download nothing)
# and unpacks it into .work/ once.
fetch() {
  [[ -x "$home/bin/kc.sh" ]] && return
  command -v mvn >/dev/null 2>&1 ||
    die "Maven (mvn) is not installed; it fetches the Keycloak distribution. Install it (Debian: apt-get install maven)."
  command -v unzip >/dev/null 2>&1 || die "unzip is not installed (Debian: apt-get install unzip)."
  local dist="$work/dist" zip out
  zip="$dist/keycloak-quarkus-dist-$version.zip"
  mkdir -p "$dist"
  say "fetching org.keycloak:keycloak-quarkus-dist:$version:zip through Maven"
  if ! out=$(mvn -B -q -f "$here/pom.xml" dependency:copy "-Dkeycloak.dist.dir=$dist" 2>&1); then
    echo "$out" | tail -n 20 >&2
    die "Maven could not fetch org.keycloak:keycloak-quarkus-dist:$version (see its output above).
  Is Maven Central reachable from here (a proxy goes into ~/.m2/settings.xml)? Once fetched,
  the zip stays in ~/.m2/repository and no network is needed."
  fi
  [[ -f "$zip" ]] || die "Maven reported success but $zip is missing"
  local want got
  want=$(awk '{print $1}' "$here/keycloak.sha256")
  got=$(sha256sum "$zip" | awk '{print $1}')
  [[ "$want" == "$got" ]] || die "$zip has SHA-256 $got, keycloak.sha256 pins $want.
  Delete it from ~/.m2/repository/org/keycloak/keycloak-quarkus-dist/$version/ and start again,
  or, after a deliberate version change, write the new digest into keycloak.sha256."
  say "unpacking into $work"
  rm -rf "$home.partial"
  mkdir -p "$home.partial"
  unzip -q "$zip" -d "$home.partial"
  mv "$home.partial/keycloak-$version" "$home"
  rm -rf "$home.partial" "$zip"
}

our_pid() {
  [[ -f "$pidfile" ]] || return 1
  local pid
  pid=$(cat "$pidfile")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

realm_answers() {
  curl -fsS -o /dev/null --max-time 5 "$realm_url/.well-known/uma2-configuration" 2>/dev/null
}

who_listens() { ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/.*users:/users:/' | head -n 1; }

wait_ready() {
  local pid=$1 started=$SECONDS next=30
  while ! realm_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      tail -n 40 "$log" >&2 || true
      die "Keycloak exited before it was ready (its log above; all of it in $log)"
    fi
    if ((SECONDS - started >= start_timeout)); then
      tail -n 20 "$log" >&2 || true
      die "Keycloak was not ready after ${start_timeout}s (still running as pid $pid; log in $log).
  A busy machine starts it slowly: raise KEYCLOAK_START_TIMEOUT, or stop it with '$0 stop'."
    fi
    if ((SECONDS - started >= next)); then
      say "still starting after $((SECONDS - started))s (log: $log)"
      next=$((next + 30))
    fi
    sleep 1
  done
}

start() {
  local pid
  if pid=$(our_pid); then
    wait_ready "$pid"
    echo "keycloak ready at $realm_url"
    return
  fi
  rm -f "$pidfile"
  if port_open "$port"; then
    if realm_answers; then
      say "a Keycloak this script did not start already serves $realm_url; using it ('$0 stop' will not stop it)"
      echo "keycloak ready at $realm_url"
      return
    fi
    die "port $host:$port is in use by another program ($(who_listens "$port")). Stop it and start again."
  fi
  port_open "$mgmt_port" &&
    die "port $host:$mgmt_port (Keycloak's management interface) is in use by another program ($(who_listens "$mgmt_port")). Stop it and start again."
  command -v curl >/dev/null 2>&1 || die "curl is not installed (Debian: apt-get install curl); it checks readiness."

  pick_java
  fetch
  mkdir -p "$home/data/import"
  cp "$here/photos-realm.json" "$home/data/import/photos-realm.json"
  if [[ -d "$home/data/h2" ]]; then
    say "the realm was imported by an earlier start and is kept as it is ('$0 reset' imports photos-realm.json afresh)"
  fi
  say "starting Keycloak $version on Java $java_version ($java_home); log: $log"
  local t0=$SECONDS
  # A session of its own, so that `stop` can end Keycloak and anything it started as a group.
  JAVA_HOME="$java_home" JAVA="$java_home/bin/java" \
    KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=admin \
    setsid "$home/bin/kc.sh" start-dev \
    --http-host="$host" --http-port="$port" \
    --http-management-port="$mgmt_port" \
    --hostname-strict=false \
    --import-realm \
    </dev/null >"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  wait_ready "$pid"
  say "ready after $((SECONDS - t0))s"
  echo "keycloak ready at $realm_url"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$pidfile"
    say "no Keycloak started by this script is running"
    return
  fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "Keycloak (pid $pid) did not stop within 60s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "stopped"
}

status() {
  local pid
  if pid=$(our_pid); then
    if realm_answers; then echo "running (pid $pid), ready at $realm_url"; else echo "running (pid $pid), not ready yet"; fi
  elif realm_answers; then
    echo "not started by this script, but $realm_url answers"
  else
    echo "not running"
    return 1
  fi
}

reset() {
  stop
  rm -rf "$home/data"
  say "data deleted; the next start imports photos-realm.json afresh"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
reset) reset ;;
*)
  echo "usage: $0 start|stop|status|reset" >&2
  exit 2
  ;;
esac
