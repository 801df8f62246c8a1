#!/usr/bin/env bash
# The main job on the local lab: install what is missing, build, start 3 lab hosts, bring up
# stacks/lab.yaml (keepalived VIP in front of nginx + haproxy), show who holds the VIP, then a
# failover drill: stop nginx on the holder, watch the VIP move, start it again, watch it
# come back.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hactl-target}"
cargo build --release
H="$CARGO_TARGET_DIR/release/hactl"
VIP=198.18.0.100

"$H" lab up --hosts 3
"$H" up -f stacks/lab.yaml --auto-approve
"$H" status -f stacks/lab.yaml

# Traffic goes only to the lab: check the VIP routes through the lab bridge first.
ip route get "$VIP" | grep -q 'dev hactl0' || { echo "VIP does not route to the lab" >&2; exit 1; }
echo "GET http://$VIP/ -> $(curl -s -m 2 "http://$VIP/")"

holder=$(curl -s -m 2 "http://$VIP/")
echo "== drill: stopping nginx on $holder"
"$H" lab exec "$holder" -- systemctl stop nginx
t0=$(date +%s.%N)
for _ in $(seq 50); do
  now=$(curl -s -m 1 "http://$VIP/" || true)
  if [ -n "$now" ] && [ "$now" != "$holder" ]; then break; fi
  sleep 0.1
done
echo "VIP moved to $now after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s"
"$H" status -f stacks/lab.yaml || true
echo "== drill: starting nginx on $holder again"
"$H" lab exec "$holder" -- systemctl start nginx
sleep 3
echo "GET http://$VIP/ -> $(curl -s -m 2 "http://$VIP/")"
"$H" status -f stacks/lab.yaml
echo "demo done: the lab is still up ('$H lab down' removes it)"
