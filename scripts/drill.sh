#!/usr/bin/env bash
# Failure drill on real cnmd processes: see docs/RELIABILITY.md.
#   scripts/drill.sh [-n ITERATIONS] [-nodes N] [-clients N] [-seed S] [-nemeses a,b] [-keep]
# Partitions need root (iptables); without it those nemeses are skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go build -o bin/ ./cmd/...
exec go run ./scripts/drill "$@"
