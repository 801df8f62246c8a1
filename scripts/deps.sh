#!/usr/bin/env bash
# Installs what hactl needs on a Debian machine, as root, and only what is missing: Debian
# packages, then PyPI tools. Safe to run again. This is the only script that changes the
# machine; everything else (demo, tests, benchmarks) calls it with what it needs:
#
#   bash scripts/deps.sh demo    the lab demo (scripts/demo.sh): sshd, keepalived, nginx,
#                                haproxy, podman + podman-compose, iproute2, curl, busybox
#   bash scripts/deps.sh test    the test suite (scripts/test.sh): demo + rsyslog, redis
#                                (server, sentinel, cli), both podman network backends
#                                (netavark, CNI's plugins), docker.io + docker-compose (the
#                                docker runtime) and moto's server (the AWS tests)
#   bash scripts/deps.sh bench   the benchmarks (bench/*.sh): test + ansible (with the
#                                amazon.aws collection) and boto3
#
# No argument means `test` (what CI runs).
set -euo pipefail

level=${1:-test}
case "$level" in
  demo) n=1 ;;
  test) n=2 ;;
  bench) n=3 ;;
  *)
    echo "usage: bash scripts/deps.sh [demo|test|bench]" >&2
    exit 2
    ;;
esac

need_apt=()
want() { # want BINARY PACKAGE
  command -v "$1" >/dev/null 2>&1 || need_apt+=("$2")
}
# demo: the lab hosts and the stack on them
want sshd openssh-server
want ssh openssh-client
want keepalived keepalived
want nginx nginx
want haproxy haproxy
want podman podman
want runc runc
want ip iproute2
want curl curl
want nsenter util-linux
want python3 python3
# issue 4: lab hosts run the app with podman-compose and see /usr but not /root, so a pip or
# pyenv install under /root is invisible to them: Debian's package puts it in /usr/bin.
[ -x /usr/bin/podman-compose ] || need_apt+=(podman-compose)
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
# podman needs a network stack: Debian's containers-common depends on the virtual
# `container-network-stack` and only recommends netavark, so with --no-install-recommends
# apt picks a provider of its own. The demo gets netavark (Debian's recommended one) unless
# CNI's plugins are there; the tests need both backends (below).
if [ "$n" -ge 2 ] || [ ! -x /usr/lib/cni/bridge ]; then
  [ -x /usr/lib/podman/netavark ] || need_apt+=(netavark)
  [ -x /usr/lib/podman/aardvark-dns ] || need_apt+=(aardvark-dns)
fi
if [ "$n" -ge 2 ]; then
  # issue 6: the HA services (syslog active/passive, redis primary/replica with sentinel)
  want rsyslogd rsyslog
  want redis-server redis-server
  want redis-sentinel redis-sentinel
  want redis-cli redis-tools
  # both of podman 4.3's network backends are tested in the lab: netavark (above), and CNI,
  # whose plugins are a package of their own (a fresh Debian 12 with netavark has no
  # /usr/lib/cni, and the CNI test failed there: "failed to find plugin \"bridge\"")
  [ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
  # issue 16: `app.runtime: docker` runs in lab hosts with Debian's dockerd and Compose v1
  # (Debian 12 has no Compose v2 plugin). Their services never start on the machine.
  want dockerd docker.io
  want docker-compose docker-compose
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps ($level): apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages' own services must not start in the root namespace: the lab runs them
  # inside its hosts. policy-rc.d says no to every start during this install.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

need_pip=()
if [ "$n" -ge 2 ]; then
  # moto's server mode (the AWS tests) needs the `server` extra, not only the library.
  command -v moto_server >/dev/null 2>&1 || need_pip+=('moto[server]')
fi
if [ "$n" -ge 3 ]; then
  # bench/provision.sh drives the amazon.aws collection, which ships in the full `ansible`
  # package (ansible-core alone has no collections): check for the collection itself.
  if ! command -v ansible-playbook >/dev/null 2>&1 \
    || ! python3 -c 'import ansible_collections.amazon.aws' >/dev/null 2>&1; then
    need_pip+=(ansible)
  fi
  # amazon.aws talks to AWS (moto) through boto3/botocore.
  python3 -c 'import boto3, botocore' >/dev/null 2>&1 || need_pip+=(boto3)
  # bench/push.sh's other peer: pyinfra, the fast agentless tool (issue 16)
  command -v pyinfra >/dev/null 2>&1 || need_pip+=('pyinfra==3.10.0')
fi
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "deps ($level): pip install ${need_pip[*]}"
  python3 -m pip install -q --root-user-action=ignore "${need_pip[@]}"
fi

command -v cargo >/dev/null 2>&1 || {
  echo "deps: cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
}
