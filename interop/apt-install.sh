#!/usr/bin/env bash
# Sourced by the scripts that install Debian packages for the suites against real servers
# (interop/gateways/test.sh, interop/redis/test.sh, uma-bench/run-peers.sh).
#
#   apt_install PACKAGE...   installs the packages without letting them start their system
#                            services (a policy-rc.d that refuses, removed afterwards if this
#                            function created it); returns non-zero when the install fails.
#   as_root COMMAND...       runs COMMAND as root (directly, or through sudo).

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local policy=/usr/sbin/policy-rc.d created=0 installed=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    created=1
  fi
  as_root apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" && installed=1
  if [[ $created == 1 ]]; then as_root rm -f "$policy"; fi
  [[ $installed == 1 ]]
}
