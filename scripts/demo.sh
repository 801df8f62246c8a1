#!/usr/bin/env bash
# The main job on the local lab: install what is missing, build, start 3 lab hosts, bring up
# stacks/lab-app.yaml (keepalived VIP → haproxy/nginx → a podman-compose app on every host),
# roll out a new app version under load with zero failed requests, then a failover drill:
# nginx stops on the VIP holder, hactl measures the outage and the failback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh demo   # only what the demo needs (not redis, moto, ansible)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hactl-target}"
# The demo talks only to lab hosts: the guard refuses any other SSH target (src/provider/hosts/guard.rs).
export HACTL_NETWORK_GUARD=lab
# The debug build: it shares the test suite's build, and hactl's time here is SSH, not CPU.
cargo build
H="$CARGO_TARGET_DIR/debug/hactl"
VIP=198.18.0.100
mkdir -p target/lab-app

echo "== lab: 3 hosts"
"$H" lab up --hosts 3
echo "== app images (v1, v2) built locally, no registry"
"$H" lab demo-image --version v1 -o target/lab-app/demo-v1.tar
"$H" lab demo-image --version v2 -o target/lab-app/demo-v2.tar
echo "== up: VIP + haproxy + nginx + app v1 (returns once the stack serves)"
"$H" up -f stacks/lab-app.yaml --auto-approve
"$H" lab check "$VIP"   # traffic goes only to the lab: the VIP must route through hactl0
echo "GET http://$VIP/ -> $(curl -s -m 2 "http://$VIP/")"
"$H" status -f stacks/lab-app.yaml || true

echo "== deploy v2 under a 50 req/s probe"
"$H" deploy -f stacks/lab-app.yaml --archive target/lab-app/demo-v2.tar --probe --probe-rate 50 --auto-approve
echo "GET http://$VIP/ -> $(curl -s -m 2 "http://$VIP/")"

echo "== failover drill: nginx stops on the VIP holder"
"$H" drill -f stacks/lab-app.yaml --scenario service-stop
"$H" status -f stacks/lab-app.yaml
echo "demo done: the lab is still up ('$H lab down' removes it)"
