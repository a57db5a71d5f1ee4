#!/usr/bin/env bash
# Start munged, slurmctld and slurmd (as configured by .ci/install-slurm.sh) and wait until the node
# is idle. Idempotent: daemons already running are left alone; a node left drained or down by an
# earlier run is resumed.
set -euo pipefail

host=$(hostname -s)
timeout_s=${SLURM_START_TIMEOUT_S:-90}

running() { pgrep -x "$1" >/dev/null 2>&1; }

if ! running munged; then
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || { echo "munged does not answer" >&2; exit 1; }

install -d -o slurm -g slurm -m 0755 /run/slurm
# Daemons started before install-slurm.sh last rewrote the configuration are restarted to read it.
for daemon in slurmctld slurmd; do
    pidfile=/run/slurm/${daemon}.pid
    if running "$daemon" && [ -f "$pidfile" ] && [ /etc/slurm/slurm.conf -nt "$pidfile" -o /etc/slurm/gres.conf -nt "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        for _ in $(seq 100); do running "$daemon" || break; sleep 0.1; done
    fi
done
running slurmctld || /usr/sbin/slurmctld
running slurmd || /usr/sbin/slurmd

deadline=$((SECONDS + timeout_s))
state=""
while [ "$SECONDS" -lt "$deadline" ]; do
    state=$(sinfo --noheader --nodes="$host" --format=%T 2>/dev/null | head -n1 || true)
    case "$state" in
        idle | mixed | allocated) echo "start-slurm: node $host is $state"; sinfo; exit 0 ;;
        drain* | down* | fail*)
            scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "start-slurm: node $host not idle after ${timeout_s}s (state: '${state}')" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
