#!/usr/bin/env bash
# Provisioning benchmark (issue 3): on ONE moto server on 127.0.0.1, the seed-003 stack
#   - `hactl up` (from nothing), then a no-op `hactl plan`, then `hactl down`;
#   - an Ansible playbook doing the same with the amazon.aws / community.aws collections
#     (bench/ansible/seed003.yml, `endpoint_url` pointed at moto).
# Each is run 3 times with `POST /moto-api/reset` in between; the median is reported.
#
# Usage: bench/provision.sh [RUNS]        (needs: moto_server, ansible-playbook, boto3, a
#        built hactl: target/release/hactl if present, else target/debug/hactl)
# Output: one table on stdout, in the format of docs/benchmarks.md.
set -euo pipefail
# hactl may SSH only to loopback and the lab (src/provider/hosts/guard.rs).
export HACTL_NETWORK_GUARD=lab

RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HACTL=${HACTL:-$ROOT/target/release/hactl}
[ -x "$HACTL" ] || HACTL=$ROOT/target/debug/hactl
[ -x "$HACTL" ] || { echo "build hactl first (cargo build)" >&2; exit 1; }
command -v moto_server >/dev/null || { echo "moto_server missing: pip install 'moto[server]'" >&2; exit 1; }
command -v ansible-playbook >/dev/null || { echo "ansible-playbook missing: pip install ansible" >&2; exit 1; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
MOTO_ENABLE_AMI_VALIDATION=true MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true \
  moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break
  sleep 0.1
done

export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export HOME=$WORK ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false

# The moto-ready seed-003 stack (moto's own AMI, us-east-1, no S3 backend): the same shape as
# stacks/seed-003-aws-web.yaml, whose AMI and key pair are placeholders for a real account.
STACK=$ROOT/tests/fixtures/aws/web.yaml
sed 's/STACKNAME/bench/' "$STACK" >"$WORK/stack.yaml"
cd "$WORK"
"$HACTL" secrets init -f stack.yaml >/dev/null 2>&1
printf 'bench-only-pw' | "$HACTL" secrets set db_password -f stack.yaml >/dev/null 2>&1

now() { date +%s.%N; }
reset() { curl -s -X POST "http://127.0.0.1:$PORT/moto-api/reset" >/dev/null; rm -rf "$WORK/.hactl"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Warm moto up once (its first EC2 call loads its data files, ~1 s) so neither side pays it.
"$HACTL" plan -f stack.yaml >/dev/null 2>&1 || true

: >"$WORK/hactl_up"; : >"$WORK/hactl_plan"; : >"$WORK/hactl_down"; : >"$WORK/ansible_up"
for i in $(seq "$RUNS"); do
  reset
  # --provision-only: moto's instances have made-up public addresses; configuring them over SSH
  # would send traffic off this machine (the network rule: loopback and the lab only).
  t0=$(now); "$HACTL" up -f stack.yaml --auto-approve --provision-only >"$WORK/up.$i.log" 2>&1 || { echo "hactl up failed:" >&2; tail -20 "$WORK/up.$i.log" >&2; exit 1; }; t1=$(now)
  echo "$t1 - $t0" | bc -l >>"$WORK/hactl_up"
  t0=$(now); "$HACTL" plan -f stack.yaml --detailed-exitcode >/dev/null 2>&1; t1=$(now)
  echo "$t1 - $t0" | bc -l >>"$WORK/hactl_plan"
  t0=$(now); "$HACTL" down -f stack.yaml --auto-approve --allow-data-loss >/dev/null 2>&1; t1=$(now)
  echo "$t1 - $t0" | bc -l >>"$WORK/hactl_down"
  reset
  t0=$(now)
  ansible-playbook -i localhost, -c local -e ansible_python_interpreter="$(command -v python3)" "$ROOT/bench/ansible/seed003.yml" \
    -e "endpoint=$AWS_ENDPOINT_URL" >"$WORK/ansible.$i.log" 2>&1 \
    || { echo "ansible run $i failed:" >&2; tail -30 "$WORK/ansible.$i.log" >&2; exit 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l >>"$WORK/ansible_up"
done

hu=$(median <"$WORK/hactl_up"); hp=$(median <"$WORK/hactl_plan"); hd=$(median <"$WORK/hactl_down")
au=$(median <"$WORK/ansible_up")
printf '| what | median of %s (s) | all runs (s) |\n|---|---|---|\n' "$RUNS"
printf '| hactl up (20 resources, from nothing) | %.2f | %s |\n' "$hu" "$(paste -sd' ' "$WORK/hactl_up" | xargs printf '%.2f ')"
printf '| hactl plan (no-op, everything read by tags) | %.2f | %s |\n' "$hp" "$(paste -sd' ' "$WORK/hactl_plan" | xargs printf '%.2f ')"
printf '| hactl down | %.2f | %s |\n' "$hd" "$(paste -sd' ' "$WORK/hactl_down" | xargs printf '%.2f ')"
printf '| ansible-playbook (amazon.aws, same resources) | %.2f | %s |\n' "$au" "$(paste -sd' ' "$WORK/ansible_up" | xargs printf '%.2f ')"
printf '\nspeed-up (ansible / hactl up): %.1fx\n' "$(echo "$au / $hu" | bc -l)"
