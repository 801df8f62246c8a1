#!/bin/bash
# hactl lab: a stand-in for systemctl inside lab hosts, which run no systemd. `hactl lab up`
# writes it to <lab>/systemctl and each host bind-mounts it over /usr/bin/systemctl in its own
# mount namespace only (the machine's systemctl is untouched).
#
# Units: nginx, keepalived (logs to /var/log/keepalived.log), haproxy, rsyslog (alias syslog),
# redis-server@PORT, redis-sentinel, docker; ".service" is optional.
# Verbs: start stop restart reload reload-or-restart try-restart is-active is-enabled status
#        show enable disable daemon-reload. Several units per call, like systemctl.
# Unknown units behave like systemd's "not found": start/stop exit 5, status exits 4,
# is-active prints "inactive" and exits 3, show prints LoadState=not-found.
set -u

now=0 quiet=0 value=0 props=() args=()
while [ $# -gt 0 ]; do
  case $1 in
    --now) now=1 ;;
    -q|--quiet) quiet=1 ;;
    --value) value=1 ;;
    -p|--property) shift; props+=("${1:-}") ;;
    --property=*) props+=("${1#--property=}") ;;
    -*) ;;   # --no-pager, --no-block, --system ...: nothing to do here
    *) args+=("$1") ;;
  esac
  shift
done
verb=${args[0]:-}
units=("${args[@]:1}")
# enablement is per host: it lives in the host's /etc overlay
ENABLED=/etc/hactl-lab-systemctl/enabled

say() { [ "$quiet" = 1 ] || echo "$@"; }

# unit_def NAME: sets pidf, do_start, do_reload for a known unit; fails for unknown ones
unit_def() {
  case $1 in
    nginx)
      pidf=/run/nginx.pid
      do_start() { nginx; }
      do_reload() { nginx -s reload; } ;;
    keepalived)
      pidf=/run/keepalived.pid
      do_start() {
        mkdir -p /var/log
        setsid keepalived -n -l -G -D </dev/null >>/var/log/keepalived.log 2>&1 &
      }
      do_reload() { main_pid && kill -HUP "$pid"; } ;;
    haproxy)
      pidf=/run/haproxy.pid
      do_start() { mkdir -p /run/haproxy; haproxy -D -f /etc/haproxy/haproxy.cfg -p $pidf; }
      do_reload() { haproxy -D -f /etc/haproxy/haproxy.cfg -p $pidf -sf $(cat $pidf); } ;;
    # rsyslog (systemd's alias `syslog` too). It only reopens its files on HUP, so a changed
    # configuration needs a restart.
    rsyslog|syslog)
      pidf=/run/rsyslogd.pid
      do_start() { mkdir -p /var/log/hactl /var/spool/rsyslog; rsyslogd -i "$pidf"; }
      do_reload() { do_stop && start; } ;;
    # redis-server@PORT runs /etc/redis/redis-PORT.conf like Debian's template unit; hactl's
    # pre-start script (its ExecStartPre on a real host) writes that file with the role first.
    # redis cannot reload a configuration: reload restarts it.
    redis-server@*)
      rport=${1#redis-server@}
      pidf=/run/redis/redis-server-$rport.pid
      do_start() {
        mkdir -p /run/redis /var/log/redis "/var/lib/redis/$rport"
        if [ -x /etc/redis/hactl/prestart.sh ]; then
          /etc/redis/hactl/prestart.sh redis "$rport" >>/var/log/redis/prestart.log 2>&1 || return 1
        fi
        redis-server "/etc/redis/redis-$rport.conf" --daemonize yes --pidfile "$pidf"
      }
      do_reload() { do_stop && start; } ;;
    redis-sentinel|sentinel)
      pidf=/run/redis/redis-sentinel.pid
      do_start() {
        mkdir -p /run/redis /var/log/redis
        if [ -x /etc/redis/hactl/prestart.sh ]; then
          /etc/redis/hactl/prestart.sh sentinel >>/var/log/redis/prestart.log 2>&1 || return 1
        fi
        redis-sentinel /etc/redis/sentinel.conf --daemonize yes --pidfile "$pidf"
      }
      do_reload() { do_stop && start; } ;;
    # dockerd with the host's /etc/docker/daemon.json (written by `hactl lab up`: data-root on
    # the lab dir, networks in the lab range). It starts its own containerd. Started on demand
    # (hactl's app-ctl starts it when its socket is missing), like socket activation would.
    docker)
      pidf=/run/docker.pid
      do_start() {
        mkdir -p /var/log
        setsid dockerd </dev/null >>/var/log/docker.log 2>&1 &
        local i; for ((i = 0; i < 1500; i++)); do [ -S /run/docker.sock ] && docker version >/dev/null 2>&1 && return 0; nap; done
        return 1
      }
      do_reload() { main_pid && kill -HUP "$pid"; } ;;
    *) return 1 ;;
  esac
}

# Polled while services start and stop: builtins only (no `head`/`seq` forks), short sleeps.
# nap sleeps 20 ms without a process: `read -t` on a pipe this shell holds both ends of (the
# one fork, for `:`, happens at the first nap). `sleep` was one fork+exec per 20 ms poll.
# A daemon started after a nap must not inherit the pipe: nap_close before do_start.
nap() { [ -n "${nap_fd:-}" ] || exec {nap_fd}<> <(:); read -r -t 0.02 -u "$nap_fd" _ || :; }
nap_close() { [ -z "${nap_fd:-}" ] || { exec {nap_fd}>&-; nap_fd=; }; }
main_pid() { pid=""; [ -s "$pidf" ] && { read -r pid <"$pidf" || [ -n "$pid" ]; }; }
active() { main_pid && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
wait_up() { local i; for ((i = 0; i < 250; i++)); do active && return 0; nap; done; return 1; }
# A stop waits up to 30 s like systemd's (its default TimeoutStopSec is 90 s): redis 7 on
# SIGTERM waits up to shutdown-timeout (10 s) for lagging replicas, which a 5 s wait here cut
# short when `down` stopped a primary and its replica at once.
do_stop() {
  active || return 0
  kill "$pid"
  local i; for ((i = 0; i < 1500; i++)); do active || { rm -f "$pidf"; return 0; }; nap; done
  return 1
}
start() {
  active && return 0
  nap_close
  if ! do_start; then echo "Job for $u.service failed (lab stand-in)." >&2; return 1; fi
  wait_up || { echo "Job for $u.service failed: it did not come up (lab stand-in)." >&2; return 1; }
}
enabled() { [ -e "$ENABLED/$u" ]; }

# one unit, one verb; prints what systemctl would and returns its exit code
one() {
  local u=$1
  if ! unit_def "$u"; then
    case $verb in
      is-active|is-failed) say inactive; return 3 ;;
      is-enabled) echo "Failed to get unit file state for $u.service: No such file or directory" >&2; return 1 ;;
      status) echo "Unit $u.service could not be found." >&2; return 4 ;;
      show) show_props "$u" not-found inactive dead 0 ""; return 0 ;;
      enable|disable) echo "Failed to $verb unit: Unit file $u.service does not exist." >&2; return 1 ;;
      stop) echo "Failed to stop $u.service: Unit $u.service not loaded." >&2; return 5 ;;
      *) echo "Failed to $verb $u.service: Unit $u.service not found." >&2; return 5 ;;
    esac
  fi
  case $verb in
    start) start ;;
    stop) do_stop ;;
    restart) do_stop && start ;;
    try-restart) if active; then do_stop && start; fi ;;
    reload)
      if active; then do_reload
      else echo "Job for $u.service failed: unit is not active (lab stand-in)." >&2; return 1; fi ;;
    reload-or-restart) if active; then do_reload; else start; fi ;;
    is-active) if active; then say active; else say inactive; return 3; fi ;;
    is-failed) if active; then say active; return 1; else say inactive; return 1; fi ;;
    is-enabled) if enabled; then say enabled; else say disabled; return 1; fi ;;
    enable)
      mkdir -p "$ENABLED"; touch "$ENABLED/$u"
      if [ "$now" = 1 ]; then start; fi ;;
    disable)
      rm -f "$ENABLED/$u"
      if [ "$now" = 1 ]; then do_stop; fi ;;
    status)
      local en=disabled; enabled && en=enabled
      if active; then
        printf '● %s.service - %s (hactl lab stand-in)\n     Loaded: loaded (lab stand-in; %s)\n     Active: active (running)\n   Main PID: %s\n' "$u" "$u" "$en" "$pid"
      else
        printf '○ %s.service - %s (hactl lab stand-in)\n     Loaded: loaded (lab stand-in; %s)\n     Active: inactive (dead)\n' "$u" "$u" "$en"
        return 3
      fi ;;
    show)
      local en=disabled; enabled && en=enabled
      if active; then show_props "$u" loaded active running "$pid" "$en"
      else show_props "$u" loaded inactive dead 0 "$en"; fi ;;
    *) echo "lab systemctl: unsupported verb '$verb'" >&2; return 1 ;;
  esac
}

# show_props UNIT LOAD ACTIVE SUB PID UNITFILE: systemctl show's KEY=VALUE lines
show_props() {
  local all="Id=$1.service LoadState=$2 ActiveState=$3 SubState=$4 MainPID=$5 UnitFileState=$6"
  local want=() kv k
  for p in "${props[@]+"${props[@]}"}"; do IFS=, read -ra ps <<<"$p"; want+=("${ps[@]}"); done
  for kv in $all; do
    k=${kv%%=*}
    if [ ${#want[@]} -gt 0 ] && [[ " ${want[*]} " != *" $k "* ]]; then continue; fi
    if [ "$value" = 1 ]; then echo "${kv#*=}"; else echo "$kv"; fi
  done
}

case $verb in
  daemon-reload|reset-failed) exit 0 ;;
  "") echo "lab systemctl: no verb given" >&2; exit 1 ;;
esac
if [ ${#units[@]} -eq 0 ]; then echo "Too few arguments." >&2; exit 1; fi
rc=0
for u in "${units[@]}"; do
  one "${u%.service}" || rc=$?
done
exit $rc
