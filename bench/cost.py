#!/usr/bin/env python3
"""Where a push's CPU goes, by process accounting rather than the machine's /proc/stat (which
other builds on a shared machine make noisy). Used by bench/push.sh.

    cost.py run TAG N LAB CLIENT_PATTERN -- CMD...

runs CMD and appends one JSON line to $COST_OUT (default bench/out/cost.jsonl) with:
  wall_s       wall time of CMD
  client_ms    CPU (user+sys) of CMD and every descendant it waited for (getrusage of
               children), plus the change in CPU of live client processes whose command line
               contains CLIENT_PATTERN (SSH control masters daemonize: ssh -f re-parents them
               to init, so the command's rusage never sees them); "" for none. cost.py
               itself is never one of them (its own arguments hold the pattern).
  client_own_ms, client_daemons_ms: the two parts of client_ms
  hosts_ms     CPU of every process in every lab host (a host is a PID namespace whose PID 1
               is its sshd), summed over the N hosts: live processes' user+sys+cutime+cstime,
               which includes every exited process reaped inside the namespace
  forks        processes created in the N hosts' PID namespaces (each namespace's
               ns_last_pid, read from inside it before and after; the reader is subtracted)
  per host: hosts_ms / N and forks / N.
"""
import ctypes
import json
import os
import resource
import subprocess
import sys
import time

TCK = os.sysconf("SC_CLK_TCK")


def stat_times(pid):
    """(utime + stime + cutime + cstime) in ticks of one process, or 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # fields after "(comm)": state=0 ... utime=11 stime=12 cutime=13 cstime=14
    return sum(int(x) for x in rest[11:15])


def ns_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def lab_inits(lab, n):
    """PID 1 (in the root namespace's numbering) of lab hosts host1..hostN."""
    out = {}
    for i in range(1, n + 1):
        try:
            with open(f"{lab}/hosts/host{i}/init.pid") as f:
                out[f"host{i}"] = int(f.read().strip())
        except (OSError, ValueError):
            pass
    return out


libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWPID = 0x20000000


def last_pid(init):
    """The host's ns_last_pid, read by a child forked inside its PID namespace (pid ns_last_pid
    is per namespace: /proc/sys/kernel/ns_last_pid answers for the reader's own)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            fd = os.open(f"/proc/{init}/ns/pid", os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWPID) != 0:
                os._exit(2)
            # setns(CLONE_NEWPID) places only this process's children in the namespace
            grandchild = os.fork()
            if grandchild == 0:
                with open("/proc/sys/kernel/ns_last_pid") as f:
                    os.write(w, f.read().encode())
                os._exit(0)
            os.waitpid(grandchild, 0)
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        b = os.read(r, 64)
        if not b:
            break
        data += b
    os.close(r)
    os.waitpid(child, 0)
    try:
        return int(data.strip())
    except ValueError:
        return None


def snapshot(lab, n, pattern):
    inits = lab_inits(lab, n)
    ns = {ns_of(p): h for h, p in inits.items()}
    hosts = {h: 0 for h in inits}
    client = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        # cost.py's own command line holds the pattern too (it is an argument), and its
        # cutime grows by the measured command once reaped: counting it counted the command
        # twice (client CPU of hactl and ansible, whose runs pass a pattern, was ~2x too high)
        if pid == os.getpid():
            continue
        h = ns.get(ns_of(pid))
        if h is not None:
            hosts[h] += stat_times(pid)
        elif pattern:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if pattern.encode() in cmd:
                client += stat_times(pid)
    forks = {h: last_pid(p) for h, p in inits.items()}
    return hosts, client, forks


def run(argv):
    tag, n, lab, pattern = argv[0], int(argv[1]), argv[2], argv[3]
    cmd = argv[argv.index("--") + 1:]
    h0, c0, f0 = snapshot(lab, n, pattern)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    rc = subprocess.call(cmd)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    h1, c1, f1 = snapshot(lab, n, pattern)
    own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    client_ms = own * 1000 + (c1 - c0) * 1000 / TCK
    hosts_ms = sum(h1.get(h, 0) - h0.get(h, 0) for h in h1) * 1000 / TCK
    # each reading takes one pid (the reader): the second reading's own is not the command's
    forks = sum(f1[h] - f0[h] - 1 for h in f1 if f1.get(h) is not None and f0.get(h) is not None)
    rec = {
        "tag": tag, "n": n, "rc": rc, "wall_s": round(wall, 3),
        "client_ms": round(client_ms), "client_own_ms": round(own * 1000),
        "client_daemons_ms": round((c1 - c0) * 1000 / TCK), "hosts_ms": round(hosts_ms), "forks": forks,
        "client_ms_per_host": round(client_ms / n, 1), "hosts_ms_per_host": round(hosts_ms / n, 1),
        "forks_per_host": round(forks / n, 1),
    }
    out = os.environ.get("COST_OUT", "bench/out/cost.jsonl")
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"cost: {tag} n={n}: {wall:.2f} s; client {client_ms / n:.1f} ms/host, "
          f"hosts {hosts_ms / n:.1f} ms/host, {forks / n:.1f} forks/host", file=sys.stderr)
    return rc


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "run":
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(run(sys.argv[2:]))
