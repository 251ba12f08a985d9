#!/usr/bin/env bash
# A local cnm cluster for development and failover drills (SPEC §1.2).
#
#   scripts/cluster.sh up [N]          start N nodes (default 3), wait for a leader and all N
#                                      members, create a demo database (and, with redis
#                                      shards, wait until its endpoint serves), print endpoints
#   scripts/cluster.sh down [--purge]  stop every node and its shard processes (which
#                                      outlive cnmd); --purge also deletes $CNM_DIR
#   scripts/cluster.sh purge           same as down --purge
#   scripts/cluster.sh status          processes, members, leader and node actions
#   scripts/cluster.sh kill I          SIGKILL node I
#   scripts/cluster.sh start I         restart node I from its data dir; a node the cluster
#                                      removed gets its data dir moved aside and joins afresh
#   scripts/cluster.sh leader          print the leader's uid
#
# Node i has uid i, API https://127.0.0.i:9443, raft 127.0.0.i:9444, data $CNM_DIR/node-i.
#
# Environment:
#   CNM_DIR             cluster directory (default ./.cluster)
#   CNM_BIN             directory holding cnmd (default ./bin)
#   CNM_ADMIN_PASSWORD  admin password (default: $CNM_DIR/admin-password, which up creates);
#                       nodes get it in their environment, never on their command line
#   CNM_NODE_ARGS       extra cnmd flags for every node, split on whitespace
#   CNM_UP_TIMEOUT      seconds that up and start wait for the cluster (default 30)
set -euo pipefail
shopt -s nullglob

readonly ADMIN_USER=admin@cnm.local
readonly API_PORT=9443
readonly RAFT_PORT=9444
readonly DOWN_TIMEOUT=15
UP_TIMEOUT=${CNM_UP_TIMEOUT:-30}
CNM_DIR=${CNM_DIR:-./.cluster}
CNM_BIN=${CNM_BIN:-./bin}
PROG=${0##*/}
PW=""           # admin password, see load_password
API_STATUS=""   # set by api: HTTP status, 000 when there was no answer
API_BODY=""     # set by api: response body
LEADER=0        # set by members_ready
PROBLEM=""      # set by members_ready
VIA=0           # set by live_member: a node that answers as a member of the cluster

usage() {
  cat >&2 <<EOF
usage: $PROG up [N] | down [--purge] | purge | status | kill I | start I | leader
  up [N]          start N nodes (default 3) and wait until they form a cluster
  down [--purge]  stop all nodes (keep data; --purge deletes \$CNM_DIR)
  status          processes, members, leader and node actions
  kill I          SIGKILL node I
  start I         restart node I from its data dir (rejoin it afresh if it was removed)
  leader          print the uid of the current leader
EOF
  exit 2
}

die() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  exit 1
}

require() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "$c is required (make deps installs it)"
  done
}

# node_index ARG: validate a node number and print it without leading zeros.
node_index() {
  if [[ ! ${1-} =~ ^[0-9]{1,3}$ ]] || (( 10#$1 < 1 || 10#$1 > 254 )); then
    die "node number must be an integer 1..254, got '${1-}'"
  fi
  printf '%d\n' "$((10#$1))"
}

node_dir() { printf '%s/node-%d' "$CNM_DIR" "$1"; }
pid_file() { printf '%s/node-%d.pid' "$CNM_DIR" "$1"; }
log_file() { printf '%s/node-%d.log' "$CNM_DIR" "$1"; }
api_addr() { printf '127.0.0.%d:%d' "$1" "$API_PORT"; }
api_url() { printf 'https://127.0.0.%d:%d' "$1" "$API_PORT"; }

# resolve_dir: make CNM_DIR absolute (without creating it).
resolve_dir() {
  if [[ -d $CNM_DIR ]]; then
    CNM_DIR=$(cd "$CNM_DIR" && pwd -P)
  elif [[ $CNM_DIR != /* ]]; then
    CNM_DIR=$PWD/$CNM_DIR
  fi
}

# list_nodes: the numbers of the nodes that have a data dir, log or pid file, ascending.
list_nodes() {
  local f n
  for f in "$CNM_DIR"/node-*; do
    n=${f##*/node-}
    n=${n%.*}
    if [[ $n =~ ^[0-9]+$ ]]; then printf '%d\n' "$((10#$n))"; fi
  done | sort -un
}

# node_pid I: print the pid of node I's cnmd; fails when it is not running. A zombie counts
# as gone, and a pid that now belongs to another program is not ours.
node_pid() {
  local f pid stat cmdline
  f=$(pid_file "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/stat ]]; then
    stat=$(<"/proc/$pid/stat") || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline") || return 1
    [[ $cmdline == *"--data-dir $(node_dir "$1") "* ]] || return 1
  fi
  printf '%s\n' "$pid"
}

# deadline_in SECONDS: print the time SECONDS from now, in milliseconds since the epoch.
deadline_in() {
  local t=${EPOCHREALTIME/[.,]/}
  printf '%d\n' "$(( ${t%???} + $1 * 1000 ))"
}

# before DEADLINE: true while the time is before DEADLINE (from deadline_in).
before() {
  local t=${EPOCHREALTIME/[.,]/}
  (( ${t%???} < $1 ))
}

# wait_gone PID DEADLINE: poll until PID has exited (or is a zombie); fails at DEADLINE.
wait_gone() {
  local pid=$1 deadline=$2 stat
  while kill -0 "$pid" 2>/dev/null; do
    if [[ -r /proc/$pid/stat ]]; then
      stat=$(<"/proc/$pid/stat") || return 0
      stat=${stat##*) }
      [[ ${stat%% *} != Z ]] || return 0
    fi
    before "$deadline" || return 1
    sleep 0.1
  done
}

# load_password: CNM_ADMIN_PASSWORD, else $CNM_DIR/admin-password, else empty.
load_password() {
  PW=${CNM_ADMIN_PASSWORD:-}
  if [[ -z $PW && -f $CNM_DIR/admin-password ]]; then PW=$(<"$CNM_DIR/admin-password"); fi
  return 0
}

# api METHOD URL [BODY]: call the REST API as the admin; sets API_STATUS and API_BODY.
# API_TIMEOUT (seconds, default 5) bounds the whole request.
api() {
  local method=$1 url=$2 body=${3-} resp
  local args=(-sk --connect-timeout 1 --max-time "${API_TIMEOUT:-5}" -u "$ADMIN_USER:$PW"
    -X "$method" -w '\n%{http_code}')
  if [[ -n $body ]]; then args+=(-H 'Content-Type: application/json' --data-binary "$body"); fi
  resp=$(curl "${args[@]}" "$url") || true
  API_STATUS=${resp##*$'\n'}
  API_BODY=${resp%$'\n'*}
}

# ping_status I: the HTTP status of node I's /v1/ping (000 when nothing answers).
ping_status() {
  curl -sk -o /dev/null -w '%{http_code}' --connect-timeout 1 --max-time 2 \
    "$(api_url "$1")/v1/ping" || true
}

# fail_node I MESSAGE: report a node that did not come up, with the end of its log.
fail_node() {
  local i=$1 log
  shift
  log=$(log_file "$i")
  printf '%s: %s\n' "$PROG" "$*" >&2
  if [[ -f $log ]]; then
    printf -- '--- last 30 lines of %s ---\n' "$log" >&2
    tail -n 30 "$log" >&2
    printf -- '---\n' >&2
  fi
  printf '%s: nodes that did start are left running; stop them with: %s down\n' "$PROG" "$0" >&2
  exit 1
}

# join_args VIA: the flags that join through node VIA. cnmd sends the admin credentials
# only to a member it can check: VIA's certificate must chain to the cluster CA in VIA's
# data dir.
join_args() {
  local ca
  ca="$(node_dir "$1")/tls/ca.crt"
  [[ -f $ca ]] || die "no cluster CA at $ca to check node $1 against before joining through it"
  args+=(--join "$(api_url "$1")" --join-ca-file "$ca")
}

# start_node I [MODE]: start node I in the background unless it already runs. MODE is
# bootstrap (create a new cluster), join (through the member VIA) or resume (default; the
# data dir holds the node's state, and VIA, when set, is named for a node caught mid-join).
start_node() {
  local i=$1 mode=${2:-resume} pid bin log extra=()
  if pid=$(node_pid "$i"); then
    printf 'node %d already running (pid %s)\n' "$i" "$pid"
    return 0
  fi
  if [[ $(ping_status "$i") != 000 ]]; then
    die "$(api_addr "$i") is already in use by another process (a cluster with another CNM_DIR?)"
  fi
  bin=$CNM_BIN/cnmd
  [[ $bin == /* ]] || bin=$PWD/$bin
  [[ -x $bin ]] || die "no cnmd binary at $bin (run make build, or set CNM_BIN)"

  # --bootstrap/--join are ignored by cnmd when the data dir already holds cluster state.
  local args=(--uid "$i" --api-addr "$(api_addr "$i")" --raft-addr "127.0.0.$i:$RAFT_PORT"
    --data-dir "$(node_dir "$i")")
  case $mode in
    bootstrap) args+=(--bootstrap) ;;
    join) join_args "$VIA" ;;
    resume) if (( VIA > 0 && VIA != i )); then join_args "$VIA"; fi ;;
    *) die "start_node: unknown mode $mode" ;;
  esac
  read -r -a extra <<<"${CNM_NODE_ARGS:-}"
  args+=("${extra[@]}")

  log=$(log_file "$i")
  printf 'starting node %d (%s, log %s)\n' "$i" "$(api_url "$i")" "$log"
  printf '=== %s: starting node %d (%s)\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$i" "$mode" >>"$log"
  # The credentials travel in the environment (CNM_ADMIN_USER, CNM_ADMIN_PASSWORD): a
  # command line is readable by every local user, a process's environment only by its owner.
  local env=(CNM_ADMIN_USER="$ADMIN_USER")
  if [[ -n $PW ]]; then env+=(CNM_ADMIN_PASSWORD="$PW"); fi
  # setsid: the node outlives the shell (and make) that started it.
  if command -v setsid >/dev/null 2>&1; then
    env "${env[@]}" setsid nohup "$bin" "${args[@]}" >>"$log" 2>&1 </dev/null &
  else
    env "${env[@]}" nohup "$bin" "${args[@]}" >>"$log" 2>&1 </dev/null &
  fi
  pid=$!
  printf '%s\n' "$pid" >"$(pid_file "$i")"
  wait_exec "$i" "$pid" "$bin"
}

# wait_exec I PID BIN: wait until PID has become BIN. The started process passes through
# env, setsid and nohup first, and while the kernel swaps one program for the next its
# command line reads empty: node_pid would take that moment for an exited node.
wait_exec() {
  local i=$1 pid=$2 bin=$3 deadline argv0
  deadline=$(deadline_in 10)
  while before "$deadline"; do
    kill -0 "$pid" 2>/dev/null || return 0
    [[ -r /proc/$pid/cmdline ]] || return 0
    argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n 1) || true
    [[ $argv0 != "$bin" ]] || return 0
    sleep 0.01
  done
  fail_node "$i" "node $i did not start $bin within 10 s"
}

# live_member [EXCEPT]: find a running node other than EXCEPT whose /v1/nodes answers 200
# and lists the node itself; sets VIA to it. Fails when there is none.
live_member() {
  local except=${1:-0} i
  VIA=0
  for i in $(list_nodes); do
    (( i != except )) || continue
    node_pid "$i" >/dev/null || continue
    API_TIMEOUT=3 api GET "$(api_url "$i")/v1/nodes"
    [[ $API_STATUS == 200 ]] || continue
    if jq -e --argjson uid "$i" 'any(.[]; (.uid | tostring) == ($uid | tostring))' \
      <<<"$API_BODY" >/dev/null 2>&1; then
      VIA=$i
      return 0
    fi
  done
  return 1
}

# was_removed I: true when node I has a data dir of a former member and a live member (VIA,
# from live_member I) answers /v1/nodes without it: the cluster removed node I.
was_removed() {
  local i=$1
  [[ -f $(node_dir "$i")/member ]] || return 1
  live_member "$i" || return 1
  ! jq -e --argjson uid "$i" 'any(.[]; (.uid | tostring) == ($uid | tostring))' \
    <<<"$API_BODY" >/dev/null 2>&1
}

# set_aside I: move the data dir of removed node I out of the way (kept, never deleted) and
# print where it went.
set_aside() {
  local i=$1 to pid
  if pid=$(node_pid "$i"); then
    # A removed node exits on its own; one that has not noticed yet is stopped.
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" "$(deadline_in "$DOWN_TIMEOUT")" || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f -- "$(pid_file "$i")"
  to=$(node_dir "$i").removed-$(date -u +%Y%m%dT%H%M%SZ)
  [[ ! -e $to ]] || to=$to-$$
  mv -- "$(node_dir "$i")" "$to"
  printf '%s\n' "$to"
}

# rejoin I DEADLINE: node I was removed from the cluster: set its old data dir aside and
# join it afresh through the live member VIA, then wait until it votes.
rejoin() {
  local i=$1 deadline=$2 via=$VIA aside
  aside=$(set_aside "$i")
  printf 'node %d was removed from the cluster: its old data dir is now %s\n' "$i" "$aside"
  printf 'node %d joins the cluster afresh through node %d\n' "$i" "$via"
  VIA=$via
  start_node "$i" join
  wait_ping "$i" "$deadline"
  wait_member "$i" "$deadline"
}

# wait_ping I DEADLINE: poll node I's /v1/ping until it answers 200.
wait_ping() {
  local i=$1 deadline=$2
  until [[ $(ping_status "$i") == 200 ]]; do
    node_pid "$i" >/dev/null || fail_node "$i" "node $i exited during start-up"
    before "$deadline" ||
      fail_node "$i" "node $i did not answer $(api_url "$i")/v1/ping within ${UP_TIMEOUT}s"
    sleep 0.1
  done
}

# wait_bootstrapped DEADLINE: poll a freshly bootstrapped node 1 until it leads, so that
# the joining nodes find a leader.
wait_bootstrapped() {
  local deadline=$1 leader
  while :; do
    api GET "$(api_url 1)/v1/cluster?stale=true"
    if [[ $API_STATUS == 200 ]]; then
      leader=$(jq -r '.leader // 0' <<<"$API_BODY" 2>/dev/null) || leader=0
      [[ $leader == 0 ]] || return 0
    fi
    node_pid 1 >/dev/null || fail_node 1 "node 1 exited during bootstrap"
    before "$deadline" ||
      fail_node 1 "node 1 did not become leader of the new cluster within ${UP_TIMEOUT}s (last answer: HTTP $API_STATUS $API_BODY)"
    sleep 0.1
  done
}

# wait_members N DEADLINE: poll a live member until /v1/nodes lists uids 1..N, all
# active, and the cluster has a leader; sets LEADER.
wait_members() {
  local n=$1 deadline=$2 i
  until members_ready "$n"; do
    for (( i = 1; i <= n; i++ )); do
      node_pid "$i" >/dev/null || fail_node "$i" "node $i exited while the cluster formed"
    done
    if ! before "$deadline"; then
      # Blame the first node missing from /v1/nodes, else node 1.
      i=1
      if [[ $PROBLEM =~ ^nodes\ (missing\ from\ /v1/nodes|not\ active\ yet):\ ([0-9]+) ]]; then
        i=${BASH_REMATCH[2]}
      fi
      fail_node "$i" "cluster not formed within ${UP_TIMEOUT}s: $PROBLEM"
    fi
    sleep 0.1
  done
}

# wait_member I DEADLINE: poll until node I is an active member (it votes); node I must
# keep running meanwhile.
wait_member() {
  local i=$1 deadline=$2 status
  while :; do
    status=""
    if live_member "$i"; then
      status=$(jq -r --argjson uid "$i" \
        '.[] | select((.uid | tostring) == ($uid | tostring)) | .status' <<<"$API_BODY" 2>/dev/null) || status=""
    fi
    [[ $status != active ]] || return 0
    node_pid "$i" >/dev/null || fail_node "$i" "node $i exited while it joined"
    before "$deadline" ||
      fail_node "$i" "node $i is not an active member within ${UP_TIMEOUT}s (status: '${status:-not listed}')"
    sleep 0.1
  done
}

# members_ready N: true when uids 1..N are in /v1/nodes, all active (voting), and the cluster
# has a leader (then sets LEADER); otherwise sets PROBLEM to what is wrong. It asks any live
# member, not always node 1 (which may have been removed).
members_ready() {
  local n=$1 missing url
  if ! live_member; then
    PROBLEM="no running node answers GET /v1/nodes as a member (last answer: HTTP $API_STATUS $API_BODY)"
    return 1
  fi
  url=$(api_url "$VIA")
  if ! missing=$(jq -r --argjson n "$n" \
    '[range(1; $n + 1) | tostring] - [.[].uid | tostring] | join(" ")' <<<"$API_BODY" 2>/dev/null); then
    PROBLEM="GET /v1/nodes answered something that is not a list of nodes: $API_BODY"
    return 1
  fi
  if [[ -n $missing ]]; then
    PROBLEM="nodes missing from /v1/nodes: $missing"
    return 1
  fi
  # A joining node is listed from its admission; it is active once it votes.
  missing=$(jq -r '[.[] | select(.status != "active") | .uid | tostring] | join(" ")' <<<"$API_BODY" 2>/dev/null) || missing="?"
  if [[ -n $missing ]]; then
    PROBLEM="nodes not active yet: $missing"
    return 1
  fi
  api GET "$url/v1/cluster"
  if [[ $API_STATUS != 200 ]]; then
    PROBLEM="GET /v1/cluster on node $VIA answered HTTP $API_STATUS $API_BODY"
    return 1
  fi
  LEADER=$(jq -r '.leader // 0' <<<"$API_BODY" 2>/dev/null) || LEADER=0
  if [[ ! $LEADER =~ ^[1-9][0-9]*$ ]]; then
    PROBLEM="the cluster has no leader"
    return 1
  fi
}

# create_demo_db: through the live member VIA, create database "demo" unless it exists; skipped when this build has no
# /v1/bdbs endpoint.
create_demo_db() {
  local url
  url=$(api_url "$VIA")
  local body='{"name":"demo","memory_size":1073741824,"shards_count":4,"replication":true,"data_persistence":"snapshot"}'
  local skipped="demo database skipped: this build of cnmd has no /v1/bdbs endpoint"
  api GET "$url/v1/bdbs"
  case $API_STATUS in
    200)
      if jq -e 'any(.[]; .name == "demo")' <<<"$API_BODY" >/dev/null 2>&1; then
        echo "demo database: already exists"
        return 0
      fi
      ;;
    404) echo "$skipped"; return 0 ;;
    *) die "GET /v1/bdbs answered HTTP $API_STATUS: $API_BODY" ;;
  esac
  # Spread the demo's shards over every node, so that node actions have
  # something to move wherever they are pointed.
  api PUT "$url/v1/cluster/policy" '{"default_shards_placement":"sparse"}'
  [[ $API_STATUS == 200 ]] || die "PUT /v1/cluster/policy answered HTTP $API_STATUS: $API_BODY"
  API_TIMEOUT=30 api POST "$url/v1/bdbs" "$body"
  case $API_STATUS in
    200) echo "demo database: created (uid $(jq -r '.uid // "?"' <<<"$API_BODY"), 1 GiB, 4 shards, replicated)" ;;
    404) echo "$skipped" ;;
    *) die "POST /v1/bdbs (demo database) answered HTTP $API_STATUS: $API_BODY" ;;
  esac
}

# redis_backend: whether the nodes run real redis shards, as cnmd's --shard-backend auto
# decides (redis-server installed), unless CNM_SHARD_BACKEND or CNM_NODE_ARGS say file.
redis_backend() {
  local a=" ${CNM_NODE_ARGS:-} "
  [[ ${CNM_SHARD_BACKEND:-auto} != file && $a != *" --shard-backend file "* && $a != *" --shard-backend=file "* ]] || return 1
  [[ ${CNM_SHARD_BACKEND:-auto} == redis || $a == *" --shard-backend redis "* || $a == *" --shard-backend=redis "* ]] && return 0
  command -v redis-server >/dev/null 2>&1
}

# demo_endpoint DEADLINE: print "HOST PORT" of the demo database's endpoint once every one of
# its shards answers through it (DBSIZE is summed over them), so that the first command sent
# there finds the database whole.
demo_endpoint() {
  local url ep out
  url=$(api_url "$VIA")
  require redis-cli
  while :; do
    api GET "$url/v1/bdbs"
    ep=""
    if [[ $API_STATUS == 200 ]]; then
      ep=$(jq -r 'first(.[] | select(.name == "demo") | .endpoints[0] | "\(.addr[0]) \(.port)") // empty' <<<"$API_BODY" 2>/dev/null) || ep=""
    fi
    if [[ -n $ep ]]; then
      out=$(timeout 2 redis-cli -h "${ep% *}" -p "${ep#* }" DBSIZE 2>/dev/null) || out=""
      if [[ $out =~ ^[0-9]+$ ]]; then
        printf '%s\n' "$ep"
        return 0
      fi
    fi
    before "$1" || die "the demo database's endpoint ${ep:-(none yet)} does not answer DBSIZE within ${UP_TIMEOUT}s (redis-cli said: ${out:-nothing})"
    sleep 0.2
  done
}

cmd_up() {
  (( $# <= 1 )) || usage
  local n i fresh deadline pw_file dir_hint=""
  n=$(node_index "${1:-3}")
  require curl jq
  mkdir -p "$CNM_DIR"
  resolve_dir
  deadline=$(deadline_in "$UP_TIMEOUT")

  pw_file=$CNM_DIR/admin-password
  load_password
  if [[ -z $PW ]]; then
    [[ ! -d $(node_dir 1) ]] ||
      die "$(node_dir 1) holds a cluster but its admin password is unknown: set CNM_ADMIN_PASSWORD"
    PW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=\n')
  fi
  if [[ ! -f $pw_file ]]; then
    (umask 077 && printf '%s\n' "$PW" >"$pw_file")
  fi

  # A fresh cluster: no node has a data dir. Node 1 then creates it and the others join;
  # otherwise the nodes with data dirs resume first, then the others join through any live
  # member (not always node 1, which may have been removed).
  fresh=true
  for (( i = 1; i <= 254; i++ )); do
    if [[ -d $(node_dir "$i") ]]; then fresh=false; break; fi
  done
  if $fresh; then
    start_node 1 bootstrap
    wait_ping 1 "$deadline"
    wait_bootstrapped "$deadline"
  else
    local resumed=()
    for i in $(list_nodes); do
      if [[ -d $(node_dir "$i") ]] && ! node_pid "$i" >/dev/null; then
        VIA=0
        start_node "$i" resume
        resumed+=("$i")
      fi
    done
    for i in "${resumed[@]}"; do wait_ping "$i" "$deadline"; done
    # Restarted nodes answer as members once they have a leader again.
    until live_member; do
      before "$deadline" || die "no running node answers GET /v1/nodes as a member within ${UP_TIMEOUT}s (last answer: HTTP $API_STATUS $API_BODY)"
      sleep 0.1
    done
    # A node the cluster removed would exit again: rejoin it afresh.
    for i in $(list_nodes); do
      if [[ -d $(node_dir "$i") ]] && was_removed "$i"; then rejoin "$i" "$deadline"; fi
    done
  fi
  for (( i = 1; i <= n; i++ )); do
    [[ ! -d $(node_dir "$i") ]] || continue
    until live_member "$i"; do
      before "$deadline" || die "no running node answers as a member of the cluster to join node $i through"
      sleep 0.1
    done
    start_node "$i" join
    wait_ping "$i" "$deadline"
  done
  wait_members "$n" "$deadline"
  create_demo_db
  local demo=""
  if redis_backend; then demo=$(demo_endpoint "$deadline"); fi

  [[ $CNM_DIR == "$PWD/.cluster" ]] || dir_hint="CNM_DIR=$CNM_DIR "
  printf '\ncluster of %d nodes up (%s)\n' "$n" "$CNM_DIR"
  for (( i = 1; i <= n; i++ )); do
    printf '  node %-3d uid %-3d %s  log %s\n' "$i" "$i" "$(api_url "$i")" "$(log_file "$i")"
  done
  printf 'leader:    node %s\n' "$LEADER"
  printf 'admin:     %s\n' "$ADMIN_USER"
  printf 'password:  %s   (in %s)\n' "$PW" "$pw_file"
  printf 'CA file:   %s\n' "$(node_dir 1)/tls/ca.crt"
  # What another node joining this cluster passes as --join-ca-fingerprint: the SHA-256 of
  # the CA certificate's DER.
  if [[ -f $(node_dir 1)/tls/ca.crt ]]; then
    printf 'CA sha256: %s\n' "$(sed '/-----/d' "$(node_dir 1)/tls/ca.crt" | base64 -d | sha256sum | cut -d' ' -f1)"
  fi
  printf 'try:       curl -k -u %s:%s %s/v1/nodes\n' "$ADMIN_USER" "$PW" "$(api_url "$(( n >= 2 ? 2 : 1 ))")"
  if [[ -n $demo ]]; then printf 'demo db:   redis-cli -h %s -p %s\n' "${demo% *}" "${demo#* }"; fi
  printf 'status:    %s%s status\n' "$dir_hint" "$0"
  printf 'stop:      %s%s down\n' "$dir_hint" "$0"
}

cmd_down() {
  local purge=false i pid f
  case ${1-} in
    "") ;;
    --purge) purge=true ;;
    *) usage ;;
  esac
  (( $# <= 1 )) || usage
  resolve_dir
  if [[ ! -d $CNM_DIR ]]; then
    echo "no cluster in $CNM_DIR"
    return 0
  fi

  local pids=()
  for i in $(list_nodes); do
    if pid=$(node_pid "$i"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids[i]=$pid
    fi
  done
  local deadline
  deadline=$(deadline_in "$DOWN_TIMEOUT")
  for i in "${!pids[@]}"; do
    if wait_gone "${pids[i]}" "$deadline"; then
      printf 'node %d stopped\n' "$i"
    else
      kill -KILL "${pids[i]}" 2>/dev/null || true
      wait_gone "${pids[i]}" "$(deadline_in 5)" || true
      printf 'node %d did not exit within %ds of SIGTERM: killed\n' "$i" "$DOWN_TIMEOUT"
    fi
  done
  for f in "$CNM_DIR"/node-*.pid; do rm -f -- "$f"; done
  (( ${#pids[@]} )) || echo "no node was running"
  stop_shards
  if $purge; then purge_dir; fi
}

# shard_pids: the pids of the running redis-server processes that the shard records under
# $CNM_DIR record (shards/<uid>/shard.json), one per line. A pid that now belongs to another
# program, or a redis-server on another port, is not ours.
shard_pids() {
  local f pid port
  for f in "$CNM_DIR"/node-*/shards/*/shard.json; do
    pid=$(jq -r '.pid // 0' "$f" 2>/dev/null) || continue
    port=$(jq -r '.port // 0' "$f" 2>/dev/null) || continue
    [[ $pid =~ ^[1-9][0-9]*$ && $port =~ ^[1-9][0-9]*$ ]] || continue
    [[ -r /proc/$pid/cmdline ]] || continue
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *redis-server*":$port"* ]] || continue
    printf '%s\n' "$pid"
  done
}

# stop_shards: stop the shard processes of the stopped nodes. They outlive cnmd on purpose
# (a killed cnmd must not take data down), so down stops them itself, with SIGTERM, which
# makes redis-server write its persistence first; up starts them again from their files.
stop_shards() {
  local pids=() pid deadline left
  command -v jq >/dev/null 2>&1 || return 0
  mapfile -t pids < <(shard_pids)
  (( ${#pids[@]} )) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  deadline=$(deadline_in "$DOWN_TIMEOUT")
  left=0
  for pid in "${pids[@]}"; do
    if ! wait_gone "$pid" "$deadline"; then
      kill -KILL "$pid" 2>/dev/null || true
      left=$((left + 1))
    fi
  done
  printf '%d shard processes stopped' "${#pids[@]}"
  if (( left )); then printf ' (%d killed after %ds)' "$left" "$DOWN_TIMEOUT"; fi
  printf '\n'
}

# purge_dir: delete CNM_DIR, but only if it holds nothing this script did not create.
purge_dir() {
  local f
  for f in "$CNM_DIR"/* "$CNM_DIR"/.[!.]*; do
    case ${f##*/} in
      node-[0-9]* | admin-password) ;;
      *) die "refusing to delete $CNM_DIR: it holds ${f##*/}, which is not part of a cluster" ;;
    esac
  done
  rm -rf -- "$CNM_DIR"
  echo "deleted $CNM_DIR"
}

# format_progress P: an action's progress (a float 0-100) with one decimal; anything that is
# not a number is printed as it is.
format_progress() {
  if [[ $1 =~ ^[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then
    LC_NUMERIC=C printf '%.1f' "$1"
  else
    printf '%s' "$1"
  fi
}

cmd_status() {
  (( $# == 0 )) || usage
  require curl jq
  resolve_dir
  local nodes=() i pid from="" leader
  mapfile -t nodes < <(list_nodes)
  if (( ${#nodes[@]} == 0 )); then
    echo "no cluster in $CNM_DIR"
    return 1
  fi
  load_password

  printf '%-5s %-4s %-16s %s\n' NODE UID API PROCESS
  for i in "${nodes[@]}"; do
    if pid=$(node_pid "$i"); then pid="running (pid $pid)"; else pid="not running"; fi
    printf '%-5d %-4d %-16s %s\n' "$i" "$i" "$(api_addr "$i")" "$pid"
  done

  for i in "${nodes[@]}"; do
    api GET "$(api_url "$i")/v1/cluster?stale=true"
    if [[ $API_STATUS == 200 ]]; then from=$i; break; fi
  done
  if [[ -z $from ]]; then
    echo
    echo "cluster: no node answers GET /v1/cluster (last answer: HTTP $API_STATUS $API_BODY)"
    return 1
  fi
  leader=$(jq -r '.leader // 0' <<<"$API_BODY" 2>/dev/null) || leader=0
  [[ $leader != 0 ]] || leader=none
  printf '\ncluster (local view of node %d): leader %s\n' "$from" "$leader"
  printf '  %-4s %-9s %-10s %-16s %s\n' UID ROLE SUFFRAGE API RAFT
  jq -r '.members // [] | .[] | [.uid, .role, .suffrage, .api_addr, .raft_addr] | map(. // "-" | tostring) | @tsv' \
    <<<"$API_BODY" |
    while IFS=$'\t' read -r uid role suffrage api raft; do
      printf '  %-4s %-9s %-10s %-16s %s\n' "$uid" "$role" "$suffrage" "$api" "$raft"
    done

  echo
  api GET "$(api_url "$from")/v1/nodes/actions"
  case $API_STATUS in
    200)
      if [[ $(jq '.actions | length' <<<"$API_BODY" 2>/dev/null) == 0 ]]; then
        echo "actions: none"
      else
        echo "actions:"
        printf '  %-5s %-16s %-11s %-9s %s\n' NODE ACTION STATUS PROGRESS TASK
        jq -r '.actions[] | [.node_uid, .action, .status, .progress, .task_id] | map(. // "-" | tostring) | @tsv' \
          <<<"$API_BODY" |
          while IFS=$'\t' read -r node action status progress task; do
            progress=$(format_progress "$progress")
            printf '  %-5s %-16s %-11s %-9s %s\n' "$node" "$action" "$status" "$progress" "$task"
          done
      fi
      ;;
    404) echo "no actions endpoint" ;;
    *) echo "actions: GET /v1/nodes/actions answered HTTP $API_STATUS $API_BODY" ;;
  esac
}

cmd_kill() {
  (( $# == 1 )) || usage
  local i pid
  i=$(node_index "$1")
  resolve_dir
  pid=$(node_pid "$i") || die "node $i is not running"
  kill -KILL "$pid"
  rm -f -- "$(pid_file "$i")"
  wait_gone "$pid" "$(deadline_in 5)" || die "node $i (pid $pid) still exists 5s after SIGKILL"
  printf 'node %d killed (pid %s)\n' "$i" "$pid"
}

cmd_start() {
  (( $# == 1 )) || usage
  local i pid deadline
  i=$(node_index "$1")
  require curl jq
  resolve_dir
  [[ -d $(node_dir "$i") ]] || die "node $i has no data dir $(node_dir "$i"); add nodes with: $0 up N"
  load_password
  deadline=$(deadline_in "$UP_TIMEOUT")
  # Asked first: a node just removed may still run for a moment before it exits.
  if was_removed "$i"; then
    rejoin "$i" "$deadline"
    printf 'node %d rejoined the cluster as a new member and answers at %s\n' "$i" "$(api_url "$i")"
    return 0
  fi
  if pid=$(node_pid "$i"); then
    printf 'node %d already running (pid %s)\n' "$i" "$pid"
    return 0
  fi
  # Not removed, or no live member to tell: resume (a node caught mid-join finishes its
  # join through VIA, when there is one). With a live cluster, the node is back once the
  # cluster counts it active again (a node down for a while is shown down until then).
  local via=$VIA
  start_node "$i" resume
  wait_ping "$i" "$deadline"
  if (( via > 0 )); then
    wait_member "$i" "$deadline"
    printf 'node %d is an active member again and answers at %s\n' "$i" "$(api_url "$i")"
  else
    printf 'node %d answers at %s\n' "$i" "$(api_url "$i")"
  fi
}

cmd_leader() {
  (( $# == 0 )) || usage
  require curl jq
  resolve_dir
  load_password
  [[ -n $PW ]] || die "admin password unknown: set CNM_ADMIN_PASSWORD"
  local i leader
  for i in $(list_nodes); do
    node_pid "$i" >/dev/null || continue
    API_TIMEOUT=3 api GET "$(api_url "$i")/v1/cluster"
    [[ $API_STATUS == 200 ]] || continue
    leader=$(jq -r '.leader // 0' <<<"$API_BODY" 2>/dev/null) || continue
    if [[ $leader != 0 ]]; then
      printf '%s\n' "$leader"
      return 0
    fi
  done
  die "no running node knows a leader"
}

main() {
  local cmd=${1-}
  (( $# == 0 )) || shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    purge) (( $# == 0 )) || usage; cmd_down --purge ;;
    status) cmd_status "$@" ;;
    kill) cmd_kill "$@" ;;
    start) cmd_start "$@" ;;
    leader) cmd_leader "$@" ;;
    *) usage ;;
  esac
}

# Sourced (by scripts/test-cluster-sh.sh), only the functions are defined.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
