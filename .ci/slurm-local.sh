#!/usr/bin/env bash
# A single-node SLURM cluster with accounting, on localhost, from Debian's packages: enough for
# Snakemake's SLURM executor plugin to submit, track and finish real jobs (tests/test_slurm.py,
# .ci/run). Needs root. Nothing listens beyond localhost.
#
#   .ci/slurm-local.sh up      install what is missing, write the configs, start munged, MariaDB,
#                              slurmdbd, slurmctld and slurmd; wait until the node is idle
#   .ci/slurm-local.sh down    stop what `up` started (the daemons it recorded)
#   .ci/slurm-local.sh status  what runs, and sinfo
#
# Idempotent: `up` on a running cluster only checks it. The cluster is called `lpe-local`, has one
# partition `cpu` (this machine's CPUs) and one account `lpe`.
# Why accounting: the executor plugin learns that a job ended through `sacct`; without slurmdbd
# it reports "accounting disabled" and Snakemake waits forever after the first job.
set -euo pipefail

STATE=/var/lib/lpe-slurm            # configs' state, spool, logs, pids of what we started
CLUSTER=lpe-local
ACCOUNT=lpe
NODE=$(hostname -s)
CPUS=$(nproc)
# Leave memory for the daemons and the submitting Snakemake.
MEM_MB=$(($(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 3 / 4))

log() { echo "[slurm-local] $*"; }

need_root() {
  [ "$(id -u)" -eq 0 ] || { echo "slurm-local.sh: run as root (it installs and starts daemons)" >&2; exit 2; }
}

install_packages() {
  local missing=()
  for pkg in slurm-wlm slurmdbd munge mariadb-server; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

write_configs() {
  mkdir -p "$STATE"/{spool/ctld,spool/d,log,run} /etc/slurm
  cat >/etc/slurm/slurm.conf <<EOF
# Written by .ci/slurm-local.sh: one node, one CPU partition, accounting through slurmdbd.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=10
MinJobAge=300
SlurmctldTimeout=60
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  cat >/etc/slurm/slurmdbd.conf <<EOF
# Written by .ci/slurm-local.sh: accounting in the local MariaDB, over its socket.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=lpe-local-only
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
}

running() { pgrep -x "$1" >/dev/null 2>&1; }

start() {  # start NAME COMMAND...: run a daemon unless it runs; remember that we started it
  local name=$1
  shift
  if running "$name"; then
    log "$name already running"
    return
  fi
  log "starting $name"
  "$@"
  echo "$name" >>"$STATE/run/started"
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...
  local what=$1 seconds=$2
  shift 2
  for _ in $(seq "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "slurm-local.sh: $what did not come up in ${seconds} s; logs in $STATE/log" >&2
  tail -n 20 "$STATE"/log/*.log 2>/dev/null >&2 || true
  exit 1
}

up() {
  need_root
  install_packages
  write_configs
  touch "$STATE/run/started"
  mkdir -p /run/munge && chown munge:munge /run/munge
  start munged runuser -u munge -- /usr/sbin/munged --force
  wait_for munge 20 munge -n
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  start mariadbd sh -c "mysqld_safe --bind-address=127.0.0.1 >'$STATE/log/mariadb.log' 2>&1 &"
  wait_for MariaDB 60 mysqladmin ping
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'lpe-local-only';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  start slurmdbd /usr/sbin/slurmdbd
  wait_for slurmdbd 60 sacctmgr -n list cluster
  sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
  sacctmgr -i -Q add account "$ACCOUNT" cluster="$CLUSTER" description=lpe organization=lpe \
    >/dev/null 2>&1 || true
  sacctmgr -i -Q add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null 2>&1 || true
  start slurmctld /usr/sbin/slurmctld
  wait_for slurmctld 60 scontrol ping
  start slurmd /usr/sbin/slurmd
  wait_for "node $NODE" 60 sh -c "sinfo -h -N -o %t | grep -qE '^(idle|mix|alloc)'"
  log "up: cluster $CLUSTER, partition cpu ($CPUS CPUs, $MEM_MB MB), account $ACCOUNT"
}

stop() {  # stop NAME: end a daemon that `up` started, and wait until it has gone
  local name=$1
  grep -qx "$name" "$STATE/run/started" || return 0
  if [ "$name" = mariadbd ]; then mysqladmin shutdown >/dev/null 2>&1 || true; fi
  pkill -x "$name" 2>/dev/null || true
  for _ in $(seq 30); do running "$name" || { log "stopped $name"; return 0; }; sleep 1; done
  pkill -9 -x "$name" 2>/dev/null || true
  log "killed $name (it did not stop in 30 s)"
}

down() {
  need_root
  [ -f "$STATE/run/started" ] || { log "nothing was started here"; return 0; }
  for name in slurmd slurmctld slurmdbd mariadbd munged; do stop "$name"; done
  rm -f "$STATE/run/started"
}

status() {
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    if running "$name"; then echo "$name: running"; else echo "$name: stopped"; fi
  done
  sinfo 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
