#!/usr/bin/env bash
# scale.sh — policy writes, create/delete, memory and start-up of the real
# `usher serve` with 1, 1,000 and 10,000 services (bench/scale/main.go).
#
# Environment:
#   SCALE_SIZES   comma-separated numbers of services (default 1,1000,10000)
#   SCALE_WRITES  setIamPolicy calls per size (default 200)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/usher-scale.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
go build -o "$WORK/usher" ./cmd/usher
go build -o "$WORK/scale" ./bench/scale
"$WORK/scale" --usher "$WORK/usher" --work "$WORK/runs" \
	--sizes "${SCALE_SIZES:-1,1000,10000}" --writes "${SCALE_WRITES:-200}"
