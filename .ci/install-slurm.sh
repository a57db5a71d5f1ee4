#!/usr/bin/env bash
# Install a one-node SLURM cluster for tests/workflow/test_slurm.py: Debian's slurm-wlm and munge,
# with slurm.conf, gres.conf and cgroup.conf for this machine. Idempotent: re-running rewrites the
# configuration (the node may have changed) and installs nothing new.
#
# The cluster: controller and compute node are this host (`hostname -s`), one partition `main`,
# every CPU and ~90 % of the memory, one GPU gres (device file /dev/null: jobs that ask for
# `--gpus=1` are scheduled as on a GPU node; the GPU itself is not real). No accounting database:
# job status comes from squeue (MinJobAge keeps finished jobs visible for 10 minutes).
# No cgroups (containers rarely allow them): processes are tracked through /proc.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-slurm.sh must run as root" >&2
    exit 1
fi

packages=(slurm-wlm slurm-client munge)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

host=$(hostname -s)
cpus=$(nproc)
# slurmd -C reports what slurmd itself detects; a node advertising more memory than that is drained.
real_mb=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
real_mb=${real_mb:-$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)}
mem_mb=$((real_mb * 9 / 10))

# Daemons need a munge key, spool and log directories owned by their users.
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null ||
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld /var/log/slurm /run/slurm
install -d -o root -g root -m 0755 /var/spool/slurmd

cat >/etc/slurm/slurm.conf <<EOF
# Written by .ci/install-slurm.sh: a one-node test cluster on ${host}.
ClusterName=xrdid
SlurmctldHost=${host}
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# Finished jobs stay visible to squeue this long: the status checks of the Snakemake plugin need it.
MinJobAge=600
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF

cat >/etc/slurm/gres.conf <<EOF
# One fake GPU: /dev/null stands in for the device file, so scheduling of --gpus=1 is exercised
# (slurmd sets CUDA_VISIBLE_DEVICES) while the job itself still runs on the CPU.
NodeName=${host} Name=gpu File=/dev/null
EOF

cat >/etc/slurm/cgroup.conf <<EOF
# No cgroup plugin is configured in slurm.conf (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none);
# this file exists so that tools reading it find nothing constrained.
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

chmod 644 /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/cgroup.conf
echo "install-slurm: node ${host}, ${cpus} CPUs, ${mem_mb} MB, gres gpu:1, partition main"
