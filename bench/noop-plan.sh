#!/usr/bin/env bash
# Benchmark (issue 11): a no-op `hactl plan` of seed 003 (stacks/seed-003-aws-web.yaml) with
# two lab hosts as its instances, both layers in one plan: the cloud layer read from moto by
# tags (21 resources), the host layer read over SSH from the two instances (files, services,
# manifest). Target: < 0.5 s.
#
# Set-up, as tests/it/aws.rs::aws_seed003_one_plan_for_cloud_and_hosts_and_saved_plans does:
# `hactl lab up --hosts 2`; one moto_server on 127.0.0.1; the seed with the lab's SSH key, an
# ssh_config that sends the instances web-0/web-1 to the lab's host1/host2, and the demo app
# image; `hactl up` once (both layers). Then RUNS timed `hactl plan --detailed-exitcode` (each
# must exit 0: nothing to do), a release build of hactl, one process per run (the state read
# from disk, the vault decrypted, the cloud read from moto; each host's SSH master is the one
# the previous run left, as for a user's next command).
#
# Usage: bench/noop-plan.sh [RUNS]   (default 10; PROFILE=debug for a debug build,
#        HACTL=BINARY to time that binary, TRACE_DIR=DIR for one more traced run kept in DIR;
#        needs root, moto_server, strace with TRACE_DIR, the lab's tools)
# Output: each run's wall time and the median, on stdout. Network: loopback and the lab's
# addresses only (HACTL_NETWORK_GUARD=lab refuses anything else); it leaves no lab, moto
# server or SSH master behind.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${1:-10}
export HACTL_NETWORK_GUARD=lab
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hactl-target}"
PROFILE=${PROFILE:-release}
if [ -n "${HACTL:-}" ]; then
  H=$HACTL # a binary built elsewhere (its profile is the caller's to state)
else
  if [ "$PROFILE" = release ]; then cargo build --release -q; else cargo build -q; fi
  H="$CARGO_TARGET_DIR/$PROFILE/hactl"
fi
# The lab is shared with the tests: hold their lock for the whole benchmark (`flock -o` keeps
# the descriptor out of the lab hosts started below).
if [ -z "${HACTL_BENCH_LOCKED:-}" ]; then
  HACTL_BENCH_LOCKED=1 exec flock -o /run/lock/hactl-lab-tests.lock bash "$0" "$@"
fi
command -v moto_server >/dev/null || { echo "moto_server missing: pip install 'moto[server]'" >&2; exit 1; }

WORK=$(mktemp -d)
MOTO=
cleanup() {
  set +e
  if [ -n "$MOTO" ]; then
    (cd "$WORK" && HOME=$WORK "$H" down -f stacks/seed-003-aws-web.yaml --auto-approve >/dev/null 2>&1)
    kill "$MOTO" 2>/dev/null
  fi
  "$H" lab down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

"$H" lab down >/dev/null 2>&1 || true
"$H" lab up --hosts 2 >/dev/null

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_ENABLE_AMI_VALIDATION=true MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true \
  MOTO_ENABLE_KEYPAIR_VALIDATION=true moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO=$!
for _ in $(seq 300); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break
  sleep 0.1
done
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset HACTL_AGE_KEY HACTL_AGE_KEY_FILE
export HOME=$WORK

# The seed, its lab variant (tests/it/aws.rs::lab_variant): root over the lab key, the
# instances' names mapped to the lab hosts, the app from the demo image archive.
mkdir -p "$WORK/stacks/templates"
cp stacks/templates/aws-web-app.env.j2 "$WORK/stacks/templates/"
python3 - "$ROOT/stacks/seed-003-aws-web.yaml" "$WORK/stacks/seed-003-aws-web.yaml" <<'PY'
import sys
text = open(sys.argv[1]).read()
s = text.index("\nssh:\n") + 1
e = text.index("\n\n", s)
text = (text[:s] + "ssh:\n  user: root\n  identity_file: /srv/hactl-lab/id_ed25519\n"
        "  config_file: ssh_config\n  connect_timeout: 5s\n" + text[e:])
s = text.index("\napp:\n") + 1
e = text.index("\n\n", s)
text = (text[:s] + "app:\n  archive: ../demo-v1.tar\n  port: 8080\n  host_port: 8000\n"
        "  replicas: 1\n  runtime: podman\n  health:\n    path: /healthz\n    interval: 250ms\n"
        "    timeout: 1s\n    healthy_threshold: 2\n    deadline: 8s\n" + text[e:])
open(sys.argv[2], "w").write(text)
PY
printf '# web-0/web-1 are EC2 instances on moto; here they are the lab hosts.\nHost web-0\n  HostName 198.18.0.11\n\nHost web-1\n  HostName 198.18.0.12\n' \
  >"$WORK/stacks/ssh_config"
cd "$WORK"
F=stacks/seed-003-aws-web.yaml
"$H" lab demo-image --version v1 -o demo-v1.tar >/dev/null
"$H" secrets init -f $F >/dev/null 2>&1
printf 'moto-only-pw' | "$H" secrets set db_password -f $F >/dev/null 2>&1
ssh-keygen -q -t ed25519 -N '' -C noop-plan-bench -f id_ed25519
"$H" secrets set ssh_public_key -f $F <id_ed25519.pub >/dev/null 2>&1

"$H" up -f $F --auto-approve >up.log 2>&1 || { cat up.log >&2; exit 1; }
# Warm moto's first reads and the page cache once; every timed run is a new process anyway.
"$H" plan -f $F --detailed-exitcode >/dev/null

times=()
for i in $(seq "$RUNS"); do
  t0=$(date +%s.%N)
  code=0
  "$H" plan -f $F --detailed-exitcode >plan.out 2>plan.err || code=$?
  t1=$(date +%s.%N)
  if [ "$code" != 0 ]; then
    echo "run $i: plan exited $code (a no-op plan exits 0)" >&2
    cat plan.out plan.err >&2
    exit 1
  fi
  times+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")
done
# TRACE_DIR=DIR: one more plan with hactl's debug log (timestamps) and every process it
# starts (strace), kept in DIR for finding where the time goes.
if [ -n "${TRACE_DIR:-}" ]; then
  mkdir -p "$TRACE_DIR"
  RUST_LOG=debug strace -f -tt -e trace=execve,connect,wait4 -o "$TRACE_DIR/strace.txt" \
    "$H" plan -f $F -v -v >"$TRACE_DIR/plan.out" 2>"$TRACE_DIR/plan.log" || true
fi
changes=$(grep -c '' plan.out)
printf 'no-op plan (seed 003 on moto + 2 lab hosts, %s build), %s runs (s): %s\n' "$PROFILE" "$RUNS" "${times[*]}"
python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'median {statistics.median(v):.3f} s, min {min(v):.3f} s, max {max(v):.3f} s')" "${times[@]}"
echo "the last plan's output ($changes lines):"
cat plan.out
