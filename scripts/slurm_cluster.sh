#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for checking the workflow's Slurm profile
# (tests/test_slurm.py; `make slurm-check`). Everything it writes lives in one state folder; the
# system's own Slurm and munge set-up (/etc/slurm, /etc/munge, /run/munge) is never touched, and
# its daemons listen on their own ports, so it can run beside a real installation.
#
#   scripts/slurm_cluster.sh install           apt-get slurm-wlm munge (as root) if missing, and
#                                              pip snakemake-executor-plugin-slurm into $PYTHON
#   scripts/slurm_cluster.sh start DIR [PART]  munge key, slurm.conf, munged, slurmctld, slurmd;
#                                              returns once sinfo shows the node idle. Then
#                                              `export PATH=DIR/bin:$PATH` (sbatch, srun, sacct, ...
#                                              of this cluster; see "Client commands" below)
#   scripts/slurm_cluster.sh stop DIR          cancel jobs, stop the daemons, wait until they are
#                                              gone (SIGKILL after a grace period)
#   scripts/slurm_cluster.sh status DIR        the daemons' pids and sinfo
#   scripts/slurm_cluster.sh pids DIR          pids of every process of the cluster (none: stopped)
#
# The cluster: one node (this machine: its CPUs, sockets, cores and 90 % of its memory), one
# partition PART (default: the Slurm profile's slurm_partition), daemons run as root. No cgroups
# (proctrack/linuxproc, task/none, jobacct_gather/linux), so it works in containers. No slurmdbd:
# AccountingStorageType=accounting_storage/none, and every finished job is written by
# jobcomp/filetxt to DIR/jobcomp.txt (one line per job: JobId, UserId, JobName, JobState, ...).
# Without slurmdbd, plain `sacct` only says "Slurm accounting storage is disabled"; `sacct -c`
# (--completion) lists the jobs from that file. squeue --states=all shows finished jobs for an
# hour (MinJobAge=3600), so the executor plugin queries job states with squeue.
#
# Client commands: the config is DIR/slurm.conf, not /etc/slurm/slurm.conf, and the commands find
# it through SLURM_CONF. The Slurm executor plugin's job step removes every SLURM_* variable but
# a few job ids from the environment of the `srun` it runs inside each job, SLURM_CONF included;
# on a real cluster srun then reads /etc/slurm/slurm.conf (or slurmd's configless cache). Here
# DIR/bin holds wrappers (srun, sbatch, squeue, sacct, sinfo, scontrol, scancel) that set
# SLURM_CONF and exec the real command, so DIR/bin first on PATH is all a caller needs.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"
CTLD_PORT="${SLURM_CHECK_CTLD_PORT:-16817}"
SLURMD_PORT="${SLURM_CHECK_SLURMD_PORT:-16818}"

die() { echo "slurm_cluster: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# Debian puts the daemons in /usr/sbin, which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

cmd_install() {
  local missing=()
  for tool in munged slurmctld slurmd sbatch sacct sinfo; do have "$tool" || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: run as root to apt-get install slurm-wlm munge"
    have apt-get || die "missing ${missing[*]} and no apt-get to install slurm-wlm munge"
    echo "slurm_cluster: apt-get install slurm-wlm munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; } \
      || die "apt-get install slurm-wlm munge failed"
  fi
  if ! "$PYTHON" -c "import snakemake_executor_plugin_slurm" >/dev/null 2>&1; then
    echo "slurm_cluster: pip install snakemake-executor-plugin-slurm into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
    "$PYTHON" -m pip install -q snakemake-executor-plugin-slurm \
      || die "pip install snakemake-executor-plugin-slurm failed"
  fi
}

profile_partition() {
  "$PYTHON" - "$REPO/workflow/profiles/slurm/config.yaml" <<'EOF'
import sys, yaml
print(yaml.safe_load(open(sys.argv[1]))["default-resources"]["slurm_partition"])
EOF
}

write_conf() {  # DIR PARTITION NODE
  local dir="$1" part="$2" node="$3" hw mem
  # slurmd -C prints this machine as a NodeName line: CPUs, Boards, SocketsPerBoard,
  # CoresPerSocket, ThreadsPerCore, RealMemory. A node that claims more memory than it has is
  # drained, so it is given 90 % of it.
  hw="$(slurmd -C | head -1)"
  mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
  [ -n "$mem" ] || die "slurmd -C gave no RealMemory: $hw"
  hw="$(sed -e 's/^NodeName=[^ ]* //' -e "s/RealMemory=[0-9]*/RealMemory=$((mem * 9 / 10))/" <<<"$hw")"
  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm_cluster.sh: a single-node test cluster, state in $dir
ClusterName=landscape
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: these work inside containers
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# no slurmdbd: every finished job goes to a text file
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
# slurmctld keeps finished jobs for an hour, so squeue/sacct/scontrol still show them
MinJobAge=3600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=$part Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

cmd_start() {
  local dir="${1:?usage: start DIR [PARTITION]}" part="${2:-}" node
  [ "$(id -u)" = 0 ] || die "the test cluster's daemons run as root"
  for tool in munged slurmctld slurmd sinfo; do have "$tool" || die "$tool missing: run '$0 install'"; done
  [ -n "$part" ] || part="$(profile_partition)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if pid_alive "$dir/slurmctld.pid" || pid_alive "$dir/munged.pid"; then
    die "a cluster is already running in $dir (stop it first)"
  fi
  # a start that fails half-way leaves nothing running
  trap "cmd_stop '$dir' >&2 || true" EXIT
  node="$(hostname -s)"
  mkdir -p "$dir/munge" "$dir/ctld" "$dir/spool"
  chmod 700 "$dir/munge"
  # A fresh key for this cluster only (munge.key of the system, if any, is left alone).
  [ -s "$dir/munge/munge.key" ] || {
    (umask 077; dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none)
  }
  write_conf "$dir" "$part" "$node"
  export SLURM_CONF="$dir/slurm.conf"
  mkdir -p "$dir/bin"
  local tool real
  for tool in srun sbatch squeue sacct sinfo scontrol scancel; do
    real="$(command -v "$tool")" || die "$tool missing: run '$0 install'"
    printf '#!/bin/sh\nexport SLURM_CONF=%q\nexec %q "$@"\n' "$SLURM_CONF" "$real" >"$dir/bin/$tool"
    chmod 755 "$dir/bin/$tool"
  done

  # --force: the state folder may sit under a world-writable /tmp, which munged refuses otherwise
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed" \
    || die "munged did not start: $(tail -n 5 "$dir/munged.log" 2>/dev/null)"
  slurmctld -f "$SLURM_CONF" || die "slurmctld did not start: $(tail -n 5 "$dir/slurmctld.log" 2>/dev/null)"
  slurmd -f "$SLURM_CONF" -N "$node" || die "slurmd did not start: $(tail -n 5 "$dir/slurmd.log" 2>/dev/null)"

  local state="" i
  for i in $(seq 1 120); do
    state="$(sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -1 || true)"
    [ "$state" = idle ] && break
    sleep 1
  done
  if [ "$state" != idle ]; then
    echo "slurm_cluster: node $node is '${state:-not answering}' after 120 s" >&2
    tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    exit 1
  fi
  trap - EXIT
  echo "slurm_cluster: node $node idle in partition $part; export PATH=$dir/bin:\$PATH"
}

stop_pidfile() {  # PIDFILE NAME: TERM, wait up to 20 s, then KILL
  local pidfile="$1" name="$2" pid i
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm_cluster: $name ($pid) ignored SIGTERM; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$pidfile"
}

# The processes of the cluster in DIR: every daemon and job process was started with
# SLURM_CONF=DIR/slurm.conf in its environment (the daemons from cmd_start, the jobs through the
# wrappers), so /proc/PID/environ finds them, job steps included (slurmstepd is re-parented to
# init, not a child of slurmd). Jobs' processes also carry SLURM_JOB_ID.
cluster_pids() {  # DIR
  local f pid comm
  # one grep over every environment (NUL-separated entries: -z; the whole entry: -x)
  for f in $(grep -lzxF "SLURM_CONF=$1/slurm.conf" /proc/[0-9]*/environ 2>/dev/null); do
    pid="${f#/proc/}"; pid="${pid%/environ}"
    [ "$pid" != $$ ] || continue
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || continue
    case "$comm" in
      munged|slurmctld|slurmscriptd|slurmd|slurmstepd) echo "$pid" ;;
      *) grep -qzx 'SLURM_JOB_ID=.*' "/proc/$pid/environ" 2>/dev/null && echo "$pid" ;;
    esac
  done
  return 0
}

cmd_stop() {
  local dir="${1:?usage: stop DIR}" i left
  [ -d "$dir" ] || return 0
  dir="$(cd "$dir" && pwd)"
  export SLURM_CONF="$dir/slurm.conf"
  if pid_alive "$dir/slurmctld.pid"; then
    # cancel what is queued or running and give the job steps a moment to end their processes
    local jobs
    jobs="$(squeue -h -t PENDING,RUNNING,SUSPENDED -o %i 2>/dev/null || true)"
    [ -z "$jobs" ] || scancel --quiet $jobs 2>/dev/null || true
    for i in $(seq 1 30); do
      [ -z "$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null)" ] && break
      sleep 1
    done
  fi
  # slurmd first (it ends its job steps), then the controller, then munged
  stop_pidfile "$dir/slurmd.pid" slurmd
  stop_pidfile "$dir/slurmctld.pid" slurmctld
  stop_pidfile "$dir/munged.pid" munged
  # whatever is left of the cluster (a job step, a job's process, a daemon whose pid file was
  # lost): TERM, then KILL; none may outlive the cluster
  left="$(cluster_pids "$dir")"
  if [ -n "$left" ]; then
    echo "slurm_cluster: ending leftover processes:" $left >&2
    kill -TERM $left 2>/dev/null || true
    for i in $(seq 1 20); do left="$(cluster_pids "$dir")"; [ -n "$left" ] || break; sleep 0.5; done
    [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
    sleep 0.5
  fi
  left="$(cluster_pids "$dir")"
  [ -z "$left" ] || die "processes of the cluster still running:" $left
  echo "slurm_cluster: stopped ($dir)"
}

cmd_status() {
  local dir="${1:?usage: status DIR}" f
  dir="$(cd "$dir" && pwd)"
  export SLURM_CONF="$dir/slurm.conf"
  for f in munged slurmctld slurmd; do
    if pid_alive "$dir/$f.pid"; then echo "$f: running ($(cat "$dir/$f.pid"))"; else echo "$f: stopped"; fi
  done
  echo "processes of the cluster:" $(cluster_pids "$dir")
  if pid_alive "$dir/slurmctld.pid"; then sinfo -N -l; fi
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  pids) shift; cluster_pids "$(cd "${1:?usage: pids DIR}" && pwd)" ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
