#!/usr/bin/env bash
# Benchmark (issue 4): `hactl deploy` of a new app version to 3 and to 10 lab hosts (batch 1,
# haproxy drain, blue/green with a health gate on each host), under a 20 req/s probe. Reports
# the deploy's wall time against the sum of the waits the stack configures for it (the health
# gate's minimum per host), and hactl's own overhead per batch (wall time minus the drain and
# minus the slowest host's on-host time, as the hosts report it). Median of RUNS deploys per
# size (alternating v2/v1). Writes bench/out/deploy.md and the deploy section of
# docs/benchmarks.md. Needs root (lab hosts in network namespaces) and podman-compose.
set -euo pipefail
# hactl may SSH only to loopback and the lab (src/provider/hosts/guard.rs).
export HACTL_NETWORK_GUARD=lab
# The lab is shared with the test suite: hold its lock for the whole run. `flock -o` keeps the
# lock in flock itself, so lab hosts started below do not inherit (and keep) it.
if [ -z "${HACTL_LAB_LOCKED:-}" ]; then
  mkdir -p /run/lock
  HACTL_LAB_LOCKED=1 exec flock -o /run/lock/hactl-lab-tests.lock bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SIZES=${SIZES:-"3 10"}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# HACTL_BIN: an already built hactl (e.g. a debug build); default: a release build
if [ -n "${HACTL_BIN:-}" ]; then
  H=$HACTL_BIN
else
  cargo build --release -q
  H="$CARGO_TARGET_DIR/release/hactl"
fi
OUT=bench/out; mkdir -p "$OUT"
IMG="$PWD/target/lab-app"; mkdir -p "$IMG"
"$H" lab demo-image --version v1 -o "$IMG/demo-v1.tar" >/dev/null
"$H" lab demo-image --version v2 -o "$IMG/demo-v2.tar" >/dev/null

stack_for() { # N -> stack file: lab-app.yaml grown to N hosts
  python3 - "$1" "$IMG/demo-v1.tar" > "$OUT/deploy-stack-$1.yaml" <<'PY'
import sys
n, archive = int(sys.argv[1]), sys.argv[2]
text = open("stacks/lab-app.yaml").read()
head, rest = text.split("hosts:\n", 1)
_, tail = rest.split("\nvip:", 1)
hosts = "".join(f"  - name: host{i}\n    address: 198.18.0.{10+i}\n    priority: {150 if i == 1 else 101 - i}\n" for i in range(1, n + 1))
text = head.replace("name: lab-app\n", "name: bench-app\n", 1) + "hosts:\n" + hosts + "\nvip:" + tail
print(text.replace("archive: ../target/lab-app/demo-v1.tar", f"archive: {archive}"), end="")
PY
  echo "$OUT/deploy-stack-$1.yaml"
}

ROWS=()
for N in $SIZES; do
  S=$(stack_for "$N")
  "$H" lab down >/dev/null 2>&1 || true
  "$H" lab up --hosts "$N" >/dev/null
  "$H" up -f "$S" --auto-approve >/dev/null
  for r in $(seq 1 "$RUNS"); do
    v=v2; [ $((r % 2)) = 0 ] && v=v1
    "$H" deploy -f "$S" --archive "$IMG/demo-$v.tar" --auto-approve --json \
      --probe --probe-rate 20 --probe-soak 0s > "$OUT/deploy-$N-$r.json" 2>"$OUT/deploy-$N-$r.log"
  done
  ROWS+=("$(python3 - "$N" "$OUT"/deploy-"$N"-*.json <<'PY'
import json, statistics, sys
n = sys.argv[1]
runs = [json.load(open(f)) for f in sys.argv[2:]]
med = lambda xs: statistics.median(xs)
wall = med([r["elapsed_ms"] for r in runs]) / 1000
batches = [b for r in runs for b in r["batches"]]
drain = med([b["drain_ms"] for b in batches]) / 1000
host = med([b["host_ms"] for b in batches]) / 1000
over = [b["overhead_ms"] for b in batches]
waits = med([r["configured_wait_ms"] * len(r["batches"]) for r in runs]) / 1000
failed = sum(r["probe"]["failed"] for r in runs)
reqs = sum(r["probe"]["requests"] for r in runs)
outcomes = ",".join(sorted({r["outcome"] for r in runs}))
print(f"| {n} | {len(runs[0]['batches'])} | {wall:.2f} s | {waits:.2f} s | {drain:.2f} s | {host:.2f} s | {med(over)/1000:.2f} s (max {max(over)/1000:.2f} s) | {reqs} / {failed} | {outcomes} |")
PY
)")
done
"$H" lab down >/dev/null 2>&1 || true

{
  echo "Deploy of a new app version (batch 1, haproxy drain, blue/green, health gate), median of $RUNS runs per size, probe at 20 req/s on the VIP. Machine: $(nproc) cores; $(date -u +%Y-%m-%d); binary: \`$H\`."
  echo
  echo "| hosts | batches | deploy wall time | configured waits (health gate minimum × batches) | drain per batch | on-host time per batch (slowest host) | hactl overhead per batch | probe requests / failed | outcome |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "On-host time is what \`app-ctl deploy\` reports: podman-compose up of the new slot, the health gate, the nginx switch and reload, the wait for old workers, and podman-compose down of the old slot. hactl's overhead is the rest of each batch: SSH round trips (drain, deploy, ready) and the orchestration. Reproduce: \`bash bench/deploy.sh\` (RUNS, SIZES)."
} > "$OUT/deploy.md"
cat "$OUT/deploy.md"

DOC=docs/benchmarks.md
[ -f "$DOC" ] || printf '# Benchmarks\n' > "$DOC"
python3 - "$DOC" "$OUT/deploy.md" <<'PY'
import sys, re
doc, new = sys.argv[1], open(sys.argv[2]).read().strip()
text = open(doc).read()
block = f"<!-- deploy:start -->\n## Deploy (issue 4)\n\n{new}\n<!-- deploy:end -->"
if "<!-- deploy:start -->" in text:
    text = re.sub(r"<!-- deploy:start -->.*?<!-- deploy:end -->", lambda m: block, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n" + block + "\n"
open(doc, "w").write(text)
PY
