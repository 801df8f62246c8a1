#!/usr/bin/env bash
# Prints a digest of the machine state the lab, the tests and the benchmarks must not change
# (issue 16): podman's machine-wide config (/etc/cni, /etc/containers), links, routes and rules.
# scripts/test.sh records it before the suite and compares after; tests/it/support.rs's
# machine_state() computes the same around a lab cycle.
set -euo pipefail
for d in /etc/cni /etc/containers; do
  [ -d "$d" ] && find "$d" -type f -print0 | sort -z | xargs -0 -r sha256sum
done
echo '$ ip -br link'; ip -br link
echo '$ ip route'; ip route
echo '$ ip rule'; ip rule
