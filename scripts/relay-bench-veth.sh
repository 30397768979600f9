#!/usr/bin/env bash
# RTP relay throughput on a veth pair between two network namespaces, driven
# by Tandem's AF_XDP generator (`tandem-xdpgen`): the plain recvmmsg/sendmmsg
# forwarder (udpfwd, from the rtpengine anchor), and Tandem's socket, uring
# and xdp backends, all through the same generator, topology and calls, in
# one run. (The loopback comparison with rtpengine is scripts/relay-bench.sh:
# XDP cannot run on lo.)
#
# Topology: namespace R holds rbvr0 (10.231.0.2, the relay), namespace G
# holds rbvg0 (10.231.0.1, the generator); both made here and deleted on
# exit. Relay pinned to RELAY_CPU, generator to GEN_CPU. The generator sends
# with live frames to the xdp backend and from its AF_XDP tx ring to the
# others, unless TX names one for all rows (TX=live: an XDP program run by
# BPF_PROG_TEST_RUN writes each frame and XDP_TXes it out of rbvg0, paced in
# the program; TX=xsk: from an AF_XDP tx ring, copy mode, a kernel buffer per
# frame) and receives the relay's output on an AF_XDP socket behind Tandem's
# XDP program. With TX=live, relays without an XDP program of their own
# (udpfwd, socket, uring) get a counting XDP_PASS program on rbvr0, because
# live frames reach a veth end only when it runs NAPI (on this VM the socket
# relays then forwarded only a few % of 300k pps: live frames passed to the
# stack are slow there, hence xsk for them by default).
# A veth delivers a frame in the softirq of the sending core; with threaded
# NAPI (THREADED=1, the default) each end's receive runs in a kernel thread
# instead, pinned to the reader's core (rbvr0 -> RELAY_CPU, rbvg0 -> GEN_CPU)
# and given nice -19 (NAPI_PRIO=nice, the default: the weight of the relay's
# and generator's nice -19 autogroups, so under overload the core is shared
# between receive and relay; at nice 0 the threads starve behind them, and
# NAPI_PRIO=fifo starves the relay instead: its receive ring overflows while
# the NAPI thread holds the core). So each core
# does its own side's receive work, and the relay's CPU per packet is its
# threads plus its NAPI thread ("threads+NAPI" column).
#
# For each CALLS and RATE (aggregate packets/s; 0 = flat out) and target:
# a fresh relay, WARMUP s of warm-up, DURATION s measured. Prints one
# markdown table: forwarded packets/s, relay CPU ns per forwarded packet
# (relay threads' on-CPU time, and the relay core's busy time incl. softirq),
# loss, reordering, p50/p99 one-way latency (generator send -> generator
# read, through the relay: includes both veth hops and the generator's own
# receive path, so compare rows, not absolute values).
#
# Calls: Tandem's socket and uring backends open 4 sockets per call (RTP +
# RTCP per leg), udpfwd 2; the xdp backend none (the RTP range is reserved
# in the namespace instead: docs/config.md, xdp_port_sockets). A CALLS entry
# past what the open-files limit allows for a target runs that target at the
# most that fits instead, with a note (10 000 calls need 40 000 fds with
# sockets; raising the hard limit needs CAP_SYS_RESOURCE).
#
# Hop counters: `ethtool -S` of both veth ends before and after each run
# (whole run: warm-up, window and drain), printed per row under the table:
# what the generator sent, what reached the relay's end (XDP verdicts: to
# the worker's AF_XDP socket, XDP_TX by the fast path, dropped), what the
# relay's end transmitted, and what reached the generator's end (and its
# AF_XDP socket). Loss is also given over what the relay's end received
# ("loss at relay"): generator-side losses (its veth ring, its own receive)
# are then left out.
#
# GEN_ONLY=1: the generator alone, no relay: a counting XDP_DROP program on
# rbvr0, each rate of RATES; prints offered packets/s and what the peer saw.
#
# Usage: sudo scripts/relay-bench-veth.sh
#        QUICK=1 sudo scripts/relay-bench-veth.sh   (1000 calls, one rate, 1 s)
# Env: CALLS ("1000 4000 10000") RATES ("300000 1000000 0") DURATION WARMUP
#      RELAY_CPU GEN_CPU TARGETS ("udpfwd socket uring xdp") WORK ANCHOR
#      THREADED (1) NAPI_PRIO (nice | fifo | none) PRIO (nice | rt)
#      TX (live | xsk; default live for xdp, xsk for the others)
#      CATCH_UP (256: live mode, most frames back to back after a stall)
#      TICK_US (20: live mode, frames due within it are sent together)
#      GEN_ONLY (0)
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
THREADED=${THREADED:-1}
NAPI_PRIO=${NAPI_PRIO:-nice}
TX=${TX:-}
CATCH_UP=${CATCH_UP:-256}
TICK_US=${TICK_US:-20}
GEN_ONLY=${GEN_ONLY:-0}
PRIO=${PRIO:-nice}
RIF=rbvr0
GIF=rbvg0
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
# Measured: tandem-relay-bench ran out of fds at call 4486 of 20 000, about
# 4.45 fds per call (4 sockets + per-session fds), so 4.5 per call here;
# udpfwd 2 per call; xdp (no port sockets) a fixed few.
max_calls() { # target
    local n; n=$(ulimit -n)
    case "$1" in
        xdp) [[ "${TANDEM_XDP_PORT_SOCKETS:-0}" == 1 ]] && echo $(((n - 300) * 2 / 9)) || echo 1000000 ;;
        udpfwd) echo $(((n - 100) / 2)) ;;
        *) echo $(((n - 300) * 2 / 9)) ;;
    esac
}
# `ethtool -S` of a veth end as "name value" lines.
ethstats() { # ns dev out
    ip netns exec "$1" sh -c "ethtool -S $2 2>/dev/null | awk -F': *' 'NF == 2 && \$2 != \"\" {gsub(/ /, \"\", \$1); print \$1, \$2}'
        for f in tx_dropped rx_dropped; do echo \$f \$(cat /sys/class/net/$2/statistics/\$f); done" > "$3" || true
}

RELAY_PID=""
PEER_PID=""
stop_relay() {
    if [[ -n "$PEER_PID" ]]; then
        kill "$PEER_PID" 2>/dev/null || true
        wait "$PEER_PID" 2>/dev/null || true
        PEER_PID=""
    fi
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
ip link add $RIF netns "$NS_R" type veth peer name $GIF netns "$NS_G"
ip -n "$NS_R" addr add "$RELAY_IP/24" dev $RIF
ip -n "$NS_G" addr add "$GEN_IP/24" dev $GIF
for ns in "$NS_R" "$NS_G"; do ip -n "$ns" link set lo up; done
ip -n "$NS_R" link set $RIF up
# The relay's RTP range (RELAY_PORT_BASE + 4 per call + 1000: up to 61 000
# at 10 000 calls) would cover the whole default ephemeral range, which the
# xdp backend reserves (it then falls back to a socket per port): move the
# relay namespace's ephemeral ports above it.
ip netns exec "$NS_R" sh -c 'echo "61536 65000" > /proc/sys/net/ipv4/ip_local_port_range'

ip -n "$NS_G" link set $GIF up
for _ in $(seq 100); do
    ip -n "$NS_R" -o link show $RIF | grep -q 'state UP' && ip -n "$NS_G" -o link show $GIF | grep -q 'state UP' && break
    sleep 0.05
done
RELAY_MAC=$(ip -n "$NS_R" -o link show $RIF | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')

# Threaded NAPI on a veth end, its kthreads pinned (and SCHED_FIFO with
# NAPI_RT=1). The threads exist only while NAPI is in use (an XDP program
# attached), so this runs after the relay or peer attached its program.
# Prints the kthreads' pids.
napi_pids() { # dev
    ps -eo pid=,comm= | awk -v d="napi/$1-" 'index($2, d) == 1 {print $1}'
}
pin_napi() { # ns dev cpu
    [[ "$THREADED" == 1 ]] || return 0
    ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded" 2>/dev/null || return 0
    local pids=""
    for _ in $(seq 20); do pids=$(napi_pids "$2"); [[ -n "$pids" ]] && break; sleep 0.05; done
    for pid in $pids; do
        taskset -pc "$3" "$pid" > /dev/null 2>&1 || true
        case "$NAPI_PRIO" in
            fifo) chrt -f -p 10 "$pid" > /dev/null 2>&1 || true ;;
            nice) renice -n -19 -p "$pid" > /dev/null 2>&1 || true ;;
        esac
    done
    echo $pids
}
# Counting XDP program on the relay's end (XDP_PASS for socket relays,
# XDP_DROP for GEN_ONLY), alive for $2 s.
start_peer() { # action seconds
    rm -f "$WORK/peer.out"
    ip netns exec "$NS_R" "$GEN" peer --interface "$RIF" --action "$1" --seconds "$2" > "$WORK/peer.out" 2>&1 &
    PEER_PID=$!
    for _ in $(seq 100); do grep -q "^ready" "$WORK/peer.out" 2>/dev/null && return 0; sleep 0.05; done
    echo "peer on $RIF did not start: $(tail -2 "$WORK/peer.out" | tr '\n' ' ')" >> "$NOTES"
    return 1
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
echo "generator tx=${TX:-live for xdp, xsk for the others}, threaded NAPI=$THREADED (priority: $NAPI_PRIO), relay core $RELAY_CPU, generator core $GEN_CPU" >> "$NOTES"

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
        --xdp-interface $RIF > "$WORK/$1.out" 2> "$WORK/$1.log" &
    RELAY_PID=$(hp_pid "$WORK/relay.pid")
    for _ in $(seq 600); do
        grep -q "^ready" "$WORK/$1.out" 2>/dev/null && return 0
        kill -0 "$RELAY_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "tandem $1: did not start: $(tail -3 "$WORK/$1.log" | tr '\n' ' ')" >> "$NOTES"
    return 1
}
# Relays without an XDP program of their own get the counting XDP_PASS peer
# on $RIF in live mode (see the top).
pass_peer() { [[ "$TX" != live ]] || start_peer pass 600; }
# The generator's transmit mode for target $1.
tx_of() { if [[ -n "$TX" ]]; then echo "$TX"; elif [[ "$1" == xdp ]]; then echo live; else echo xsk; fi; }
start_socket() { start_tandem socket "$1" && pass_peer; }
start_uring() { start_tandem uring "$1" && pass_peer; }
start_xdp() { start_tandem xdp "$1"; }
start_udpfwd_live() { start_udpfwd "$1" && pass_peer; }

gen_run() { # tx map rate out [extra args]
    local tx=$1 map=$2 rate=$3 out=$4
    shift 4
    # The generator attaches its XDP program itself: pin $GIF's NAPI once
    # it exists.
    ( sleep 0.3; pin_napi "$NS_G" $GIF "$GEN_CPU" > /dev/null ) &
    local pin=$!
    local ok=0
    hp "$WORK/gen.pid" ip netns exec "$NS_G" taskset -c "$GEN_CPU" "$GEN" run --interface $GIF \
        --relay-mac "$RELAY_MAC" --map "$map" --rate "$rate" --tx "$tx" --catch-up "$CATCH_UP" --tick-us "$TICK_US" \
        --duration "$DURATION" --warmup "$WARMUP" "$@" > "$out.json" 2> "$out.err" || ok=$?
    wait "$pin" 2>/dev/null || true
    return $ok
}

if [[ "$GEN_ONLY" == 1 ]]; then
    calls=${CALLS%% *}
    "$GEN" mkmap --calls "$calls" --gen-ip "$GEN_IP" --gen-port-base "$GEN_PORT_BASE" \
        --relay-ip "$RELAY_IP" --relay-port-base "$RELAY_PORT_BASE" --out "$WORK/gen-only.map"
    echo "| tx | calls | asked pps | sent pps (measured window) | peer saw / sent | peer NAPI threads |"
    echo "|---|---:|---:|---:|---:|---|"
    for rate in $RATES; do
        echo "== generator alone, $calls calls, rate $rate, tx $(tx_of xdp)" >&2
        secs=$(python3 -c "print($WARMUP + $DURATION + 3)")
        start_peer drop "$secs" || exit 1
        napi=$(pin_napi "$NS_R" $RIF "$RELAY_CPU")
        out="$WORK/gen-only-$rate"
        gen_run "$(tx_of xdp)" "$WORK/gen-only.map" "$rate" "$out" --drain 0.1 || echo "generator failed: $(tail -2 "$out.err")" >&2
        for _ in $(seq 100); do kill -0 "$PEER_PID" 2>/dev/null || break; sleep 0.1; done
        stop_relay
        python3 - "$out.json" "$WORK/peer.out" "$(tx_of xdp)" "$calls" "$rate" "${napi:-none}" <<'EOF2'
import json, sys
try:
    g = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except (OSError, IndexError, ValueError):
    g = None
p = [l for l in open(sys.argv[2]).read().splitlines() if l.startswith("{")]
seen = json.loads(p[-1])["frames"] if p else None
if g is None:
    print("| %s | %s | %s | failed | | |" % tuple(sys.argv[3:6]))
else:
    ratio = "%.4f" % (seen / g["sent_total"]) if seen is not None and g["sent_total"] else "-"
    print("| %s | %s | %s | %.0f | %s | %s |" % (sys.argv[3], sys.argv[4], sys.argv[5] if sys.argv[5] != "0" else "max",
          g["sent_pps"], ratio, sys.argv[6]))
EOF2
    done
    echo "(results in $WORK)"
    exit 0
fi

for asked in $CALLS; do
    for rate in $RATES; do
        for t in $TARGETS; do
            calls=$asked
            max=$(max_calls "$t")
            if ((calls > max)); then
                echo "$t: $asked calls asked, ran $max, the most the open-files limit $(ulimit -n) allows" >> "$NOTES"
                calls=$max
            fi
            echo "== $t, $calls calls, rate $rate, tx $(tx_of "$t")" >&2
            start=start_$t
            [[ "$t" == udpfwd && "$TX" == live ]] && start=start_udpfwd_live
            if ! "$start" "$calls"; then stop_relay; continue; fi
            napi_args=()
            for pid in $(pin_napi "$NS_R" $RIF "$RELAY_CPU"); do napi_args+=(--napi-pid "$pid"); done
            out="$WORK/$t-$asked-$rate"
            ethstats "$NS_R" $RIF "$out.r0"; ethstats "$NS_G" $GIF "$out.g0"
            if ! gen_run "$(tx_of "$t")" "$WORK/$t.map" "$rate" "$out" --pid "$RELAY_PID" --relay-cpu "$RELAY_CPU" "${napi_args[@]}"; then
                echo "$t $calls @ $rate: generator failed: $(tail -2 "$out.err" | tr '\n' ' ')" >> "$NOTES"
            fi
            ethstats "$NS_R" $RIF "$out.r1"; ethstats "$NS_G" $GIF "$out.g1"
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
def eth(t, c, r, end):
    d = {}
    for k, stage in (("0", -1), ("1", 1)):
        try:
            for line in open(os.path.join(work, "%s-%s-%s.%s%s" % (t, c, r, end, k))):
                name, v = line.split()
                d[name] = d.get(name, 0) + stage * int(v)
        except (OSError, ValueError):
            return None
    q = lambda n: d.get("rx_queue_0_" + n, 0)
    return {"rx": q("xdp_packets"), "ring_drops": q("drops"), "to_xsk": q("xdp_redirect"),
            "xdp_tx": q("xdp_tx"), "xdp_drops": q("xdp_drops"), "tx_errors": q("xdp_tx_errors"),
            "xmit": d.get("tx_queue_0_xdp_xmit", 0), "xmit_errors": d.get("tx_queue_0_xdp_xmit_errors", 0),
            "tx_dropped": d.get("tx_dropped", 0)}
hops = []
print("| relay | calls | offered pps | sent pps | forwarded pps | x udpfwd | CPU ns/pkt (threads) | CPU ns/pkt (threads+NAPI) | CPU ns/pkt (core) | loss | loss at relay | reordered | p50 us | p99 us |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in calls:
    for r in rates:
        base = load("udpfwd", c, r)
        for t in targets:
            j = load(t, c, r)
            if j is None:
                print("| %s | %s | %s | n/a | | | | | | | | | | |" % (t, c, r if r != "0" else "max"))
                continue
            rel = j["relay"][0] if j.get("relay") else {}
            er, eg = eth(t, c, r, "r"), eth(t, c, r, "g")
            ncalls = j.get("calls", c)
            w = j.get("hops") or {}
            if er and eg:
                hops.append("| %s | %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s |" % (
                    t, ncalls, r if r != "0" else "max", j["sent_total"], er["rx"],
                    er["ring_drops"] + eg["tx_dropped"] + eg["xmit_errors"], er["to_xsk"],
                    er["xdp_tx"], er["xdp_drops"] + er["tx_errors"], eg["rx"],
                    eg["ring_drops"] + er["tx_dropped"] + er["xmit_errors"], eg["to_xsk"],
                    eg["xdp_drops"] + eg["tx_errors"],
                    w.get("relay_rx_dropped", "-"), w.get("gen_rx_dropped", "-")))
            ratio = "%.2f" % (j["delivered_pps"] / base["delivered_pps"]) if base and base["delivered_pps"] else "-"
            lr = j.get("loss_at_relay")
            print("| %s | %s | %s | %.0f | %.0f | %s | %s | %s | %s | %.4f%% | %s | %d | %s | %s |" % (
                t, ncalls, r if r != "0" else "max", j["sent_pps"], j["delivered_pps"], ratio,
                f(rel.get("ns_per_delivered_pkt")), f(rel.get("ns_per_delivered_pkt_with_napi")),
                f(rel.get("core_ns_per_delivered_pkt")),
                100 * j["loss"], "%.4f%%" % (100 * lr) if lr is not None else "-",
                j["reordered"], f(j["lat_us"]["p50"]), f(j["lat_us"]["p99"])))
if hops:
    print("\nHop counters, whole run (ethtool -S of the veth ends): generator sent; at the relay's end: frames in,")
    print("dropped on its full ring (relay NAPI behind), redirected to the worker's AF_XDP socket, XDP_TX (fast path),")
    print("dropped by XDP (socket ring full); at the generator's end: frames in (relay output), ring drops, to the")
    print("generator's socket, XDP drops; then the drops of each end in the measured window alone (/proc/PID/net/dev):")
    print("\"loss at relay\" above is the loss with the generator end's window drops taken out.")
    print("| relay | calls | offered pps | gen sent | relay in | relay drops (redirect/ring) | to worker | fast path | relay XDP drops | gen in | gen drops (its socket ring full) | gen socket | gen XDP drops | window: relay drops | window: gen drops |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(hops))
n = open(notes).read().strip()
if n:
    print("\nNotes:\n" + n)
print("\n(results in %s)" % work)
EOF
