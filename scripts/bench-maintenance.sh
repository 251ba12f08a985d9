#!/usr/bin/env bash
# Benchmark (issue 11): maintenance_on of a node holding 10 shards of 100 MiB of data
# each, against a plain `redis-cli --rdb` transfer of the same data on the same machine.
#
# A 3-node cluster (scripts/cluster.sh, in a temporary CNM_DIR) gets a database of
# BENCH_SHARDS non-replicated shards, all on node 2; each shard's redis-server is filled
# directly with BENCH_SHARD_MB MiB of random values. Then, in this order:
#   baseline        `redis-cli --rdb` of every shard from node 2 to a file, timed one by one
#   maintenance_on  of node 2 (cnmctl, start to completed), which moves every shard away
#   maintenance_off of node 2, which moves them back
# The data is checked after each action (DBSIZE of every shard's new process, and through
# the database's endpoint). Where each action's time goes comes from the action record
# (events) and from the logs of cnmd and of the shards' redis-server processes (ms).
# The summary is printed and written to the section of docs/BENCHMARKS.md between the
# bench-maintenance markers. No figure is a pass/fail threshold: the script fails only when
# something does not work.
#
# Run it alone on the machine (make bench runs it after the Go benchmarks):
#   make build && scripts/bench-maintenance.sh
#
# Environment:
#   BENCH_SHARDS        shards of the database, all on node 2 (default 10)
#   BENCH_SHARD_MB      MiB of values written to each shard (default 100)
#   BENCH_VALUE_BYTES   bytes of each value, a multiple of 4 (default 1000)
#   BENCH_SHARD_MEMORY  memory of each shard, bytes (default 268435456, 256 MiB)
#   BENCH_WAIT_FREE     seconds to wait for another cluster to free 127.0.0.1-3:9443
#                       (default 900)
#   BENCH_ACTION_TIMEOUT  seconds each action may take before the run is given up (1800)
#   BENCH_DOC           file to write the results to (default docs/BENCHMARKS.md; empty:
#                       print only)
#   CNM_BIN             directory holding cnmd and cnmctl (default ./bin)
#   TMPDIR              where the cluster and the RDB files go (a directory of its own)
set -euo pipefail
shopt -s nullglob

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
readonly PROG=bench-maintenance
readonly ADMIN_USER=admin@cnm.local
readonly NODE=2 # the node put into maintenance
readonly SHARDS=${BENCH_SHARDS:-10}
readonly SHARD_MB=${BENCH_SHARD_MB:-100}
readonly VALUE_BYTES=${BENCH_VALUE_BYTES:-1000}
readonly SHARD_MEMORY=${BENCH_SHARD_MEMORY:-268435456}
readonly WAIT_FREE=${BENCH_WAIT_FREE:-900}
readonly ACTION_TIMEOUT=${BENCH_ACTION_TIMEOUT:-1800}
DOC=${BENCH_DOC-docs/BENCHMARKS.md}
export CNM_BIN=${CNM_BIN:-$root/bin}
cluster=$root/scripts/cluster.sh

work=""  # the temporary directory: cluster, RDB files, action records
child="" # a long-running command in the background, stopped on interrupt
pw=""

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

die() {
  printf '%s: FAIL %s\n' "$PROG" "$*" >&2
  exit 1
}

cleanup() {
  local rc=$? f
  trap - EXIT INT TERM
  if [[ -n $child ]]; then kill -TERM "$child" 2>/dev/null || true; fi
  if [[ -n $work && -d $work ]]; then
    if (( rc != 0 && rc != 130 && rc != 143 )); then # a failure, not an interrupt
      for f in "$CNM_DIR"/node-*.log; do
        printf -- '--- last 20 lines of %s ---\n' "$f" >&2
        tail -n 20 "$f" >&2
      done
    fi
    # Always: the nodes and shard processes may hold a descriptor (a flock) of ours.
    if [[ -d $CNM_DIR ]]; then "$cluster" down --purge >&2 || true; fi
    rm -rf -- "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# in_bg OUT ERR CMD...: run CMD, its output to the files OUT and ERR (which may be the
# same), and wait for it, interruptibly: a trapped signal ends the wait at once, and cleanup
# stops CMD. The redirections are CMD's alone, so that cleanup still reports to stderr.
in_bg() {
  local out=$1 err=$2 rc=0
  shift 2
  if [[ $err == "$out" ]]; then "$@" >"$out" 2>&1 & else "$@" >"$out" 2>"$err" & fi
  child=$!
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

now_ms() {
  local t=${EPOCHREALTIME/[.,]/}
  printf '%s\n' "${t%???}"
}

# ratio A B: A/B with two decimals ("-" when B is 0 or either is not a number).
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^-?[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else printf "-" }'
}

# pct A B: A as a percentage of B, one decimal.
pct() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^-?[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.1f%%", 100 * a / b; else printf "-" }'
}

# secs MS [DECIMALS]: milliseconds as seconds (one decimal unless told).
secs() { awk -v a="$1" -v d="${2:-1}" 'BEGIN { if (a ~ /^-?[0-9]+$/) printf "%.*f s", d, a / 1000; else printf "-" }'; }

# mib BYTES: bytes as MiB with one decimal.
mib() { awk -v a="$1" 'BEGIN { printf "%.1f MiB", a / 1048576 }'; }

# api METHOD PATH [BODY]: a request to node 1 (else 3) as the admin; sets status and body.
status=""
body=""
api() {
  local method=$1 path=$2 data=${3-} resp node
  local args=(-sk --connect-timeout 2 --max-time 30 -u "$ADMIN_USER:$pw" -X "$method" -w '\n%{http_code}')
  if [[ -n $data ]]; then args+=(-H 'Content-Type: application/json' --data-binary "$data"); fi
  for node in 1 3; do
    resp=$(curl "${args[@]}" "https://127.0.0.$node:9443$path") || resp=$'\n000'
    status=${resp##*$'\n'}
    body=${resp%$'\n'*}
    [[ $status == 000 ]] || return 0
  done
}

# api_ok METHOD PATH [BODY]: api, failing unless the answer is 200.
api_ok() {
  api "$@"
  [[ $status == 200 ]] || die "$1 $2 answered HTTP $status: $body"
}

# listening HOST PORT: something accepts connections there.
listening() {
  # shellcheck disable=SC2016 # expanded by the inner shell, from its arguments
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# wait_addresses_free: another cluster (a test run) may be using 127.0.0.1-3:9443; wait for
# it to go.
wait_addresses_free() {
  local deadline=$((SECONDS + WAIT_FREE)) i busy said=false
  while :; do
    busy=""
    for i in 1 2 3; do
      if listening "127.0.0.$i" 9443; then busy+=" 127.0.0.$i:9443"; fi
    done
    [[ -n $busy ]] || return 0
    (( SECONDS < deadline )) || die "still in use after ${WAIT_FREE}s:$busy (another cluster runs there)"
    if ! $said; then
      log "in use:$busy; waiting up to ${WAIT_FREE}s for the cluster there to stop"
      said=true
    fi
    sleep 5
  done
}

# crc16 STRING: CRC16/XMODEM, the hash of Redis Cluster slots.
crc16() {
  local s=$1 crc=0 i j c
  for (( i = 0; i < ${#s}; i++ )); do
    printf -v c '%d' "'${s:i:1}"
    crc=$(( crc ^ (c << 8) ))
    for (( j = 0; j < 8; j++ )); do
      if (( crc & 0x8000 )); then crc=$(( ((crc << 1) ^ 0x1021) & 0xffff )); else crc=$(( (crc << 1) & 0xffff )); fi
    done
  done
  printf '%d\n' "$crc"
}

# hash_tag UID SLOTS: a hash tag whose slot is in SLOTS ("LOW-HIGH"), so that the keys
# written straight into shard UID are the ones the database's endpoint routes there.
hash_tag() {
  local uid=$1 lo=${2%%-*} hi=${2#*-} n slot
  hi=${hi%%,*}
  for (( n = 0; n < 100000; n++ )); do
    slot=$(( $(crc16 "s$uid-$n") & 16383 ))
    if (( slot >= lo && slot <= hi )); then
      printf 's%s-%d\n' "$uid" "$n"
      return 0
    fi
  done
  die "no hash tag found for slots $2"
}

# shard_port NODE UID: the port of shard UID's process on NODE (its shard.json); empty
# when the record is not there (yet).
shard_port() {
  jq -r '.port // empty' "$CNM_DIR/node-$1/shards/$2/shard.json" 2>/dev/null || true
}

# rcli NODE PORT CMD...: one redis command to a shard process.
rcli() {
  local node=$1 port=$2
  shift 2
  timeout 10 redis-cli -h "127.0.0.$node" -p "$port" "$@" | tr -d '\r'
}

# info_field NODE PORT SECTION FIELD
info_field() { rcli "$1" "$2" INFO "$3" | sed -n "s/^$4://p"; }

# bench_shards: "uid node slots role status" of the benchmark database's shards, by uid.
bench_shards() {
  api_ok GET /v1/shards
  jq -r --argjson bdb "$bdb" '.[] | select(.bdb_uid == $bdb) | "\(.uid) \(.node_uid) \(.assigned_slots) \(.role) \(.status)"' <<<"$body" | sort -n
}

# check_data WHEN NODE_EXPECTED: every shard of the database is a master, on NODE_EXPECTED
# when it is given (else anywhere but node 2), whose process holds all its keys; and the
# endpoint answers DBSIZE with all of them.
check_data() {
  local when=$1 want=${2-} uid node slots role st port n deadline total=0 count=0 ep out list
  list=$(bench_shards)
  while read -r uid node slots role st; do
    count=$((count + 1))
    if [[ -n $want ]]; then
      [[ $node == "$want" ]] || die "$when: shard $uid is on node $node, not $want"
    else
      [[ $node != "$NODE" ]] || die "$when: shard $uid is still on node $NODE"
    fi
    [[ $role == master ]] || die "$when: shard $uid is a $role"
    port=$(shard_port "$node" "$uid")
    [[ -n $port ]] || die "$when: shard $uid has no record in node $node's data dir"
    n=$(rcli "$node" "$port" DBSIZE) || n="no answer"
    [[ $n == "${keys_of[$uid]}" ]] || die "$when: shard $uid on node $node (port $port) holds $n keys, it held ${keys_of[$uid]}"
    total=$((total + n))
  done <<<"$list"
  (( count == SHARDS )) || die "$when: the database has $count shards, not $SHARDS"
  # The endpoint (rebound with the shards) sums DBSIZE over the masters.
  deadline=$((SECONDS + 30))
  while :; do
    api_ok GET "/v1/bdbs/$bdb"
    ep=$(jq -r '.endpoints[0] | "\(.addr[0]) \(.port)"' <<<"$body")
    out=$(timeout 5 redis-cli -h "${ep% *}" -p "${ep#* }" DBSIZE 2>/dev/null | tr -d '\r') || out=""
    [[ $out != "$total" ]] || break
    (( SECONDS < deadline )) || die "$when: DBSIZE through the endpoint ${ep/ /:} answers '$out', the shards hold $total keys"
    sleep 0.5
  done
  log "$when: all $total keys are there (each shard's process, and the endpoint ${ep/ /:})"
}

# log_ms LINE_TIME: a log line's time ("09 Jan 2026 10:00:00.123" of redis-server, or
# slog's RFC 3339 time) in ms since the epoch.
log_ms() { date -d "$1" +%s%3N; }

# redis_time LOG PATTERN [last]: the time (ms) of the first (or last) line of a
# redis-server log matching PATTERN; empty when none matches.
redis_time() {
  local line
  if [[ ${3-} == last ]]; then
    line=$(grep -E -- "$2" "$1" | tail -n 1) || true
  else
    line=$(grep -E -m 1 -- "$2" "$1") || true
  fi
  [[ -n $line ]] || return 0
  # "PID:ROLE DD Mon YYYY HH:MM:SS.mmm * message"
  read -r _ d m y t _ <<<"$line"
  log_ms "$d $m $y $t"
}

# cnmd_time LOG MSG UID: the time (ms) of the last line of a cnmd log with msg MSG for
# shard UID; empty when there is none.
cnmd_time() {
  local line t
  line=$(grep -F -- "msg=\"$2\"" "$1" | grep -E -- " shard_uid=$3( |\$)" | tail -n 1) || true
  [[ -n $line ]] || return 0
  t=${line#time=}
  log_ms "${t%% *}"
}

# move_phases NAME ACTION_JSON: where the time of action NAME (its record in ACTION_JSON)
# went, from the logs of the nodes the shards moved to; sets the phase_* figures.
declare -A phase
move_phases() {
  local name=$1 rec=$2 uid node slots role st dir rlog clog start conn loading synced copied list
  local first_start="" last_end="" prev_end="" spawn=0 sync=0 load=0 switch=0 gaps=0 moves=0
  local -a per_move=()
  list=$(bench_shards)
  while read -r uid node slots role st; do
    dir=$CNM_DIR/node-$node/shards/$uid
    rlog=$dir/redis.log
    clog=$CNM_DIR/node-$node.log
    [[ -f $rlog ]] || die "$name: no redis log of shard $uid on node $node ($rlog)"
    start=$(redis_time "$rlog" 'Redis is starting')
    conn=$(redis_time "$rlog" 'Connecting to MASTER')
    loading=$(redis_time "$rlog" 'MASTER <-> REPLICA sync: Loading DB in memory')
    synced=$(redis_time "$rlog" 'MASTER <-> REPLICA sync: Finished with success')
    copied=$(cnmd_time "$clog" "copied shard" "$uid")
    [[ -n $start && -n $conn && -n $synced && -n $copied ]] ||
      die "$name: the logs of shard $uid on node $node lack a step of its copy (start '$start', connect '$conn', synced '$synced', copied '$copied')"
    per_move+=("$start $conn ${loading:--} $synced $copied $uid $node")
  done <<<"$list"
  # In the order the moves ran.
  while read -r start conn loading synced copied uid node; do
    moves=$((moves + 1))
    spawn=$((spawn + conn - start))
    sync=$((sync + synced - conn))
    if [[ $loading == - || $load == - ]]; then load=-; else load=$((load + synced - loading)); fi
    switch=$((switch + copied - synced))
    if [[ -n $prev_end ]]; then
      gaps=$((gaps + start - prev_end))
      if (( start < prev_end )); then
        odd+=("$name: the copy of shard $uid began $((prev_end - start)) ms before the previous copy ended (moves overlapped; the breakdown assumes one at a time)")
      fi
    fi
    [[ -n $first_start ]] || first_start=$start
    prev_end=$copied
    last_end=$copied
    printf '%s: %s: shard %s to node %s: replica start %d ms, full sync %d ms (loading %s ms), switch-over %d ms\n' \
      "$PROG" "$name" "$uid" "$node" "$((conn - start))" "$((synced - conn))" \
      "$(if [[ $loading == - ]]; then echo "?"; else echo "$((synced - loading))"; fi)" "$((copied - synced))" >&2
  done < <(printf '%s\n' "${per_move[@]}" | sort -n)
  local a_start a_end
  a_start=$(jq -r '.additional_info.start_time_ms // empty' "$rec")
  a_end=$(jq -r '.additional_info.end_time_ms // empty' "$rec")
  [[ -n $a_start && -n $a_end ]] || die "$name: the action record has no start_time_ms/end_time_ms"
  phase[$name.moves]=$moves
  phase[$name.total]=$((a_end - a_start))
  phase[$name.before]=$((first_start - a_start))
  phase[$name.span]=$((last_end - first_start))
  phase[$name.after]=$((a_end - last_end))
  phase[$name.spawn]=$spawn
  phase[$name.sync]=$sync
  phase[$name.load]=$load
  phase[$name.switch]=$switch
  phase[$name.gaps]=$gaps
  # The move steps as the action record has them: the event of each committed step has its
  # time in seconds; a step lasts from the previous step's event (or the start) to its own.
  phase[$name.move_steps_s]=$(jq -r '
    .additional_info.steps as $kinds | .start_time as $t0
    | [.additional_info.events[] | select(.message | test("^step [0-9]+/"))
       | {i: (.message | capture("^step (?<i>[0-9]+)/").i | tonumber), t: .time}]
    | sort_by(.i) as $ev
    | [range(0; $ev | length) | select($kinds[$ev[.].i - 1] == "move_shard")
       | $ev[.].t - (if . == 0 then $t0 else $ev[. - 1].t end)] | add // 0' "$rec")
  phase[$name.steps]=$(jq -r '.additional_info.steps | group_by(.) | map("\(length) \(.[0])") | join(", ")' "$rec")
}

# run_action ACTION: run ACTION on node 2 with cnmctl through nodes 1 and 3, timed; the
# final action object goes to $work/ACTION.json.
declare -A wall
run_action() {
  local action=$1 t0 t1 rc=0 st
  log "$action of node $NODE ..."
  t0=$(now_ms)
  in_bg "$work/$action.json" "$work/$action.err" timeout "$ACTION_TIMEOUT" "$CNM_BIN/cnmctl" \
    -url "https://127.0.0.1:9443,https://127.0.0.3:9443" -progress none -o json \
    action "$NODE" "$action" '{}' || rc=$?
  t1=$(now_ms)
  st=$(jq -r '.status // empty' "$work/$action.json" 2>/dev/null) || st=""
  if (( rc != 0 )) || [[ $st != completed ]]; then
    die "$action of node $NODE ended with exit $rc, status '${st:-?}' after $((t1 - t0)) ms: $(cat "$work/$action.err") $(jq -c '{status, error_code, error_message, events: .additional_info.events[-5:]}' "$work/$action.json" 2>/dev/null)"
  fi
  wall[$action]=$((t1 - t0))
  log "$action completed in $((t1 - t0)) ms (steps: $(jq -r '.additional_info.steps | join(" ")' "$work/$action.json"))"
}

# no_source_left: node 2 keeps no shard process of the database.
no_source_left() {
  local deadline=$((SECONDS + 10)) left
  while :; do
    left=$(find "$CNM_DIR/node-$NODE/shards" -name shard.json 2>/dev/null | wc -l)
    (( left > 0 )) || return 0
    if (( SECONDS >= deadline )); then
      log "odd: $left shard records still on node $NODE 10s after maintenance_on completed"
      odd+=("$left shard records were still on node $NODE 10 s after maintenance_on completed")
      return 0
    fi
    sleep 0.5
  done
}

machine_info() {
  local cpu
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1) || cpu=""
  m_cpus=$(nproc)
  m_cpu=${cpu:-unknown}
  m_mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  m_redis=$(redis-server --version)
  m_go=$(go version 2>/dev/null || echo "go: not found")
  m_kernel=$(uname -sr)
  m_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  # Changes to documents do not change the figures.
  if [[ -n $(git status --porcelain --untracked-files=no -- . ':!docs' ':!*.md' 2>/dev/null) ]]; then
    m_commit+=" (with local changes)"
  fi
}

# ---------------------------------------------------------------------------------------

for t in jq curl redis-cli redis-server awk base64 timeout date git; do
  command -v "$t" >/dev/null 2>&1 || die "$t is required (make deps installs it)"
done
[[ -x $CNM_BIN/cnmd && -x $CNM_BIN/cnmctl ]] || die "no cnmd/cnmctl in $CNM_BIN (run make build)"
[[ $SHARDS =~ ^[1-9][0-9]*$ && $SHARD_MB =~ ^[1-9][0-9]*$ && $SHARD_MEMORY =~ ^[1-9][0-9]*$ ]] ||
  die "BENCH_SHARDS, BENCH_SHARD_MB and BENCH_SHARD_MEMORY must be positive integers"
if [[ ! $VALUE_BYTES =~ ^[1-9][0-9]*$ ]] || (( VALUE_BYTES % 4 != 0 )); then
  die "BENCH_VALUE_BYTES must be a positive multiple of 4"
fi
readonly KEYS=$(( SHARD_MB * 1048576 / VALUE_BYTES ))
odd=()

work=$(mktemp -d "${TMPDIR:-/tmp}/cnm-bench.XXXXXX")
export CNM_DIR=$work/cluster
mkdir -p "$work/rdb"
machine_info
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

wait_addresses_free
log "starting a 3-node cluster in $CNM_DIR"
in_bg "$work/up.log" "$work/up.log" env CNM_UP_TIMEOUT="${CNM_UP_TIMEOUT:-60}" "$cluster" up 3 ||
  die "cluster.sh up 3: $(tail -n 20 "$work/up.log")"
pw=$(<"$CNM_DIR/admin-password")
export CNM_PASSWORD=$pw # for cnmctl: a command line is readable by every local user

# Only the benchmark's shards on node 2: the demo database goes.
api_ok GET /v1/bdbs
for uid in $(jq -r '.[].uid' <<<"$body"); do api_ok DELETE "/v1/bdbs/$uid"; done

# All shards on node 2: nodes 1 and 3 take none while the database is created.
for n in 1 3; do api_ok PUT "/v1/nodes/$n" '{"accept_servers":false}'; done
api POST /v1/bdbs "{\"name\":\"bench\",\"memory_size\":$((SHARDS * SHARD_MEMORY)),\"shards_count\":$SHARDS,\"replication\":false}"
create_status=$status create_body=$body
for n in 1 3; do api_ok PUT "/v1/nodes/$n" '{"accept_servers":true}'; done
[[ $create_status == 200 ]] || die "POST /v1/bdbs answered HTTP $create_status: $create_body"
bdb=$(jq -r .uid <<<"$create_body")

deadline=$((SECONDS + 60))
while :; do
  ready=0
  list=$(bench_shards)
  while read -r uid node slots role st; do
    [[ $node == "$NODE" ]] || die "shard $uid was placed on node $node, not $NODE"
    port=$(shard_port "$node" "$uid")
    if [[ $st == active && -n $port ]] && [[ $(rcli "$node" "$port" PING 2>/dev/null) == PONG ]]; then
      ready=$((ready + 1))
    fi
  done <<<"$list"
  (( ready < SHARDS )) || break
  (( SECONDS < deadline )) || die "only $ready of $SHARDS shards answer on node $NODE after 60s"
  sleep 0.5
done
api_ok GET "/v1/nodes/$NODE"
[[ $(jq -r '.shard_count' <<<"$body") == "$SHARDS" ]] || die "node $NODE holds $(jq -c .shard_list <<<"$body"), not only the $SHARDS benchmark shards"
log "database $bdb: $SHARDS shards of $((SHARD_MEMORY / 1048576)) MiB, all on node $NODE"

# Fill: KEYS random values of VALUE_BYTES per shard (base64 of /dev/urandom, which the RDB's
# LZF compression cannot shrink), keys in a slot the shard owns, piped as RESP.
declare -A keys_of used_of
fill_start=$(now_ms)
list=$(bench_shards)
while read -r uid node slots role st; do
  port=$(shard_port "$node" "$uid")
  tag=$(hash_tag "$uid" "$slots")
  head -c $(( KEYS * VALUE_BYTES * 3 / 4 )) /dev/urandom | base64 -w "$VALUE_BYTES" |
    awk -v tag="$tag" '{ k = "bench:{" tag "}:" NR; printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length($0), $0 }' |
    timeout 600 redis-cli -h "127.0.0.$node" -p "$port" --pipe >"$work/pipe.out" 2>&1 ||
    die "filling shard $uid: $(tail -n 5 "$work/pipe.out")"
  grep -q "errors: 0, replies: $KEYS" "$work/pipe.out" || die "filling shard $uid: $(tail -n 3 "$work/pipe.out")"
  n=$(rcli "$node" "$port" DBSIZE)
  [[ $n == "$KEYS" ]] || die "shard $uid holds $n keys after writing $KEYS"
  keys_of[$uid]=$n
  used_of[$uid]=$(info_field "$node" "$port" memory used_memory)
  log "shard $uid (port $port, tag {$tag}): $n keys, used_memory $(mib "${used_of[$uid]}")"
done <<<"$list"
fill_ms=$(( $(now_ms) - fill_start ))
used_total=0
for uid in "${!used_of[@]}"; do used_total=$((used_total + used_of[$uid])); done

# Baseline: the same data, shard by shard, with redis-cli --rdb from the same processes.
rdb_ms=0
rdb_bytes=0
rdb_max=0
while read -r uid node slots role st; do
  port=$(shard_port "$node" "$uid")
  f=$work/rdb/shard-$uid.rdb
  t0=$(now_ms)
  in_bg "$work/rdb.out" "$work/rdb.out" timeout 600 redis-cli -h "127.0.0.$node" -p "$port" --rdb "$f" ||
    die "redis-cli --rdb of shard $uid: $(tail -n 3 "$work/rdb.out")"
  t=$(( $(now_ms) - t0 ))
  size=$(stat -c %s "$f")
  rm -f -- "$f"
  rdb_ms=$((rdb_ms + t))
  rdb_bytes=$((rdb_bytes + size))
  (( t <= rdb_max )) || rdb_max=$t
  log "redis-cli --rdb of shard $uid: $(mib "$size") in $t ms"
done <<<"$list"
log "baseline: $SHARDS transfers, $(mib "$rdb_bytes") in $rdb_ms ms"

run_action maintenance_on
check_data "after maintenance_on"
no_source_left
move_phases maintenance_on "$work/maintenance_on.json"

run_action maintenance_off
check_data "after maintenance_off" "$NODE"
move_phases maintenance_off "$work/maintenance_off.json"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------

on_total=${phase[maintenance_on.total]}
off_total=${phase[maintenance_off.total]}
rows() {
  local a
  for a in maintenance_on maintenance_off; do
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "\`$a\`" \
      "$(secs "${wall[$a]}")" "$(ratio "${wall[$a]}" "$rdb_ms")" \
      "$(secs "${phase[$a.total]}")" \
      "$(secs "${phase[$a.sync]}")" "$(pct "${phase[$a.sync]}" "${phase[$a.total]}")" \
      "$(ratio "${phase[$a.sync]}" "$rdb_ms")"
  done
}
breakdown() {
  local a
  for a in maintenance_on maintenance_off; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "\`$a\`" \
      "$(secs "${phase[$a.total]}" 2)" "$(secs "${phase[$a.before]}" 2)" \
      "$(secs "${phase[$a.spawn]}" 2)" "$(secs "${phase[$a.sync]}" 2)" "$(secs "${phase[$a.load]}" 2)" \
      "$(secs "${phase[$a.switch]}" 2)" \
      "$(secs "${phase[$a.gaps]}" 2)" "$(secs "${phase[$a.after]}" 2)"
  done
}
odd_lines() {
  local o
  for o in "${odd[@]}"; do printf -- '- %s\n' "$o"; done
}

section=$(cat <<EOF
<!-- bench-maintenance:start -->
## maintenance_on with real data

\`scripts/bench-maintenance.sh\` (run by \`make bench\`), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $m_commit.
**Figures of one run on a shared, noisy machine** (other work ran on it meanwhile; load
average $load_start at the start, $load_end at the end): read the ratios, not the seconds,
and expect them to move by tens of percent from run to run.

Machine: $m_cpus CPUs ($m_cpu), $m_mem of memory, $m_kernel; $m_redis; $m_go.

Method: a local 3-node cluster (\`scripts/cluster.sh\`, every node on this machine, on
loopback) holds one database of $SHARDS non-replicated shards of $((SHARD_MEMORY / 1048576)) MiB, all on node $NODE
(nodes 1 and 3 refused shards while it was created). Each shard's \`redis-server\` got
$KEYS random $VALUE_BYTES-byte values ($SHARD_MB MiB; $(mib "$used_total") of \`used_memory\` over the $SHARDS shards),
written straight to it with \`redis-cli --pipe\` ($(secs "$fill_ms") for all). Then, one after another:

1. baseline: \`redis-cli -h 127.0.0.$NODE -p PORT --rdb FILE\` of each shard, one at a time,
   summed: $(mib "$rdb_bytes") of RDB in $(secs "$rdb_ms") (slowest shard $(secs "$rdb_max"));
2. \`cnmctl action $NODE maintenance_on '{}'\`, timed from start to \`completed\`: every shard
   moves away (a new replica on another node, full sync, switch-over, the source dropped);
3. \`cnmctl action $NODE maintenance_off '{}'\`: every shard moves back.

After each action, every shard's new process holds all its keys (DBSIZE), and so does the
database's endpoint. Syncing is each new replica's full sync as its \`redis-server\` logs
it (\`Connecting to MASTER\` to \`MASTER <-> REPLICA sync: Finished with success\`, ms); the
action's time is its \`start_time_ms\` to \`end_time_ms\`.

| action | wall (cnmctl) | **wall / --rdb sum** | action time | syncing | **syncing share** | syncing / --rdb sum |
|---|---|---|---|---|---|---|
$(rows)

Where the action's time went, from the logs of cnmd and of the shards' \`redis-server\`
(moves run one at a time; a move's replica start-up is its process's start to
\`Connecting to MASTER\`, the load of the full sync from \`Loading DB in memory\` to its end
(a new replica is empty and loads the stream as it arrives, \`repl-diskless-load
on-empty-db\`, so the load spans most of the sync; \`--rdb\` only writes the file), its switch-over from the end of the sync to cnmd's \`copied shard\`;
between moves are the step's commit, the drop of the source and the next move's checks):

| action | action time | before the first move | replica start-up | full sync | of which the replica's load | sync end to switched over | between moves | after the last move |
|---|---|---|---|---|---|---|---|---|
$(breakdown)

Steps: maintenance_on ${phase[maintenance_on.steps]}; maintenance_off ${phase[maintenance_off.steps]}.
The action record itself times its steps only by the events' whole seconds: by them the
move steps took ${phase[maintenance_on.move_steps_s]} s of maintenance_on and ${phase[maintenance_off.move_steps_s]} s of maintenance_off.
$(if (( ${#odd[@]} )); then printf '\nOdd in this run:\n\n'; odd_lines; fi)
<!-- bench-maintenance:end -->
EOF
)

printf '\n%s\n\n' "$section" | sed -e '/^<!-- bench-maintenance/d'
cat <<EOF
summary: maintenance_on $(secs "${wall[maintenance_on]}") = $(ratio "${wall[maintenance_on]}" "$rdb_ms") x the --rdb sum ($(secs "$rdb_ms")), syncing $(pct "${phase[maintenance_on.sync]}" "$on_total") of the action
summary: maintenance_off $(secs "${wall[maintenance_off]}") = $(ratio "${wall[maintenance_off]}" "$rdb_ms") x the --rdb sum, syncing $(pct "${phase[maintenance_off.sync]}" "$off_total") of the action
EOF

if [[ -n $DOC ]]; then
  printf '%s\n' "$section" >"$work/section.md"
  if [[ ! -f $DOC ]]; then
    {
      printf '# Benchmarks\n\n'
      echo "Go benchmarks: \`make bench\` runs \`go test -run '^\$' -bench . -benchmem ./...\`, then"
      echo 'the scripts that write the sections below.'
    } >"$work/doc.md"
  else
    cp -- "$DOC" "$work/doc.md"
  fi
  if grep -qx '<!-- bench-maintenance:start -->' "$work/doc.md"; then
    awk -v f="$work/section.md" '
      $0 == "<!-- bench-maintenance:start -->" { while ((getline l < f) > 0) print l; skip = 1; next }
      $0 == "<!-- bench-maintenance:end -->" { skip = 0; next }
      !skip' "$work/doc.md" >"$work/doc.new"
  else
    { cat "$work/doc.md"; printf '\n'; cat "$work/section.md"; } >"$work/doc.new"
  fi
  cat "$work/doc.new" >"$DOC"
  log "results written to $DOC"
fi
