#!/usr/bin/env bash
# hold-1000.sh - the README's 1000-call figure and chart, in one command:
#   perf/results/hold-1000.sh            (after cargo build --release -p control -p perf)
# Starts tandemd with hold-1000.toml (SIP on 127.0.0.1:15060, one socket-backend worker on
# core 0, RTP 40000-49999), holds 1000 G.711 calls to the echo extension 600 for 60 s each
# (50 new calls/s), writes hold-1000.json and hold-1000.svg beside this script, stops tandemd.
# Loopback only; the run is bounded (about 90 s).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${BIN:-$HERE/../../target/release}"
mkdir -p /tmp/tandem-hold-1000
"$BIN/tandemd" --config "$HERE/hold-1000.toml" >/tmp/tandem-hold-1000/tandemd.out \
    2>/tmp/tandem-hold-1000/tandemd.log &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
sleep 1
"$BIN/tandem-bench" hold --target 127.0.0.1:15060 --dial 600 --calls 1000 --rate 50 \
    --duration 60 --max-time 60 --pid "$PID" --quiet \
    --json "$HERE/hold-1000.json" --chart "$HERE/hold-1000.svg"
