#!/usr/bin/env bash
# Benchmark (issue 13): `hactl deploy` of seed 003 through its target group, on moto behind the
# AWS-like layer (targets drain for the deregistration delay, start `initial` for 1 s), with the
# instances mapped to 3 and to 10 lab hosts and `hactl lab balancer` standing in for the ALB,
# under a 200 req/s probe sent to the balancer's DNS name (mapped to the stand-in with
# `--probe-resolve`). Reports per batch: wall time, the deregistration + drain, the slowest
# host's on-host swap, the wait until `healthy`, and hactl's own overhead: the rest of the
# batch (SSH and API round trips, orchestration) and the part of the two balancer waits past
# what the balancer itself takes (the delay; the 1 s `initial`), which is DescribeTargetHealth
# polling; plus the CPU the hactl process used (probe included) and its peak RSS. Median of
# RUNS deploys per size (alternating v2/v1). Writes bench/out/deploy-alb.md and the
# `deploy-alb` section of docs/benchmarks.md. Needs root (lab hosts), moto, podman-compose.
#
# The stack's deregistration delay is cut from 30 s to DELAY (3 s by default): AWS keeps a
# target `draining` for the whole delay, so with 30 s each batch would take 30 s more.
#
# HACTL_BIN: an already built hactl (e.g. the debug build); default: a release build.
set -euo pipefail
if [ -z "${HACTL_LAB_LOCKED:-}" ]; then
  mkdir -p /run/lock
  HACTL_LAB_LOCKED=1 exec flock -o /run/lock/hactl-lab-tests.lock bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
SIZES=${SIZES:-"3 10"}
DELAY=${DELAY:-3s}
RATE=${RATE:-200}
# Traffic and SSH only to loopback and the lab (src/provider/hosts/guard.rs).
export HACTL_NETWORK_GUARD=lab
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
if [ -n "${HACTL_BIN:-}" ]; then
  H=$HACTL_BIN
else
  cargo build --release -q
  H="$CARGO_TARGET_DIR/release/hactl"
fi
OUT="$ROOT/bench/out"; mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

ROWS=()
for N in $SIZES; do
  W=$(mktemp -d); export HOME=$W
  mkdir -p "$W/stacks/templates"
  cp stacks/templates/aws-web-app.env.j2 "$W/stacks/templates/"
  "$H" lab demo-image --version v1 -o "$W/demo-v1.tar" >/dev/null
  "$H" lab demo-image --version v2 -o "$W/demo-v2.tar" >/dev/null
  # the seed, as tests/it/aws.rs's lab variant: SSH through an ssh_config mapping web-i to the
  # lab's host(i+1), the lab's key, the demo app; N hosts; a short deregistration delay
  python3 - "$N" "$DELAY" > "$W/stacks/seed-003-aws-web.yaml" <<'PY'
import re, sys
n, delay = int(sys.argv[1]), sys.argv[2]
t = open("stacks/seed-003-aws-web.yaml").read()
def section(t, name, new):
    a = t.index(f"\n{name}:\n") + 1
    b = t.index("\n\n", a)
    return t[:a] + new + t[b:]
t = section(t, "ssh", "ssh:\n  user: root\n  identity_file: /srv/hactl-lab/id_ed25519\n  config_file: ssh_config\n  connect_timeout: 5s")
t = section(t, "app", "app:\n  archive: ../demo-v1.tar\n  port: 8080\n  host_port: 8000\n  replicas: 1\n  runtime: podman\n  health:\n    path: /healthz\n    interval: 250ms\n    timeout: 1s\n    healthy_threshold: 2\n    deadline: 8s")
t = t.replace("    count: 2\n", f"    count: {n}\n", 1)
t = t.replace("deregistration_delay: 30s", f"deregistration_delay: {delay}", 1)
print(t, end="")
PY
  for i in $(seq 0 $((N - 1))); do
    printf 'Host web-%s\n  HostName 198.18.0.%s\n\n' "$i" $((11 + i))
  done > "$W/stacks/ssh_config"
  ssh-keygen -q -t ed25519 -N "" -C bench -f "$W/id_ed25519"
  S=stacks/seed-003-aws-web.yaml
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  AWS_LIKE='{"target_draining": true, "target_initial_secs": 1}' \
    python3 tests/aws_like/aws_like.py -H 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
  PIDS+=($!)
  export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    AWS_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
  "$H" lab down >/dev/null 2>&1 || true
  "$H" lab up --hosts "$N" >/dev/null
  (
    cd "$W"
    "$H" secrets init -f $S >/dev/null
    printf 'moto-only-pw' | "$H" secrets set db_password -f $S >/dev/null
    "$H" secrets set ssh_public_key -f $S < id_ed25519.pub >/dev/null
    "$H" up -f $S --auto-approve > "$OUT/deploy-alb-up-$N.log" 2>&1
  )
  TG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["resources"]["aws_lb_target_group.web"]["id"])' "$W/.hactl/aws-web.state.json")
  DNS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"]["balancer"]["dns_name"])' "$W/.hactl/aws-web.state.json")
  BACKENDS=$(python3 -c '
import json, sys
for h in json.load(open(sys.argv[1]))["outputs"]["hosts"]:
    i = int(h["name"].split("-")[1])
    print("--backend " + h["instance_id"] + "=198.18.0." + str(11 + i) + ":80")' "$W/.hactl/aws-web.state.json")
  # shellcheck disable=SC2086
  "$H" lab balancer --target-group "$TG" $BACKENDS --max-time 30m > "$OUT/deploy-alb-standin-$N.jsonl" &
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q listening "$OUT/deploy-alb-standin-$N.jsonl" 2>/dev/null && break; sleep 0.1; done
  LB=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["addr"])' "$OUT/deploy-alb-standin-$N.jsonl")
  sleep 1
  for r in $(seq 1 "$RUNS"); do
    v=v2; [ $((r % 2)) = 0 ] && v=v1
    (cd "$W" && /usr/bin/time -f '%e %U %S %M' -o "$OUT/deploy-alb-$N-$r.time" \
      "$H" deploy -f $S --archive "$W/demo-$v.tar" --auto-approve --json --no-wait \
      --probe --probe-rate "$RATE" --probe-soak 0s --probe-resolve "$DNS=$LB" \
      > "$OUT/deploy-alb-$N-$r.json" 2>"$OUT/deploy-alb-$N-$r.log") || true  # the outcome column tells
  done
  ROWS+=("$(python3 - "$N" "$DELAY" "$OUT"/deploy-alb-"$N"-[0-9]*.json <<'PY'
import json, statistics, sys
n, delay = sys.argv[1], sys.argv[2]
delay_ms = float(delay.rstrip("s")) * 1000 if not delay.endswith("ms") else float(delay[:-2])
files = sys.argv[3:]
runs = [json.load(open(f)) for f in files]
# /usr/bin/time: wall, user, sys (s), max RSS (KiB)
times = [open(f[:-len(".json")] + ".time").read().split()[-4:] for f in files]
med = lambda xs: statistics.median(xs) / 1000
bs = [b for r in runs for b in r["batches"]]
over = [b["overhead_ms"] for b in bs]
drain_past = [b["drain_ms"] - delay_ms for b in bs]
healthy_past = [b["register_ms"] - 1000 for b in bs]
reqs = sum(r["probe"]["requests"] for r in runs)
failed = sum(r["probe"]["failed"] for r in runs)
cpu = [float(t[1]) + float(t[2]) for t in times]
wall = [float(t[0]) for t in times]
rss = max(int(t[3]) for t in times) / 1024
outcomes = ",".join(sorted({r["outcome"] for r in runs}))
print(f"| {n} | {len(runs[0]['batches'])} | {med([r['elapsed_ms'] for r in runs]):.2f} s | "
      f"{med([b['elapsed_ms'] for b in bs]):.2f} s | {med([b['drain_ms'] for b in bs]):.2f} s | "
      f"{med([b['host_ms'] for b in bs]):.2f} s | {med([b['register_ms'] for b in bs]):.2f} s | "
      f"{med(over):.2f} s (max {max(over)/1000:.2f} s) | "
      f"{med(drain_past):.2f} s + {med(healthy_past):.2f} s | "
      f"{statistics.median(cpu):.1f} s of {statistics.median(wall):.0f} s ({100 * sum(cpu) / sum(wall):.0f} %), {rss:.0f} MiB | "
      f"{reqs} / {failed} | {outcomes} |")
PY
)")
  (cd "$W" && "$H" down -f $S --auto-approve >/dev/null 2>&1 || true)
  cleanup; PIDS=()
done
"$H" lab down >/dev/null 2>&1 || true

{
  echo "Command: \`${HACTL_BIN:+HACTL_BIN=$HACTL_BIN }RUNS=$RUNS SIZES=\"$SIZES\" DELAY=$DELAY RATE=$RATE bash bench/deploy-alb.sh\`"
  echo
  echo "Deploy of seed 003 through its target group (batch 1; deregister, drain for the ${DELAY} delay, blue/green swap with the new slot started beside the old one and gated on health, register, wait until \`healthy\`), median of $RUNS runs per size, probe at $RATE req/s through \`hactl lab balancer\` on moto behind the AWS-like layer. Machine: $(nproc) cores, shared; $(date -u +%Y-%m-%d); binary: \`$H\` ($(case $H in */debug/*) echo debug;; *) echo release;; esac) build)."
  echo
  echo "| hosts | batches | deploy wall time | time per batch | deregister + drain | on-host swap (slowest host) | register → healthy | hactl overhead per batch (SSH, API, orchestration) | balancer waits past the delay + past \`initial\` (polling) | hactl CPU per deploy (user+sys of wall), peak RSS | probe requests / failed | outcome |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "A batch's floor is the deregistration delay (AWS keeps a target \`draining\` for all of it) plus the on-host swap plus the balancer's first healthy checks (1 s \`initial\` here). hactl's overhead is the rest of the batch (SSH round trips, the DeregisterTargets/RegisterTargets calls, orchestration) plus what its two waits take past the balancer's own time: DescribeTargetHealth is polled every 250 ms, so each wait ends up to one poll (and one call) after the state changed. The CPU column is the whole hactl process, the 200 req/s probe (one plain-HTTP connection per request) included. With the seed's own 30 s delay each batch would take about 27 s longer: the delay, not hactl, is what a deploy through a target group waits for. Reproduce: \`bash bench/deploy-alb.sh\` (RUNS, SIZES, DELAY, RATE, HACTL_BIN)."
} > "$OUT/deploy-alb.md"
cat "$OUT/deploy-alb.md"

DOC=docs/benchmarks.md
python3 - "$DOC" "$OUT/deploy-alb.md" <<'PY'
import sys, re
doc, new = sys.argv[1], open(sys.argv[2]).read().strip()
text = open(doc).read()
block = f"<!-- deploy-alb:start -->\n## Deploy through the balancer (issue 13, `bench/deploy-alb.sh`)\n\n{new}\n<!-- deploy-alb:end -->"
if "<!-- deploy-alb:start -->" in text:
    text = re.sub(r"<!-- deploy-alb:start -->.*?<!-- deploy-alb:end -->", lambda m: block, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n" + block + "\n"
open(doc, "w").write(text)
PY
