#!/usr/bin/env bash
# Smoke test of real cnmd processes: a 3-node cluster on the default addresses refuses a
# copy of a node's data dir under another identity, survives the loss of its leader, takes
# writes through every survivor, takes the old leader back as a follower, and keeps the
# demo database's data through maintenance of its endpoint's node (redis shards). Nodes
# live in a temporary CNM_DIR and are always stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
cluster=$root/scripts/cluster.sh
CNM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cnm-smoke.XXXXXX")
export CNM_DIR
export CNM_BIN=${CNM_BIN:-$root/bin}
readonly ADMIN_USER=admin@cnm.local
passed=0
failed=0
pw=""
ctl_err=""

ok() {
  passed=$((passed + 1))
  printf 'smoke: ok   %s\n' "$*"
}

fail() {
  failed=$((failed + 1))
  printf 'smoke: FAIL %s\n' "$*" >&2
  exit 1
}

finish() {
  local rc=$? f
  trap - EXIT INT TERM
  if (( rc != 0 )); then
    (( failed > 0 )) || failed=1
    for f in "$CNM_DIR"/node-*.log; do
      [[ -f $f ]] || continue
      printf -- '--- last 20 lines of %s ---\n' "$f" >&2
      tail -n 20 "$f" >&2
    done
  fi
  "$cluster" down --purge >/dev/null 2>&1 || true
  rm -rf -- "$CNM_DIR"
  if [[ -n $ctl_err ]]; then rm -f -- "$ctl_err"; fi
  printf 'smoke: %d passed, %d failed\n' "$passed" "$failed"
  (( failed == 0 )) || exit 1
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# call METHOD NODE PATH [BODY]: one API request to node NODE as the admin; sets status, body.
status=""
body=""
call() {
  local method=$1 node=$2 path=$3 data=${4-} resp
  local args=(-sk --connect-timeout 1 --max-time 10 -u "$ADMIN_USER:$pw" -X "$method" -w '\n%{http_code}')
  if [[ -n $data ]]; then args+=(-H 'Content-Type: application/json' --data-binary "$data"); fi
  resp=$(curl "${args[@]}" "https://127.0.0.$node:9443$path") || true
  status=${resp##*$'\n'}
  body=${resp%$'\n'*}
}

now_ms() { date +%s%3N; }

make --no-print-directory build || fail "make build"
ok "build"

"$cluster" up 3 || fail "cluster.sh up 3"
pw=$(<"$CNM_DIR/admin-password")
ok "cluster.sh up 3"

call GET 2 /v1/nodes
[[ $status == 200 ]] || fail "GET /v1/nodes through node 2: HTTP $status $body"
count=$(jq 'length' <<<"$body" 2>/dev/null) || count="?"
[[ $count == 3 ]] || fail "GET /v1/nodes through node 2 lists $count nodes, want 3: $body"
ok "GET /v1/nodes through node 2 lists 3 nodes"

# A data dir belongs to one node: a copy of node 2's, started under another uid or on other
# addresses, is refused at once with one line and a non-zero exit, and left as it was.
copy=$CNM_DIR/node-2-copy
# Files the running node replaces meanwhile may be missing from the copy; cnmd must refuse
# before it reads more than the identity record and the certificates.
cp -a "$CNM_DIR/node-2" "$copy" 2>/dev/null || true
[[ -f $copy/identity.json ]] || fail "node 2's data dir has no identity.json"
digest() { find "$1" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum; }
before=$(digest "$copy")
for bad in "--uid 5 --api-addr 127.0.0.2:9443 --raft-addr 127.0.0.2:9444" \
  "--uid 2 --api-addr 127.0.0.9:9443 --raft-addr 127.0.0.9:9444"; do
  read -r -a flags <<<"$bad"
  if out=$(timeout 20 "$CNM_BIN/cnmd" --data-dir "$copy" "${flags[@]}" 2>&1); then
    fail "cnmd on a copy of node 2's data dir with $bad exited 0: $out"
  fi
  [[ $(wc -l <<<"$out") == 1 && $out == *"refusing to start"* ]] ||
    fail "cnmd on a copy of node 2's data dir with $bad: want one line refusing to start, got: $out"
  [[ $(digest "$copy") == "$before" ]] || fail "cnmd with $bad changed the data dir it refused"
  ok "cnmd refuses node 2's data dir with $bad: $out"
done
rm -rf -- "$copy"

old=$("$cluster" leader) || fail "cluster.sh leader"
"$cluster" kill "$old" || fail "cluster.sh kill $old"
ok "killed leader node $old"

survivors=()
for i in 1 2 3; do
  if (( i != old )); then survivors+=("$i"); fi
done

# A new leader: every survivor names the same node, and it is not the old one.
start=$(now_ms)
new=""
while :; do
  seen=""
  for i in "${survivors[@]}"; do
    call GET "$i" '/v1/cluster?stale=true'
    leader=""
    if [[ $status == 200 ]]; then leader=$(jq -r '.leader // 0' <<<"$body" 2>/dev/null) || true; fi
    if [[ $leader =~ ^[1-9][0-9]*$ && $leader != "$old" && ( -z $seen || $leader == "$seen" ) ]]; then
      seen=$leader
    else
      seen=""
      break
    fi
  done
  if [[ -n $seen ]]; then new=$seen; break; fi
  (( $(now_ms) - start < 5000 )) || fail "no new leader within 5s of killing node $old"
  sleep 0.1
done
ok "node $new leads $(( $(now_ms) - start )) ms after node $old was killed"

n=0
for i in "${survivors[@]}"; do
  n=$((n + 1))
  email=smoke@cnm.local
  (( n == 1 )) || email=smoke$n@cnm.local
  call POST "$i" /v1/users \
    "{\"email\":\"$email\",\"password\":\"smoke-password-1\",\"name\":\"smoke\",\"role\":\"db_viewer\"}"
  [[ $status == 200 ]] || fail "POST /v1/users ($email) through node $i: HTTP $status $body"
  ok "POST /v1/users ($email) through node $i"
done

"$cluster" start "$old" || fail "cluster.sh start $old"
deadline=$((SECONDS + 20))
while :; do
  call GET "$old" '/v1/cluster?stale=true'
  role=""
  if [[ $status == 200 ]]; then
    role=$(jq -r --argjson uid "$old" '.members[]? | select(.uid == $uid) | .role' <<<"$body" 2>/dev/null) || true
  fi
  [[ $role != follower ]] || break
  (( SECONDS < deadline )) ||
    fail "restarted node $old does not see itself as a follower within 20s (last: HTTP $status $body)"
  sleep 0.1
done
ok "restarted node $old rejoined as a follower"

# The restarted follower's /metrics report it a follower of another node. Polled: an
# election may still be settling.
deadline=$((SECONDS + 10))
while :; do
  call GET "$old" /metrics
  state=""
  mleader=""
  if [[ $status == 200 ]]; then
    state=$(grep '^cnm_raft_state{.*} 1$' <<<"$body" | sed 's/.*state="\([a-z]*\)".*/\1/') || true
    mleader=$(grep '^cnm_raft_leader_uid ' <<<"$body" | cut -d' ' -f2) || true
  fi
  [[ $state == follower && $mleader =~ ^[1-9]$ && $mleader != "$old" ]] && break
  (( SECONDS < deadline )) ||
    fail "GET /metrics on node $old: HTTP $status, state '$state', leader '$mleader'"
  sleep 0.1
done
ok "GET /metrics on node $old: follower of node $mleader"

# cnmctl starts maintenance on the rejoined node through another node and follows it to the end.
via=${survivors[0]}
ctl_err=$(mktemp "${TMPDIR:-/tmp}/cnm-smoke-cnmctl.XXXXXX")
for action in maintenance_on maintenance_off; do
  out=$(CNM_PASSWORD=$pw "$CNM_BIN/cnmctl" -url "https://127.0.0.$via:9443" -progress lines -o json \
    action "$old" "$action" 2>"$ctl_err") ||
    fail "cnmctl action $old $action: $(cat "$ctl_err")"
  last=$(tail -n 1 "$ctl_err")
  [[ $(jq -r .status <<<"$out") == completed && $last == completed*100.0%* ]] ||
    fail "cnmctl action $old $action ended with '$last': $out"
  ok "cnmctl action $old $action through node $via: $(wc -l <"$ctl_err") progress lines, completed"
done

# Real data (redis shard backend): keys written through the demo database's endpoint survive
# maintenance_on of the endpoint's node, which leaves no shard process there, puts every moved
# shard in its role on its new node and moves the endpoint; maintenance_off brings shards,
# roles and the endpoint back.
call GET "$via" /v1/bdbs/1
[[ $status == 200 ]] || fail "GET /v1/bdbs/1: HTTP $status $body"
ep_node=$(jq -r '.endpoints[0].node_uid' <<<"$body")
[[ $ep_node =~ ^[1-3]$ ]] || fail "the demo database's endpoint has no node: $body"
ep="127.0.0.$ep_node"
for (( k = 0; k < 200; k++ )); do printf 'SET smoke:%d value-%d\n' "$k" "$k"; done |
  redis-cli -h "$ep" -p 12001 >"$ctl_err" || fail "redis-cli SET through the endpoint $ep:12001"
[[ $(grep -c '^OK$' "$ctl_err") == 200 ]] || fail "200 SETs through $ep:12001 answered: $(sort "$ctl_err" | uniq -c)"
ok "200 keys written through the endpoint $ep:12001"

# readback HOST: every key back through the endpoint at HOST:12001 with its value.
readback() {
  local got
  got=$(for (( k = 0; k < 200; k++ )); do printf 'GET smoke:%d\n' "$k"; done | redis-cli -h "$1" -p 12001) ||
    fail "redis-cli GET through $1:12001"
  [[ $got == "$(for (( k = 0; k < 200; k++ )); do printf 'value-%d\n' "$k"; done | head -c -1)" ]] ||
    fail "reading the 200 keys back through $1:12001 gave: $(head -c 300 <<<"$got")"
}

# shard_roles [NODE]: "uid role node" of every shard, sorted; NODE limits it to that node's.
shard_roles() {
  call GET "$via" /v1/shards
  [[ $status == 200 ]] || fail "GET /v1/shards: HTTP $status $body"
  jq -r --arg n "${1:-}" '.[] | select($n == "" or .node_uid == $n) | "\(.uid) \(.role) \(.node_uid)"' <<<"$body" | sort -n
}

# roles_on_processes: each shard's process, on its node, has the role the API gives it.
roles_on_processes() {
  local uid role node port live
  while read -r uid role node; do
    port=$(jq -r .port "$CNM_DIR/node-$node/shards/$uid/shard.json" 2>/dev/null) ||
      fail "shard $uid has no record in node $node's data dir"
    live=$(redis-cli -h "127.0.0.$node" -p "$port" INFO replication | tr -d '\r' | sed -n 's/^role://p')
    [[ $live == "$role" ]] || fail "shard $uid on node $node (port $port) runs as '$live', the API says $role"
  done < <(shard_roles)
}

before_roles=$(shard_roles "$ep_node")
[[ -n $before_roles ]] || fail "node $ep_node holds no shard of the demo database"
roles_on_processes
out=$(CNM_PASSWORD=$pw "$CNM_BIN/cnmctl" -url "https://127.0.0.$via:9443" -progress none -o json \
  action "$ep_node" maintenance_on '{}' 2>"$ctl_err") || fail "maintenance_on $ep_node: $(cat "$ctl_err") $out"
if pgrep -af "redis-server $ep:" >"$ctl_err"; then fail "redis-server processes left on node $ep_node: $(cat "$ctl_err")"; fi
[[ -z $(shard_roles "$ep_node") ]] || fail "the API still puts shards on node $ep_node: $(shard_roles "$ep_node")"
roles_on_processes
call GET "$via" /v1/bdbs/1
moved=$(jq -r '.endpoints[0].addr[0]' <<<"$body")
[[ $moved != "$ep" ]] || fail "the endpoint stayed on node $ep_node in maintenance: $body"
readback "$moved"
ok "maintenance_on $ep_node: no shard process left there, roles hold on the new nodes, all 200 keys read back through $moved:12001"

out=$(CNM_PASSWORD=$pw "$CNM_BIN/cnmctl" -url "https://127.0.0.$via:9443" -progress none -o json \
  action "$ep_node" maintenance_off '{}' 2>"$ctl_err") || fail "maintenance_off $ep_node: $(cat "$ctl_err") $out"
[[ $(shard_roles "$ep_node") == "$before_roles" ]] ||
  fail "after maintenance_off node $ep_node holds $(shard_roles "$ep_node" | tr '\n' ';'), before it held $(tr '\n' ';' <<<"$before_roles")"
roles_on_processes
readback "$ep"
ok "maintenance_off $ep_node: its shards and roles are back, and all 200 keys read back through $ep:12001"

"$cluster" down --purge || fail "cluster.sh down --purge"
[[ ! -e $CNM_DIR ]] || fail "cluster.sh down --purge left $CNM_DIR"
if pgrep -af 'redis-server 127[.]0[.]0[.][123]:' >"$ctl_err"; then fail "cluster.sh down left shard processes: $(cat "$ctl_err")"; fi
ok "cluster.sh down --purge (no shard process left)"
