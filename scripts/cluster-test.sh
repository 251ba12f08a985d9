#!/usr/bin/env bash
# Tests of scripts/cluster.sh and of the repository's hygiene (make test runs it):
#   - status shows an action's progress with one decimal;
#   - start_node waits for the last exec of the started process;
#   - make deps waits for another apt process instead of failing on the dpkg lock;
#   - no built binary is committed, and the build outputs are ignored;
#   - no cnmd command line holds the admin password;
#   - a node the cluster removed comes back with `start I` (its old data dir set aside),
#     and `up N` joins new nodes through any live member, not only node 1.
# Nodes live in a temporary CNM_DIR and are always stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
cluster=$root/scripts/cluster.sh
passed=0
failed=0
CNM_DIR=""

ok() {
  passed=$((passed + 1))
  printf 'cluster-test: ok   %s\n' "$*"
}

fail() {
  failed=$((failed + 1))
  printf 'cluster-test: FAIL %s\n' "$*" >&2
  exit 1
}

finish() {
  local rc=$? f
  trap - EXIT INT TERM
  if [[ -n $CNM_DIR && -d $CNM_DIR ]]; then
    if (( rc != 0 )); then
      for f in "$CNM_DIR"/node-*.log; do
        [[ -f $f ]] || continue
        printf -- '--- last 20 lines of %s ---\n' "$f" >&2
        tail -n 20 "$f" >&2
      done
    fi
    "$cluster" down >/dev/null 2>&1 || true
    rm -rf -- "$CNM_DIR"
  fi
  (( rc == 0 )) || (( failed > 0 )) || failed=1
  printf 'cluster-test: %d passed, %d failed\n' "$passed" "$failed"
  (( failed == 0 )) || exit 1
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- without a cluster -------------------------------------------------------------------

# cluster.sh defines its functions only when sourced; a subshell keeps them apart.
got=$(
  # shellcheck source=/dev/null
  source "$cluster"
  for p in 66.66666666666667 0 100 12.5 33.349999 1e-05 -; do printf '%s|' "$(format_progress "$p")"; done
)
[[ $got == '66.7|0.0|100.0|12.5|33.3|0.0|-|' ]] || fail "format_progress gives '$got'"
ok "status formats progress with one decimal (66.66666666666667 -> 66.7)"

# start_node returns only once the started process is the binary itself: before, node_pid
# could read the empty command line of a process between two execs and call it exited.
got=$(
  # shellcheck source=/dev/null
  source "$cluster"
  bash -c 'sleep 0.3; exec /bin/sleep 5' </dev/null >/dev/null 2>&1 &
  pid=$!
  wait_exec 0 "$pid" /bin/sleep
  tr '\0' ' ' <"/proc/$pid/cmdline"
  kill "$pid"
)
[[ $got == '/bin/sleep 5 ' ]] || fail "wait_exec returned while the process was '$got'"
ok "start_node waits until the process has become cnmd"

# Every apt-get that make deps would run waits for the dpkg lock. TOOLS names a missing
# command so that the install branch is shown.
deps=$(make --no-print-directory -n deps TOOLS=cnm-no-such-tool GO=true)
n=0
while IFS= read -r line; do
  [[ $line == *apt-get* ]] || continue
  n=$((n + 1))
  [[ $line == *"-o DPkg::Lock::Timeout="* ]] || fail "make deps runs apt-get without a lock timeout: $line"
done < <(grep -o 'apt-get [^;]*' <<<"$deps")
(( n >= 2 )) || fail "make -n deps shows $n apt-get commands, want the update and the install: $deps"
ok "make deps: $n apt-get commands, each waits for the dpkg lock"

# No committed file is an executable binary, and the build's outputs are ignored.
while IFS= read -r -d '' f; do
  [[ -f $f ]] || continue
  if [[ $(head -c 4 -- "$f" | od -An -c | tr -d ' ') == 177ELF ]]; then
    fail "committed binary: $f"
  fi
done < <(git ls-files -z)
for f in cnmctl cnmd bin/cnmd; do
  git check-ignore -q -- "$f" || fail "$f is not in .gitignore"
done
ok "no binary is committed; cnmctl, cnmd and bin/ are ignored"

# Nothing in the repository points outside it.
if hits=$(git grep -n -e '\.\./shared' -- ':!scripts/cluster-test.sh'); then
  fail "references to the folder beside the repository: $hits"
fi
ok "no file refers to the folder beside the repository"

# --- a real cluster ---------------------------------------------------------------------

ADMIN_USER=admin@cnm.local
CNM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cnm-cluster-test.XXXXXX")
export CNM_DIR
export CNM_BIN=${CNM_BIN:-$root/bin}
unset CNM_ADMIN_PASSWORD
make --no-print-directory build >/dev/null || fail "make build"

"$cluster" up 3 >/dev/null || fail "cluster.sh up 3"
pw=$(<"$CNM_DIR/admin-password")
ok "cluster.sh up 3"

# no_password_on_command_lines: no cnmd of this cluster shows the password to ps.
no_password_on_command_lines() {
  local f pid seen=0
  for f in "$CNM_DIR"/node-*.pid; do
    pid=$(<"$f")
    [[ -r /proc/$pid/cmdline ]] || continue
    seen=$((seen + 1))
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pw"; then
      fail "the admin password is on the command line of pid $pid ($f)"
    fi
  done
  (( seen >= 3 )) || fail "found $seen running cnmd processes, want at least 3"
}
no_password_on_command_lines
ok "no cnmd command line holds the admin password"

# call METHOD NODE PATH [BODY]: sets status and body.
status=""
body=""
call() {
  local resp args=(-sk --connect-timeout 1 --max-time 10 -u "$ADMIN_USER:$pw" -X "$1" -w '\n%{http_code}')
  if [[ -n ${4-} ]]; then args+=(--data-binary "$4"); fi
  resp=$(curl "${args[@]}" "https://127.0.0.$2:9443$3") || true
  status=${resp##*$'\n'}
  body=${resp%$'\n'*}
}

# wait_removed NODE VIA [EXITED]: poll VIA until the remove of NODE has completed and, with
# EXITED=true, NODE's cnmd has exited.
wait_removed() {
  local node=$1 via=$2 exited=${3:-true} deadline=$((SECONDS + 60)) st pid
  pid=$(<"$CNM_DIR/node-$node.pid")
  while :; do
    call GET "$via" "/v1/nodes/$node/actions/remove"
    st=""
    if [[ $status == 200 ]]; then st=$(jq -r .status <<<"$body"); fi
    if [[ $st == completed ]] && { ! $exited || ! kill -0 "$pid" 2>/dev/null; }; then return 0; fi
    [[ $st != failed && $st != aborted && $st != cancelled ]] || fail "remove of node $node $st: $body"
    (( SECONDS < deadline )) || fail "remove of node $node not done within 60s (status '$st', pid $pid)"
    sleep 0.2
  done
}

# Remove node 1 (the node the cluster was created on, and its first leader).
call POST 2 /v1/nodes/1/actions/remove '{}'
[[ $status == 200 ]] || fail "POST remove of node 1 through node 2: HTTP $status $body"
# start 1 right away: the removed node's cnmd may not have exited yet.
wait_removed 1 2 false
ok "node 1 removed"

out=$("$cluster" start 1) || fail "cluster.sh start 1: $out"
[[ $out == *"node 1 was removed"* ]] || fail "cluster.sh start 1 does not say the node was removed: $out"
aside=("$CNM_DIR"/node-1.removed-*)
(( ${#aside[@]} == 1 )) || fail "no node-1.removed-* data dir kept in $CNM_DIR"
[[ -d $CNM_DIR/node-1 ]] || fail "cluster.sh start 1 left no new node-1 data dir"
# The rejoined node keeps running and is an active member.
call GET 3 /v1/nodes
[[ $status == 200 && $(jq -r '.[] | select(.uid == 1) | .status' <<<"$body") == active ]] ||
  fail "node 1 is not an active member after cluster.sh start 1: HTTP $status $body"
call GET 1 /v1/cluster
[[ $status == 200 ]] || fail "rejoined node 1 does not answer GET /v1/cluster: HTTP $status $body"
ok "cluster.sh start 1 set the old data dir aside and rejoined node 1 (${aside[0]##*/})"

# Remove node 1 again, with cnmctl at its default endpoints (node 1 first): it follows
# the removal through node 1's exit and reports it completed.
out=$(CNM_PASSWORD=$pw "$CNM_BIN/cnmctl" -progress none -o json action 1 remove 2>&1) ||
  fail "cnmctl action 1 remove (default endpoints): $out"
[[ $(jq -r .status <<<"$out" 2>/dev/null) == completed ]] || fail "cnmctl action 1 remove printed: $out"
ok "cnmctl action 1 remove through node 1 itself reports completed"
wait_removed 1 3 true
# Then grow the cluster: up 4 rejoins node 1 and adds node 4, both through a live member.
out=$("$cluster" up 4) || fail "cluster.sh up 4 after removing node 1: $out"
call GET 2 /v1/nodes
[[ $status == 200 && $(jq -c '[.[] | select(.status == "active") | .uid] | sort' <<<"$body") == '[1,2,3,4]' ]] ||
  fail "after up 4, /v1/nodes is not nodes 1-4 active: HTTP $status $body"
aside=("$CNM_DIR"/node-1.removed-*)
(( ${#aside[@]} == 2 )) || fail "want two node-1.removed-* dirs after the second removal, have ${#aside[@]}"
no_password_on_command_lines
ok "cluster.sh up 4 rejoined removed node 1 and added node 4 through live members"

# status shows the remove's progress with one decimal.
out=$("$cluster" status) || fail "cluster.sh status: $out"
grep -Eq '^ +1 +remove +completed +100\.0 ' <<<"$out" || fail "cluster.sh status does not show the remove at 100.0: $out"
if grep -Eq '[0-9]\.[0-9]{2,}' <<<"$(sed -n '/^actions:/,$p' <<<"$out")"; then
  fail "cluster.sh status shows progress with more than one decimal: $out"
fi
ok "cluster.sh status shows the remove's progress as 100.0"

"$cluster" down --purge >/dev/null || fail "cluster.sh down --purge"
[[ ! -e $CNM_DIR ]] || fail "cluster.sh down --purge left $CNM_DIR"
ok "cluster.sh down --purge (set-aside data dirs included)"
