#!/usr/bin/env bash
# Runs the examples of the documentation exactly as a reader would: every ```sh and
# ```python block of each FILE (default: README.md docs/API.md), in order, top to bottom,
# against a fresh local cluster per file, from a directory laid out like the repository
# root (scripts/, bin/, and .cluster/ = a temporary CNM_DIR, so a developer's own .cluster
# is left alone).
#
#   scripts/readme-walk.sh [FILE...]
#
# Fences:
#   ```sh       run with bash (set -euo pipefail; all blocks of a file share one shell, so
#               variables carry over); curl fails on an HTTP status of 400 or more
#   ```python   run with python3 (requests) in the same directory
#   ```text, ```console, ```json
#               illustrations, not run (commands for other hosts, example answers)
# Any other fence fails the walk, so that no example is skipped by accident. A block right
# after the line <!-- readme-walk: setup --> is the set-up block (make run, make test): it
# is checked to hold only those, and stands for the fresh cluster the walk starts itself
# (running make test from inside make test would recurse).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
PROG=readme-walk
work=""
ran=0

say() { printf '%s: %s\n' "$PROG" "$*"; }

die() {
  printf '%s: FAIL %s\n' "$PROG" "$*" >&2
  exit 1
}

stop_cluster() {
  if [[ -n $work && -d $work/.cluster ]]; then
    (cd "$work" && scripts/cluster.sh down --purge >/dev/null 2>&1) || true
  fi
  if [[ -n $work ]]; then rm -rf -- "$work"; fi
  work=""
}

finish() {
  local rc=$? f
  trap - EXIT INT TERM
  if (( rc != 0 )) && [[ -n $work ]]; then
    for f in "$work"/.cluster/node-*.log; do
      [[ -f $f ]] || continue
      printf -- '--- last 15 lines of %s ---\n' "$f" >&2
      tail -n 15 "$f" >&2
    done
  fi
  stop_cluster
  if (( rc == 0 )); then say "ok: $ran blocks ran"; else say "FAILED after $ran blocks"; fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# extract FILE DIR: write each block of FILE to DIR/NNN.sh or DIR/NNN.py and list them,
# one "NNN KIND LINE" per block, in DIR/blocks (KIND: sh, python, setup).
extract() {
  awk -v dir="$2" -v file="$1" '
    function bad(msg) { printf "%s:%d: %s\n", file, NR, msg > "/dev/stderr"; failed = 1; exit 1 }
    /^<!-- readme-walk: setup -->$/ { setup = 1; next }
    !open && /^[[:space:]]+```/ { bad("indented fence: the walk reads only fences at the start of a line") }
    !open && /^```/ {
      lang = substr($0, 4)
      if (lang == "sh" || lang == "python") {
        n++
        kind = lang
        if (setup) {
          if (lang != "sh") bad("the set-up marker must precede a ```sh block")
          kind = "setup"
        }
        out = sprintf("%s/%03d.%s", dir, n, lang == "python" ? "py" : "sh")
        printf "%03d %s %d\n", n, kind, NR + 1 > (dir "/blocks")
        printf "" > out
      } else if (lang == "text" || lang == "console" || lang == "json") {
        out = ""
      } else {
        bad("fence \"" $0 "\": use ```sh or ```python for what the walk runs, ```text or ```console for illustrations")
      }
      open = 1; setup = 0; next
    }
    open && /^```$/ { open = 0; if (out != "") close(out); out = ""; next }
    open { if (out != "") print > out; next }
    setup && !/^[[:space:]]*$/ { bad("the set-up marker must be followed by a ```sh block") }
    END { if (!failed && open) bad("unclosed fence") }
  ' "$1" || return 1
  [[ -f $2/blocks ]] || : >"$2/blocks"
}

# check_setup FILE BLOCK: the set-up block holds make run and make test, nothing else.
check_setup() {
  local line cmd seen=""
  while IFS= read -r line; do
    cmd=${line%%#*}
    cmd=$(xargs <<<"$cmd")
    case $cmd in
      "") ;;
      "make run" | "make test") seen+="[$cmd]" ;;
      *) die "$1: the set-up block may hold only make run and make test, found: $line" ;;
    esac
  done <"$2"
  [[ $seen == *"[make run]"* ]] || die "$1: the set-up block lacks make run"
}

# walk FILE: run FILE's blocks against a fresh cluster.
walk() {
  local file=$1 blocks n kind line script="" count=0
  [[ -f $file ]] || die "no file $file"
  work=$(mktemp -d "${TMPDIR:-/tmp}/cnm-walk.XXXXXX")
  blocks=$work/.blocks
  mkdir "$blocks"
  extract "$file" "$blocks" || die "$file: cannot extract its blocks"
  [[ -s $blocks/blocks ]] || die "$file has no sh or python block"

  ln -s "$root/scripts" "$work/scripts"
  ln -s "$root/bin" "$work/bin"
  say "$file: a fresh cluster in $work/.cluster (what make run starts)"
  (cd "$work" && scripts/cluster.sh up 3 >"$work/.up.log" 2>&1) || {
    cat "$work/.up.log" >&2
    die "$file: scripts/cluster.sh up 3"
  }

  # One bash for all sh blocks, fed block by block, so that variables carry over. curl is
  # wrapped so that an HTTP error status fails the command.
  script=$work/.walk.sh
  {
    # shellcheck disable=SC2016 # the function is written for the walk's shell to expand
    printf '%s\n' 'set -euo pipefail' \
      'curl() { command curl -sS --fail-with-body "$@"; local rc=$?; echo; return "$rc"; }'
    while read -r n kind line; do
      count=$((count + 1))
      case $kind in
        setup)
          check_setup "$file" "$blocks/$n.sh"
          printf 'echo "%s: %s:%d: set-up block (make run): the cluster is up"\n' "$PROG" "$file" "$line"
          ;;
        sh)
          printf 'echo "%s: %s:%d: sh block"\n' "$PROG" "$file" "$line"
          cat "$blocks/$n.sh"
          ;;
        python)
          printf 'echo "%s: %s:%d: python block"\n' "$PROG" "$file" "$line"
          printf 'python3 %q\n' "$blocks/$n.py"
          ;;
        *) die "$file: block $n of unknown kind $kind" ;;
      esac
      printf 'echo "%s: %s:%d: ok"\n' "$PROG" "$file" "$line"
    done <"$blocks/blocks"
  } >"$script"
  (( count == $(wc -l <"$blocks/blocks") )) || die "$file: $count of $(wc -l <"$blocks/blocks") blocks prepared"
  (
    cd "$work"
    unset CNM_DIR CNM_BIN CNM_URL CNM_PASSWORD CNM_ADMIN_PASSWORD CNM_USER CNM_CA REQUESTS_CA_BUNDLE
    bash "$script"
  ) || die "$file: a command failed (the line above the last ok names its block)"
  ran=$((ran + count))
  stop_cluster
}

command -v python3 >/dev/null || die "python3 is needed (make deps installs it)"
python3 -c 'import requests' 2>/dev/null || die "python3 requests is needed (make deps installs it)"
make --no-print-directory build >/dev/null || die "make build"
files=("$@")
(( ${#files[@]} )) || files=(README.md docs/API.md)
for f in "${files[@]}"; do walk "$f"; done
