#!/usr/bin/env bash
# Side-by-side RTP relay throughput: rtpengine (userspace), the plain
# recvmmsg/sendmmsg forwarder (udpfwd), Tandem's socket backend and Tandem's
# io_uring backend, all driven by the rtpengine anchor's C generator (rtpgen)
# through the same 1000 calls (2000 streams) of 20 ms G.711-shaped packets,
# at each per-stream rate in RATES (50 = real G.711 rate).
#
# Relay pinned to RELAY_CPU, generator to GEN_CPU. Every run is bounded
# (WARMUP + DURATION seconds plus setup). Prints one markdown table:
# forwarded packets/s, relay CPU ns per forwarded packet (schedstat, and
# utime+stime from /proc/PID/stat), loss, p99 one-way latency and p99 added
# over the `direct` row (generator -> sink without a relay: the loopback floor).
#
# Usage: scripts/relay-bench.sh            (full: RATES="50 100 150", 3 s runs)
#        QUICK=1 scripts/relay-bench.sh    (validation: one rate, 1 s runs)
# Env: CALLS RATES DURATION WARMUP RELAY_CPU GEN_CPU TARGETS WORK ANCHOR
#
# The anchor harness lives in ../shared/anchors/rtpengine (read-only); it is
# used in place through symlinks in WORK, with its C tools compiled into WORK.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ANCHOR=${ANCHOR:-$ROOT/../shared/anchors/rtpengine}
CALLS=${CALLS:-1000}
if [[ -n "${QUICK:-}" ]]; then
    RATES=${RATES:-50}
    DURATION=${DURATION:-1}
    WARMUP=${WARMUP:-0.5}
else
    RATES=${RATES:-50 100 150}
    DURATION=${DURATION:-3}
    WARMUP=${WARMUP:-1}
fi
RELAY_CPU=${RELAY_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
TARGETS=${TARGETS:-direct rtpengine udpfwd socket uring}
WORK=${WORK:-$(mktemp -d /tmp/relay-bench.XXXXXX)}

if [[ ! -f "$ANCHOR/rtpgen.c" ]]; then
    echo "relay-bench: anchor harness not found at $ANCHOR" >&2
    exit 2
fi
mkdir -p "$WORK/build"
for f in rtpbench.py rtpengine-loopback.conf; do ln -sf "$ANCHOR/$f" "$WORK/$f"; done
CFLAGS="-O2 -Wall -Wno-unused-parameter -Wno-sign-compare"
cc $CFLAGS -o "$WORK/build/rtpgen" "$ANCHOR/rtpgen.c" -lm
cc $CFLAGS -o "$WORK/build/udpfwd" "$ANCHOR/udpfwd.c"
(cd "$ROOT" && cargo build -q --release -p perf --bin tandem-relay-bench)
TANDEM="$ROOT/target/release/tandem-relay-bench"
RB="python3 $WORK/rtpbench.py"
# 4 sockets per call for Tandem (RTP + RTCP per leg), 3-4 for rtpengine.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

RELAY_PID=""
stop_relay() {
    if [[ -n "$RELAY_PID" ]]; then
        kill "$RELAY_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$RELAY_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=""
    fi
}
trap stop_relay EXIT

NOTES="$WORK/notes.txt"
: > "$NOTES"

# start_TARGET: start the relay (sets RELAY_PID) and write $WORK/TARGET.map.
start_direct() { $RB mkmap --calls "$CALLS" --out "$WORK/direct.map" --mode direct; }

start_udpfwd() {
    $RB mkmap --calls "$CALLS" --out "$WORK/udpfwd.map" --relay-base 12000
    taskset -c "$RELAY_CPU" "$WORK/build/udpfwd" --map "$WORK/udpfwd.map" --lifetime 600 \
        > "$WORK/udpfwd.log" 2>&1 &
    RELAY_PID=$!
    sleep 1.5
    kill -0 "$RELAY_PID" 2>/dev/null
}

start_rtpengine() {
    local bin
    bin=$(command -v rtpengine || true)
    if [[ -z "$bin" ]]; then
        echo "rtpengine: not installed (apt-get install rtpengine-daemon)" >> "$NOTES"
        return 1
    fi
    taskset -c "$RELAY_CPU" "$bin" --config-file="$WORK/rtpengine-loopback.conf" \
        --num-threads=1 > "$WORK/rtpengine.log" 2>&1 &
    RELAY_PID=$!
    for _ in $(seq 50); do
        if timeout 2 $RB ng-ping > /dev/null 2>&1; then break; fi
        sleep 0.2
    done
    if ! kill -0 "$RELAY_PID" 2>/dev/null; then
        echo "rtpengine: exited at start: $(tail -3 "$WORK/rtpengine.log" | tr '\n' ' ')" >> "$NOTES"
        return 1
    fi
    $RB ng-setup --calls "$CALLS" --out "$WORK/rtpengine.map" > /dev/null
}

start_tandem() { # backend
    taskset -c "$RELAY_CPU" "$TANDEM" relay --backend "$1" --core "$RELAY_CPU" \
        --calls "$CALLS" --map "$WORK/$1.map" --lifetime 600 > "$WORK/$1.out" 2> "$WORK/$1.log" &
    RELAY_PID=$!
    for _ in $(seq 300); do
        grep -q '^ready' "$WORK/$1.out" 2>/dev/null && return 0
        kill -0 "$RELAY_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "tandem $1: did not start: $(tail -3 "$WORK/$1.log" | tr '\n' ' ')" >> "$NOTES"
    return 1
}
start_socket() { start_tandem socket; }
start_uring() { start_tandem uring; }

for rate in $RATES; do
    for t in $TARGETS; do
        echo "== $t, $rate pps/stream ($((CALLS * 2)) streams)" >&2
        # A fresh relay per trial: an overloaded rtpengine stops reading sockets.
        if ! "start_$t"; then stop_relay; continue; fi
        pidarg=()
        [[ -n "$RELAY_PID" ]] && pidarg=(--pid "$RELAY_PID")
        if ! $RB run --map "$WORK/$t.map" --rate "$rate" --duration "$DURATION" \
            --warmup "$WARMUP" --gen-cpu "$GEN_CPU" "${pidarg[@]}" \
            > "$WORK/$t-$rate.json" 2> "$WORK/$t-$rate.err"; then
            echo "$t @ $rate: generator failed: $(tail -2 "$WORK/$t-$rate.err" | tr '\n' ' ')" >> "$NOTES"
        fi
        if [[ "$t" == "rtpengine" ]]; then $RB ng-delete --map "$WORK/rtpengine.map" > /dev/null 2>&1 || true; fi
        stop_relay
    done
done

python3 - "$WORK" "$RATES" "$TARGETS" "$NOTES" <<'EOF'
import json, os, sys
work, rates, targets, notes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
def load(t, r):
    p = os.path.join(work, "%s-%s.json" % (t, r))
    try:
        return json.loads(open(p).read().strip().splitlines()[-1])
    except (OSError, IndexError, ValueError):
        return None
print("| relay | offered pps | forwarded pps | CPU ns/pkt (schedstat) | CPU ns/pkt (/proc stat) | loss | p99 latency us | p99 added us |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rates:
    floor = load("direct", r)
    floor_p99 = floor["lat_us"]["p99"] if floor else None
    for t in targets:
        j = load(t, r)
        if j is None:
            print("| %s | %s/stream | n/a | | | | | |" % (t, r))
            continue
        rel = j["relay"][0] if j.get("relay") else None
        ns = "%.0f" % rel["ns_per_delivered_pkt"] if rel and rel["ns_per_delivered_pkt"] is not None else "-"
        stat = "-"
        if rel and j["received"]:
            stat = "%.0f" % ((rel["utime_s"] + rel["stime_s"]) * 1e9 / j["received"])
        p99 = j["lat_us"]["p99"]
        added = "%.0f" % (p99 - floor_p99) if (p99 is not None and floor_p99 is not None and t != "direct") else "-"
        print("| %s | %.0f | %.0f | %s | %s | %.4f%% | %s | %s |" % (
            t, j["offered_pps"], j["delivered_pps"], ns, stat, 100 * j["loss"],
            "%.0f" % p99 if p99 is not None else "-", added))
n = open(notes).read().strip()
if n:
    print("\nNotes:\n" + n)
print("\n(results in %s)" % work)
EOF
