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
#        CAPACITY=30 scripts/relay-bench.sh (saturated CPU cost, see below)
# Env: CALLS RATES DURATION WARMUP RELAY_CPU GEN_CPU TARGETS WORK ANCHOR
#      CAPACITY PAIRS CAP_RATE CAP_TARGETS
#
# CAPACITY=Q: one generator core cannot outrun one relay core on loopback
# (the sender's core also runs the receive softirq of what it sends), so the
# relay is held to Q % of its core instead (cgroup v1 cpu quota, 10 ms
# period) while the generator offers CAP_RATE per stream (default 100 =
# 200k pps): the relay always has a backlog, so every batch it takes is
# full, as on a saturated core. Each relay runs for DURATION s after it is
# ready and exits while the generator is still sending; its own counter of
# forwarded packets and its CPU time over that lifetime (ready -> exit, all
# threads, including the softirq work run in its context: the delivery of
# what it sends) give CPU ns per forwarded packet and so packets/s per core
# at saturation (1e9 / ns). The generator's own loss/latency figures are not
# used (the backlog makes queueing latency seconds long). CAP_TARGETS
# (default "udpfwd uring socket") run alternately PAIRS times (default 3);
# one row per run plus the ratio to the forwarder run of the same round.
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

if [[ -n "${CAPACITY:-}" ]]; then
    TARGETS=${CAP_TARGETS:-udpfwd uring socket}
    PAIRS=${PAIRS:-3}
    CAP_RATE=${CAP_RATE:-100}
    CAP_LIFE=${DURATION%.*}
    ((CAP_LIFE >= 2)) || CAP_LIFE=3
    CG=/sys/fs/cgroup/cpu/relay-bench.$$
    if ! mkdir -p "$CG" 2>/dev/null || ! echo 10000 > "$CG/cpu.cfs_period_us" \
        || ! echo $((CAPACITY * 100)) > "$CG/cpu.cfs_quota_us"; then
        echo "relay-bench: CAPACITY needs cgroup v1 cpu at /sys/fs/cgroup/cpu (root)" >&2
        exit 2
    fi
    trap 'stop_relay; rmdir "$CG" 2>/dev/null || true' EXIT
    $RB mkmap --calls "$CALLS" --out "$WORK/udpfwd.map" --relay-base 12000
    # cpu_ticks PID: utime+stime of all its threads, in clock ticks.
    cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || true; }
    RES="$WORK/capacity.txt"
    : > "$RES"
    for pair in $(seq "$PAIRS"); do
        for t in $TARGETS; do
            echo "== capacity $t, round $pair, relay quota $CAPACITY %" >&2
            log="$WORK/cap-$t-$pair.log"
            if [[ "$t" == udpfwd ]]; then
                life=$CAP_LIFE
                setsid sh -c 'echo $$ > "$0/cgroup.procs"; echo -19 > /proc/self/autogroup 2>/dev/null; exec "$@"' "$CG" taskset -c "$RELAY_CPU" \
                    "$WORK/build/udpfwd" --map "$WORK/udpfwd.map" --lifetime "$life" > "$log" 2>&1 &
                RELAY_PID=$!
                for _ in $(seq 100); do grep -q ready "$log" && break; sleep 0.05; done
            else
                life=$CAP_LIFE
                setsid sh -c 'echo $$ > "$0/cgroup.procs"; echo -19 > /proc/self/autogroup 2>/dev/null; exec "$@"' "$CG" taskset -c "$RELAY_CPU" \
                    "$TANDEM" relay --backend "$t" --core "$RELAY_CPU" --calls "$CALLS" \
                    --map "$WORK/$t.map" --lifetime "$life" > "$WORK/$t.out" 2> "$log" &
                RELAY_PID=$!
                for _ in $(seq 600); do grep -q '^ready' "$WORK/$t.out" 2>/dev/null && break; sleep 0.05; done
            fi
            c0=$(cpu_ticks "$RELAY_PID")
            t0=$(date +%s.%N)
            # The generator outlives the relay: it is still sending when the relay exits.
            $RB run --map "$WORK/$t.map" --rate "$CAP_RATE" --duration "$((life + 2))" \
                --warmup 0.2 --gen-cpu "$GEN_CPU" > /dev/null 2>&1 &
            gen=$!
            c1=$c0
            while kill -0 "$RELAY_PID" 2>/dev/null; do
                c=$(cpu_ticks "$RELAY_PID")
                if [[ -n "$c" ]]; then c1=$c; fi
                sleep 0.02
            done
            t1=$(date +%s.%N)
            wait "$RELAY_PID" 2>/dev/null || true
            RELAY_PID=""
            wait "$gen" 2>/dev/null || true
            if [[ "$t" == udpfwd ]]; then
                fwd=$(sed -n 's/.*"udpfwd_fwd":\([0-9]*\).*/\1/p' "$log")
            else
                fwd=$(sed -n 's/.*packets_out: \([0-9]*\).*/\1/p' "$log" | head -1)
            fi
            echo "$pair $t ${fwd:-0} ${c0:-0} ${c1:-0} $t0 $t1" >> "$RES"
        done
    done
    python3 - "$RES" "$CAPACITY" "$(getconf CLK_TCK)" "$CALLS" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
quota, hz, calls = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print("Saturated relay, %s calls, quota %.0f %% of one core (relay CPU time ready -> exit / its forwarded packets)" % (calls, quota))
print()
print("| round | relay | forwarded | CPU s | CPU share | CPU ns/pkt | pps per core | x udpfwd (same round) |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
base, per = {}, {}
for pair, t, fwd, c0, c1, t0, t1 in rows:
    fwd, cpu, wall = int(fwd), (int(c1) - int(c0)) / hz, float(t1) - float(t0)
    ns = cpu * 1e9 / fwd if fwd else None
    if t == "udpfwd" and ns:
        base[pair] = ns
    ratio = "%.2f" % (base[pair] / ns) if ns and pair in base else "-"
    if ns and pair in base:
        per.setdefault(t, []).append(base[pair] / ns)
    print("| %s | %s | %d | %.2f | %.2f | %s | %s | %s |" % (pair, t, fwd, cpu, cpu / wall if wall else 0,
          "%.0f" % ns if ns else "-", "%.0f" % (1e9 / ns) if ns else "-", ratio))
print()
for t, r in per.items():
    if t != "udpfwd":
        r, n = sorted(r), len(r)
        med = (r[(n - 1) // 2] + r[n // 2]) / 2
        print("%s / udpfwd: min %.2f, median %.2f, max %.2f over %d rounds" % (t, r[0], med, r[-1], n))
print("\n(results in %s)" % sys.argv[1])
EOF
    exit 0
fi

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
