#!/usr/bin/env bash
# `hactl up` under AWS-like latency and faults (issue 12): moto behind tests/aws_like/aws_like.py
# with 10% of calls throttled, 3 s NotFound after each create, instances 2 s pending, load
# balancer 5 s provisioning, EFS 2 s creating, RDS 20 s creating/backing-up, ENIs lingering 5 s.
# `up --provision-only` of tests/fixtures/aws/web.yaml from nothing, RUNS times (a fresh layer
# each time), against the critical path: the longest chain of imposed delays through the
# stack's dependencies, which no scheduler can beat:
#
#   VPC (3 s NotFound: ModifyVpcAttribute) → lb security group (3 s: its ingress rules)
#   → hosts security group (3 s) → db security group (3 s) → DB instance (20 s to available)
#   = 4 × not_found_secs + rds_ready_secs = 32 s
#
# Usage: bench/aws-like.sh [RUNS]   (needs python3 with moto, and a built hactl:
#        target/release/hactl if present, else target/debug/hactl)
# Output: a table in the format of docs/benchmarks.md.
set -euo pipefail
# hactl may SSH only to loopback and the lab (src/provider/hosts/guard.rs).
export HACTL_NETWORK_GUARD=lab

RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HACTL=${HACTL:-$TARGET/release/hactl}
[ -x "$HACTL" ] || HACTL=$TARGET/debug/hactl
[ -x "$HACTL" ] || { echo "build hactl first (cargo build)" >&2; exit 1; }
python3 -c 'import moto' 2>/dev/null || { echo "moto missing: pip install 'moto[server]'" >&2; exit 1; }

NOT_FOUND=3 RDS=20
SETTINGS="{\"throttle_share\": 0.1, \"not_found_secs\": $NOT_FOUND, \"instance_pending_secs\": 2,
  \"lb_ready_secs\": 5, \"efs_ready_secs\": 2, \"rds_ready_secs\": $RDS, \"eni_linger_secs\": 5}"
CRITICAL=$((4 * NOT_FOUND + RDS))

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
LAYER=
stop_layer() {
  [ -n "$LAYER" ] || return 0
  kill "$LAYER" 2>/dev/null || true
  # Until the port is free again: the next run starts a fresh layer on it.
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null || break
    sleep 0.1
  done
  LAYER=
}
trap 'stop_layer; rm -rf "$WORK"' EXIT

export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null HOME=$WORK
unset AWS_RETRY_MODE AWS_MAX_ATTEMPTS

sed 's/STACKNAME/bench/' "$ROOT/tests/fixtures/aws/web.yaml" >"$WORK/stack.yaml"
cd "$WORK"
"$HACTL" secrets init -f stack.yaml >/dev/null 2>&1
printf 'bench-only-pw' | "$HACTL" secrets set db_password -f stack.yaml >/dev/null 2>&1

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$WORK/up"
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/.hactl"
  AWS_LIKE="$SETTINGS" MOTO_ENABLE_AMI_VALIDATION=true \
    python3 "$ROOT/tests/aws_like/aws_like.py" -H 127.0.0.1 -p "$PORT" >"$WORK/layer.$i.log" 2>&1 &
  LAYER=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break
    sleep 0.1
  done
  # moto loads its EC2 data at the first EC2 call (~1 s): pay it before the clock starts.
  "$HACTL" plan -f stack.yaml >/dev/null 2>&1 || true
  t0=$(now)
  "$HACTL" up -f stack.yaml --auto-approve --provision-only >"$WORK/up.$i.log" 2>&1 \
    || { echo "hactl up failed:" >&2; tail -20 "$WORK/up.$i.log" >&2; exit 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l >>"$WORK/up"
  curl -s "http://127.0.0.1:$PORT/_aws_like/stats" >"$WORK/stats.$i.json"
  stop_layer
done

up=$(median <"$WORK/up")
printf '| what | median of %s (s) | all runs (s) |\n|---|---|---|\n' "$RUNS"
printf '| critical path (longest chain of imposed delays) | %d | |\n' "$CRITICAL"
printf '| hactl up --provision-only (20 resources, from nothing) | %.2f | %s |\n' "$up" \
  "$(paste -sd' ' "$WORK/up" | xargs printf '%.2f ')"
printf '\nup - critical path: %.2f s\n' "$(echo "$up - $CRITICAL" | bc -l)"
printf 'faults in the last run: %s\n' "$(cat "$WORK/stats.$RUNS.json")"
