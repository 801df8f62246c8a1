#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, then formatting, lints, unit
# tests, and the integration tests against real lab hosts (network namespaces: needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
# A target dir that survives between runs on the same machine: only the first run pays for
# the cold build of the dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hactl-target}"
export CARGO_TERM_COLOR=never
# SSH from any run below may reach only loopback and the lab (src/provider/hosts/guard.rs).
export HACTL_NETWORK_GUARD=lab
t0=$(date +%s)
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo build --all-targets
# Leftovers of an interrupted earlier run would make the lab tests fail: start clean.
"$CARGO_TARGET_DIR/debug/hactl" lab down >/dev/null 2>&1 || true
# Nothing outside the lab may change: podman's machine-wide config, links, routes (issue 16).
state_before=$(bash scripts/machine-state.sh)
# The fuzz harness of stack::load + render (src/stack/fuzz.rs) runs for a fixed time, not a
# case count: a one-minute smoke run here, longer by hand (`HACTL_FUZZ_SECS=600`).
HACTL_FUZZ_SECS="${HACTL_FUZZ_SECS:-60}" cargo test --all-targets -- --test-threads=2
state_after=$(bash scripts/machine-state.sh)
if [ "$state_before" != "$state_after" ]; then
  echo "test.sh: the suite changed the machine outside the lab:" >&2
  diff <(echo "$state_before") <(echo "$state_after") >&2 || true
  exit 1
fi
echo "test.sh: done in $(( $(date +%s) - t0 )) s"
