#!/usr/bin/env bash
# RTP relay throughput on a veth pair between two network namespaces, driven
# by Tandem's AF_XDP generator (`tandem-xdpgen`): the plain recvmmsg/sendmmsg
# forwarder (udpfwd, from the rtpengine anchor), and Tandem's socket, uring
# and xdp backends, all through the same generator, topology and calls, in
# one run. (The loopback comparison with rtpengine is scripts/relay-bench.sh:
# XDP cannot run on lo.)
#
# Topology: namespace R holds xr0 (10.231.0.2, the relay), namespace G holds
# xp0 (10.231.0.1, the generator); both made here and deleted on exit. Relay
# pinned to RELAY_CPU, generator to GEN_CPU. A veth delivers a frame in the
# softirq of the sending core: the generator's core carries the relay's
# receive path up to its socket queue or AF_XDP ring (XDP program and copy
# included), and the relay's core carries the generator's receive path (its
# XDP program and the copy into its AF_XDP ring) - the same for every target,
# like the loopback harness's caveat. THREADED=1 moves the veth NAPI of each
# end into a kernel thread pinned to the reader's core instead (needs the
# threads to get CPU: on a loaded machine they starve behind the -19
# autogroups, so it is off by default).
#
# For each CALLS and RATE (aggregate packets/s; 0 = flat out) and target:
# a fresh relay, WARMUP s of warm-up, DURATION s measured. Prints one
# markdown table: forwarded packets/s, relay CPU ns per forwarded packet
# (relay threads' on-CPU time, and the relay core's busy time incl. softirq),
# loss, reordering, p50/p99 one-way latency (generator send -> generator
# read, through the relay: includes both veth hops and the generator's own
# receive path, so compare rows, not absolute values).
#
# Usage: sudo scripts/relay-bench-veth.sh
#        QUICK=1 sudo scripts/relay-bench-veth.sh   (1000 calls, one rate, 1 s)
# Env: CALLS ("1000 4000 10000") RATES ("300000 1000000 0") DURATION WARMUP
#      RELAY_CPU GEN_CPU TARGETS ("udpfwd socket uring xdp") WORK ANCHOR THREADED
#      PRIO (nice | rt)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ANCHOR=${ANCHOR:-$ROOT/../shared/anchors/rtpengine}
if [[ -n "${QUICK:-}" ]]; then
    CALLS=${CALLS:-1000}
    RATES=${RATES:-300000}
    DURATION=${DURATION:-1}
    WARMUP=${WARMUP:-0.5}
else
    CALLS=${CALLS:-1000 4000 10000}
    RATES=${RATES:-300000 1000000 0}
    DURATION=${DURATION:-3}
    WARMUP=${WARMUP:-1}
fi
RELAY_CPU=${RELAY_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
TARGETS=${TARGETS:-udpfwd socket uring xdp}
THREADED=${THREADED:-0}
PRIO=${PRIO:-nice}
WORK=${WORK:-$(mktemp -d /tmp/relay-bench-veth.XXXXXX)}
NS_R=rbv-r$$
NS_G=rbv-g$$
GEN_IP=10.231.0.1
RELAY_IP=10.231.0.2
GEN_PORT_BASE=2000
RELAY_PORT_BASE=20000

if [[ $(id -u) != 0 ]]; then
    echo "relay-bench-veth: needs root (network namespaces, XDP)" >&2
    exit 2
fi
mkdir -p "$WORK/build"
HAVE_UDPFWD=0
if [[ -f "$ANCHOR/udpfwd.c" ]]; then
    cc -O2 -Wall -Wno-unused-parameter -Wno-sign-compare -o "$WORK/build/udpfwd" "$ANCHOR/udpfwd.c"
    HAVE_UDPFWD=1
fi
(cd "$ROOT" && cargo build -q --release -p perf --bin tandem-relay-bench --bin tandem-xdpgen)
TANDEM="$ROOT/target/release/tandem-relay-bench"
GEN="$ROOT/target/release/tandem-xdpgen"
# Tandem opens 4 sockets per call (RTP + RTCP per leg), udpfwd 2: calls past
# what the open-files limit allows are skipped with a note (raising the hard
# limit needs CAP_SYS_RESOURCE).
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
MAX_CALLS=$((($(ulimit -n) - 2500) / 4))

RELAY_PID=""
stop_relay() {
    if [[ -n "$RELAY_PID" ]]; then
        kill "$RELAY_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$RELAY_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=""
    fi
    # Sockets of an io_uring process are released after it exits (deferred
    # ring teardown): wait until the relay namespace has no UDP socket left.
    for _ in $(seq 100); do
        [[ $(ip netns exec "$NS_R" cat /proc/net/udp /proc/net/udp6 2>/dev/null | grep -vc 'local_address') -eq 0 ]] && break
        sleep 0.1
    done
}
cleanup() {
    stop_relay
    ip netns del "$NS_R" 2>/dev/null || true
    ip netns del "$NS_G" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$NS_R"
ip netns add "$NS_G"
ip link add xr0 netns "$NS_R" type veth peer name xp0 netns "$NS_G"
ip -n "$NS_R" addr add "$RELAY_IP/24" dev xr0
ip -n "$NS_G" addr add "$GEN_IP/24" dev xp0
for ns in "$NS_R" "$NS_G"; do ip -n "$ns" link set lo up; done
ip -n "$NS_R" link set xr0 up
ip -n "$NS_G" link set xp0 up
for _ in $(seq 100); do
    ip -n "$NS_R" -o link show xr0 | grep -q 'state UP' && ip -n "$NS_G" -o link show xp0 | grep -q 'state UP' && break
    sleep 0.05
done
RELAY_MAC=$(ip -n "$NS_R" -o link show xr0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')

# Pin the veth NAPI kthreads (exist only while NAPI is in use: XDP attached).
pin_napi() { # ns dev cpu
    [[ "$THREADED" == 1 ]] || return 0
    ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded" 2>/dev/null || return 0
    sleep 0.1
    for pid in $(pgrep -f "^napi/$2-" || true); do taskset -pc "$3" "$pid" > /dev/null 2>&1 || true; done
}

# Relay and generator each in their own session with scheduler autogroup
# nice -19 (as the anchor harness does), so the other work on the machine
# takes less of their cores during the few seconds of a run. PRIO=rt runs
# them SCHED_FIFO instead (the kernel's RT throttling still leaves 5 %).
# `hp PIDFILE cmd...`: the final process's pid is written to PIDFILE.
hp() {
    local pf=$1
    shift
    if [[ "$PRIO" == rt ]]; then
        setsid sh -c 'echo $$ > "$0"; exec chrt -f 1 "$@"' "$pf" "$@"
    else
        setsid sh -c 'echo $$ > "$0"; echo -19 > /proc/self/autogroup 2>/dev/null; exec "$@"' "$pf" "$@"
    fi
}
# The pid `hp` wrote (waits for it).
hp_pid() {
    for _ in $(seq 100); do [[ -s "$1" ]] && break; sleep 0.05; done
    cat "$1"
}

NOTES="$WORK/notes.txt"
: > "$NOTES"

start_udpfwd() { # calls
    if [[ "$HAVE_UDPFWD" != 1 ]]; then echo "udpfwd: anchor not found at $ANCHOR" >> "$NOTES"; return 1; fi
    "$GEN" mkmap --calls "$1" --gen-ip "$GEN_IP" --gen-port-base "$GEN_PORT_BASE" \
        --relay-ip "$RELAY_IP" --relay-port-base "$RELAY_PORT_BASE" --out "$WORK/udpfwd.map"
    rm -f "$WORK/relay.pid"
    hp "$WORK/relay.pid" ip netns exec "$NS_R" taskset -c "$RELAY_CPU" "$WORK/build/udpfwd" \
        --map "$WORK/udpfwd.map" --lifetime 600 > "$WORK/udpfwd.log" 2>&1 &
    RELAY_PID=$(hp_pid "$WORK/relay.pid")
    sleep 1.5
    kill -0 "$RELAY_PID" 2>/dev/null
}

start_tandem() { # backend calls
    rm -f "$WORK/relay.pid"
    hp "$WORK/relay.pid" ip netns exec "$NS_R" taskset -c "$RELAY_CPU" "$TANDEM" relay --backend "$1" --core "$RELAY_CPU" \
        --calls "$2" --map "$WORK/$1.map" --lifetime 600 --ip "$RELAY_IP" \
        --port-base "$RELAY_PORT_BASE" --gen-ip "$GEN_IP" --gen-port-base "$GEN_PORT_BASE" \
        --xdp-interface xr0 > "$WORK/$1.out" 2> "$WORK/$1.log" &
    RELAY_PID=$(hp_pid "$WORK/relay.pid")
    for _ in $(seq 600); do
        grep -q "^ready" "$WORK/$1.out" 2>/dev/null && return 0
        kill -0 "$RELAY_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "tandem $1: did not start: $(tail -3 "$WORK/$1.log" | tr '\n' ' ')" >> "$NOTES"
    return 1
}
start_socket() { start_tandem socket "$1"; }
start_uring() { start_tandem uring "$1"; }
start_xdp() { start_tandem xdp "$1" && pin_napi "$NS_R" xr0 "$RELAY_CPU"; }

for calls in $CALLS; do
    if ((calls > MAX_CALLS)); then
        echo "$calls calls: skipped, the open-files limit $(ulimit -n) allows $MAX_CALLS (4 sockets per call)" >> "$NOTES"
        continue
    fi
    for rate in $RATES; do
        for t in $TARGETS; do
            echo "== $t, $calls calls, rate $rate" >&2
            if ! "start_$t" "$calls"; then stop_relay; continue; fi
            # The generator's XDP program is attached by the generator: pin
            # xp0's NAPI once it exists (first run: after a second).
            ( sleep 0.3; pin_napi "$NS_G" xp0 "$GEN_CPU" ) &
            PIN_PID=$!
            out="$WORK/$t-$calls-$rate"
            if ! hp "$WORK/gen.pid" ip netns exec "$NS_G" taskset -c "$GEN_CPU" "$GEN" run --interface xp0 \
                --relay-mac "$RELAY_MAC" --map "$WORK/$t.map" --rate "$rate" \
                --duration "$DURATION" --warmup "$WARMUP" --pid "$RELAY_PID" \
                --relay-cpu "$RELAY_CPU" > "$out.json" 2> "$out.err"; then
                echo "$t $calls @ $rate: generator failed: $(tail -2 "$out.err" | tr '\n' ' ')" >> "$NOTES"
            fi
            wait "$PIN_PID" 2>/dev/null || true
            stop_relay
        done
    done
done

python3 - "$WORK" "$CALLS" "$RATES" "$TARGETS" "$NOTES" <<'EOF'
import json, os, sys
work, calls, rates, targets, notes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
def load(t, c, r):
    p = os.path.join(work, "%s-%s-%s.json" % (t, c, r))
    try:
        return json.loads(open(p).read().strip().splitlines()[-1])
    except (OSError, IndexError, ValueError):
        return None
def f(v, fmt="%.0f"):
    return fmt % v if v is not None else "-"
print("| relay | calls | offered pps | sent pps | forwarded pps | x udpfwd | CPU ns/pkt (threads) | CPU ns/pkt (core) | loss | reordered | p50 us | p99 us |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in calls:
    for r in rates:
        base = load("udpfwd", c, r)
        for t in targets:
            j = load(t, c, r)
            if j is None:
                print("| %s | %s | %s | n/a | | | | | | | | |" % (t, c, r if r != "0" else "max"))
                continue
            rel = j["relay"][0] if j.get("relay") else {}
            ratio = "%.2f" % (j["delivered_pps"] / base["delivered_pps"]) if base and base["delivered_pps"] else "-"
            print("| %s | %s | %s | %.0f | %.0f | %s | %s | %s | %.4f%% | %d | %s | %s |" % (
                t, c, r if r != "0" else "max", j["sent_pps"], j["delivered_pps"], ratio,
                f(rel.get("ns_per_delivered_pkt")), f(rel.get("core_ns_per_delivered_pkt")),
                100 * j["loss"], j["reordered"], f(j["lat_us"]["p50"]), f(j["lat_us"]["p99"])))
n = open(notes).read().strip()
if n:
    print("\nNotes:\n" + n)
print("\n(results in %s)" % work)
EOF
