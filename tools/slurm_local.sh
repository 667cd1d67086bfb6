#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine (munge, slurmctld, slurmd on localhost),
# for the sweep's Slurm array test (`.ci/run`) or for trying `lethe sweep slurm` by hand.
# Needs root and Debian's `slurm-wlm` and `munge` (installed here when missing).
#   tools/slurm_local.sh          start (idempotent: a running cluster is left as it is)
#   tools/slurm_local.sh stop     stop the daemons
set -euo pipefail

conf_dir=/etc/slurm
state=/var/spool/slurm-lethe

stop() {
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
}

if [ "${1:-}" = stop ]; then
    stop
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "tools/slurm_local.sh: needs root (it writes /etc/slurm and starts daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "== installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

if sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "slurm: already running ($(sinfo -h -o '%P %D %T' | head -n1))"
    exit 0
fi

# munge: the key the daemons authenticate with.
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if ! pgrep -x munged >/dev/null; then
    if id munge >/dev/null 2>&1; then
        su -s /bin/sh munge -c munged || munged --force
    else
        munged --force
    fi
fi

cpus=$(nproc)
memory_mb=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
mkdir -p "$conf_dir" "$state/ctld" "$state/d" /var/log/slurm
# No cgroups (containers rarely allow them): processes are tracked through /proc, and
# nothing is confined; enough for one node that runs Lethe's trials.
cat > "$conf_dir/slurm.conf" <<CONF
ClusterName=lethe-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

stop
slurmctld
slurmd
for _ in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then
        echo "slurm: up ($(sinfo -h -o '%P %D %T %c CPUs' | head -n1))"
        exit 0
    fi
    sleep 1
done
echo "slurm did not come up in 60 s; its logs:" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
