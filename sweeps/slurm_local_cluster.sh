#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian's slurm-wlm, munge; MariaDB + slurmdbd for accounting),
# for trying the SLURM sweeps and for CI's `slurm` tests. Needs root and no systemd; each daemon runs detached and
# is stopped by its PID.
#
#   bash sweeps/slurm_local_cluster.sh start [--no-accounting]   # idempotent; with accounting by default (sacct)
#   bash sweeps/slurm_local_cluster.sh stop                      # every daemon it started, by PID
#   bash sweeps/slurm_local_cluster.sh status
#
# `start` installs the packages if they are missing, writes /etc/slurm/slurm.conf for this host (its name, CPUs and
# memory from `slurmd -C`), and starts munged, then (with accounting) mariadbd and slurmdbd, then slurmctld and
# slurmd. Run again with the other accounting setting, it restarts slurmctld with the new configuration. The node
# has no GPUs (no GRES): use `hydra/launcher=slurm_cpu`. Partition: `debug`.
set -euo pipefail

RUN=/var/run/synpo-slurm
LOGS=/var/log/slurm
CONF=/etc/slurm/slurm.conf
mkdir -p "$RUN" "$LOGS"

say() { echo "[slurm_local_cluster] $*"; }

alive() {  # alive NAME: its PID file names a running process
  local f="$RUN/$1.pid"
  [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

launch() {  # launch NAME CMD...: start CMD detached in its own session, remember its PID
  local name=$1; shift
  setsid nohup "$@" > "$LOGS/$name.out" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...: until CMD succeeds
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 4))); do
    if "$@" > /dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  say "ERROR: $what did not come up within ${limit}s; see $LOGS/"
  exit 1
}

install_packages() {
  local pkgs=(slurm-wlm munge slurm-client)
  [[ "$1" == yes ]] && pkgs+=(slurmdbd mariadb-server)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$LOGS/apt.out"
  fi
}

write_conf() {  # write_conf yes|no: slurm.conf for this host; prints "changed" when it differs from the current one
  local host node accounting
  host=$(hostname)
  node=$(slurmd -C | head -1 | sed -E 's/ (Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+//g')
  # Leave memory for the daemons themselves: schedule 80% of what slurmd sees.
  node=$(echo "$node" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^RealMemory=/) {split($i, a, "="); $i = "RealMemory=" int(a[2] * 0.8)}; print}')
  if [[ "$1" == yes ]]; then
    accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
  else
    accounting="AccountingStorageType=accounting_storage/none"
  fi
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd
  cat > "$CONF.new" <<EOF
ClusterName=synpotest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.own.pid
SlurmdPidFile=$RUN/slurmd.own.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobRequeue=1
$accounting
JobCompType=jobcomp/none
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if cmp -s "$CONF.new" "$CONF"; then rm "$CONF.new"; else mv "$CONF.new" "$CONF"; echo changed; fi
}

start_accounting() {
  if ! alive mariadbd; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    launch mariadbd runuser -u mysql -- /usr/sbin/mariadbd --datadir=/var/lib/mysql \
      --socket=/run/mysqld/mysqld.sock --bind-address=127.0.0.1 --innodb-buffer-pool-size=64M
    wait_for 30 "mariadbd" mariadb -e "SELECT 1"
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  fi
  if ! alive slurmdbd; then
    cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=$RUN/slurmdbd.own.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurmpw
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
    launch slurmdbd /usr/sbin/slurmdbd -D
    wait_for 30 "slurmdbd" sacctmgr -n list cluster
    sacctmgr -i add cluster synpotest > /dev/null 2>&1 || true
  fi
}

stop_one() {
  local name=$1
  if alive "$name"; then
    local pid; pid=$(cat "$RUN/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    say "stopped $name (pid $pid)"
  fi
  rm -f "$RUN/$name.pid"
}

start() {
  local accounting=yes
  [[ "${1:-}" == --no-accounting ]] && accounting=no
  install_packages "$accounting"
  local changed; changed=$(write_conf "$accounting")
  if ! alive munged; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    launch munged runuser -u munge -- /usr/sbin/munged --foreground
    wait_for 20 "munged" bash -c "munge -n | unmunge"
  fi
  [[ "$accounting" == yes ]] && start_accounting
  if [[ -n "$changed" ]]; then stop_one slurmd; stop_one slurmctld; fi
  if ! alive slurmctld; then
    launch slurmctld /usr/sbin/slurmctld -D -i
    wait_for 30 "slurmctld" scontrol ping
  fi
  if ! alive slurmd; then
    launch slurmd /usr/sbin/slurmd -D
    wait_for 30 "an idle node" bash -c "sinfo -h -o %T | grep -qE 'idle|mixed|alloc'"
  fi
  say "up (accounting: $accounting): $(sinfo -h -o '%P %a %D %T %N')"
}

stop() {
  for name in slurmd slurmctld slurmdbd mariadbd munged; do stop_one "$name"; done
}

status() {
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    if alive "$name"; then say "$name running (pid $(cat "$RUN/$name.pid"))"; else say "$name not running"; fi
  done
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start [--no-accounting] | stop | status" >&2; exit 2 ;;
esac
