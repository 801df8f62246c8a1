#!/usr/bin/env bash
# Benchmark (issue 2): push 3 templated files + start/reload their services to 20 lab hosts,
# hactl vs ansible-playbook doing the same work (forks 20, pipelining, no fact gathering,
# each file validated by the real binary, handlers start the services). Median of 3 first runs
# (fresh hosts each time) and of 3 no-op re-runs each. Writes bench/out/push.md and updates
# the push section of docs/benchmarks.md. Needs root (lab hosts in network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
RUNS=${RUNS:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The debug build by default: its time here is SSH round trips, not CPU, and a cold release
# build of the AWS SDK crates costs ~12 minutes on 2 cores. PROFILE=release for the other.
PROFILE=${PROFILE:-debug}
if [ "$PROFILE" = release ]; then cargo build --release -q; else cargo build -q; fi
H="$CARGO_TARGET_DIR/$PROFILE/hactl"
# The lab is shared with the tests: hold their lock for the whole benchmark. `flock -o` keeps
# the lock's descriptor out of the lab hosts started below (they would hold it until `lab down`).
if [ -z "${HACTL_BENCH_LOCKED:-}" ]; then
  HACTL_BENCH_LOCKED=1 exec flock -o /run/lock/hactl-lab-tests.lock bash "$0" "$@"
fi
OUT="$PWD/bench/out"; mkdir -p "$OUT"
LAB=/srv/hactl-lab
bash scripts/deps.sh bench   # the only thing that installs: ansible-playbook among the rest

# The stack: lab.yaml grown to N hosts (distinct priorities, same VIP and services).
python3 - "$N" > "$OUT/push-stack.yaml" <<'PY'
import sys, os
n = int(sys.argv[1])
root = os.getcwd()
text = open("stacks/lab.yaml").read()
# Same stack, same vault (bound to the name `lab`): only paths made absolute for bench/out/.
text = text.replace("identity_file: ../secrets/lab.demo-key",
                    f"identity_file: {root}/secrets/lab.demo-key\n  file: {root}/secrets/lab.age")
text = text.replace("template: templates/", f"template: {root}/stacks/templates/")
head, rest = text.split("hosts:\n", 1)
_, tail = rest.split("\nvip:", 1)
hosts = "".join(f"  - name: host{i}\n    address: 198.18.0.{10+i}\n    priority: {150 if i == 1 else 101 - i}\n" for i in range(1, n + 1))
print(head + "hosts:\n" + hosts + "\nvip:" + tail, end="")
PY

# Fresh hosts for every first run, then 2 s for the 20 new hosts to settle (same for both tools:
# the push is measured, not the lab's own start-up).
fresh_lab() { "$H" lab down >/dev/null 2>&1 || true; "$H" lab up --hosts "$N" >/dev/null; sleep 2; }

# Ansible's inputs: the same rendered files as templates, an inventory, a playbook.
"$H" render -f "$OUT/push-stack.yaml" --out "$OUT/render" >/dev/null
{
  echo "[lab]"
  for i in $(seq 1 "$N"); do echo "host$i ansible_host=198.18.0.$((10 + i))"; done
  echo "[lab:vars]"
  echo "ansible_user=root"
  echo "ansible_ssh_private_key_file=$LAB/id_ed25519"
  echo "ansible_ssh_common_args='-o UserKnownHostsFile=$LAB/known_hosts -o StrictHostKeyChecking=yes -o ControlMaster=auto -o ControlPersist=60s'"
  echo "ansible_python_interpreter=/usr/bin/python3"
} > "$OUT/inventory.ini"
cat > "$OUT/ansible.cfg" <<CFG
[defaults]
forks = 20
host_key_checking = True
gathering = explicit
stdout_callback = default
interpreter_python = /usr/bin/python3
[ssh_connection]
pipelining = True
control_path_dir = $OUT/cp
CFG
cat > "$OUT/push.yml" <<'YML'
- hosts: lab
  gather_facts: false
  tasks:
    - name: nginx.conf
      ansible.builtin.template:
        src: "render/{{ inventory_hostname }}/etc/nginx/nginx.conf"
        dest: /etc/nginx/nginx.conf
        mode: "0644"
        validate: nginx -t -q -c %s
      notify: nginx
    - name: haproxy.cfg
      ansible.builtin.template:
        src: "render/{{ inventory_hostname }}/etc/haproxy/haproxy.cfg"
        dest: /etc/haproxy/haproxy.cfg
        mode: "0644"
        validate: haproxy -c -q -f %s
      notify: haproxy
    - name: keepalived.conf
      ansible.builtin.template:
        src: "render/{{ inventory_hostname }}/etc/keepalived/keepalived.conf"
        dest: /etc/keepalived/keepalived.conf
        mode: "0644"
        validate: keepalived -t -f %s
      notify: keepalived
  handlers:
    - name: nginx
      ansible.builtin.command: systemctl restart nginx
    - name: haproxy
      ansible.builtin.command: systemctl restart haproxy
    - name: keepalived
      ansible.builtin.command: systemctl restart keepalived
YML

secs() { python3 -c 'import sys,time; print(f"{time.time():.3f}")'; }
timeit() { local t0 t1; t0=$(secs); "$@" >>"$OUT/push.log" 2>&1; t1=$(secs); python3 -c "print(f'{$t1-$t0:.3f}')"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

: > "$OUT/push.log"
h_first=(); h_noop=(); a_first=(); a_noop=()
for r in $(seq 1 "$RUNS"); do
  fresh_lab
  h_first+=("$(timeit "$H" up -f "$OUT/push-stack.yaml" --auto-approve)")
  h_noop+=("$(timeit "$H" up -f "$OUT/push-stack.yaml" --auto-approve)")
  fresh_lab
  a_first+=("$(cd "$OUT" && ANSIBLE_CONFIG=ansible.cfg timeit ansible-playbook -i inventory.ini push.yml)")
  a_noop+=("$(cd "$OUT" && ANSIBLE_CONFIG=ansible.cfg timeit ansible-playbook -i inventory.ini push.yml)")
  echo "run $r: hactl ${h_first[-1]} s / no-op ${h_noop[-1]} s; ansible ${a_first[-1]} s / no-op ${a_noop[-1]} s"
done
"$H" lab down >/dev/null

hf=$(median "${h_first[@]}"); hn=$(median "${h_noop[@]}")
af=$(median "${a_first[@]}"); an=$(median "${a_noop[@]}")
speed=$(python3 -c "print(f'{$af/$hf:.1f}')"); speedn=$(python3 -c "print(f'{$an/$hn:.1f}')")
cat > "$OUT/push.md" <<MD
## Push: 3 templated files + service (re)start on $N lab hosts

Command: \`bash bench/push.sh\` (N=$N, median of $RUNS, fresh lab hosts (settled 2 s) before every first run,
$PROFILE build of hactl; $(date -u +%Y-%m-%d), $(nproc) cores). Ansible: ansible-core $(ansible-playbook --version | head -1 | grep -o '[0-9][0-9.]*' | head -1),
forks 20, pipelining, ControlPersist, no fact gathering, \`template\` with \`validate\` by the
real binary, handlers restart the services. hactl: \`hactl up --auto-approve\` (render, observe,
diff, write + check + rename, start/reload).

| | first run (s) | no-op re-run (s) | runs (first) | runs (no-op) |
|---|---|---|---|---|
| hactl | $hf | $hn | ${h_first[*]} | ${h_noop[*]} |
| ansible-playbook | $af | $an | ${a_first[*]} | ${a_noop[*]} |
| ratio | **${speed}×** | **${speedn}×** | | |
MD
python3 - "$OUT/push.md" <<'PY'
import sys, re, os
new = open(sys.argv[1]).read().strip() + "\n"
p = "docs/benchmarks.md"
doc = open(p).read() if os.path.exists(p) else "# Benchmarks\n\nEvery figure here was produced by the command named in its section, on this project's CI machine kind.\n"
start = "<!-- push:start -->"; end = "<!-- push:end -->"
block = f"{start}\n{new}{end}"
doc = re.sub(re.escape(start) + ".*?" + re.escape(end), block, doc, flags=re.S) if start in doc else doc.rstrip() + "\n\n" + block + "\n"
open(p, "w").write(doc)
PY
cat "$OUT/push.md"
