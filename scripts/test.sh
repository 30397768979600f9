#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine.
#
# Installs the test peers that are missing (Debian: baresip-core for the SIP
# call tests, libbcg729-dev and libspandsp-dev as codec references, libpri-dev
# and dahdi-source for the PRI peer and the DAHDI ABI check, freeradius for
# RADIUS; PyPI: pesq and numpy for speech quality, pyst2 as FastAGI server),
# then builds and runs every test of the workspace. Benchmarks are separate:
# `cargo bench -p perf` and scripts/relay-bench.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Phase times go to the log so a slow run shows where its minutes went.
phase() { echo "== [$(date +%T), ${SECONDS}s] $*"; }
trap 'rc=$?; trap - EXIT; phase "end (exit $rc)"; exit $rc' EXIT

# The test build skips cross-crate LTO (release keeps it for the shipped
# binaries and the benchmarks): each of the ~70 test binaries would
# otherwise run its own thin-LTO link. Override with TANDEM_TEST_LTO=thin.
export CARGO_PROFILE_RELEASE_LTO="${TANDEM_TEST_LTO:-false}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
command -v baresip >/dev/null 2>&1 || need+=(baresip-core)
dpkg -s libbcg729-dev >/dev/null 2>&1 || need+=(libbcg729-dev)
dpkg -s libspandsp-dev >/dev/null 2>&1 || need+=(libspandsp-dev)
dpkg -s libpri-dev >/dev/null 2>&1 || need+=(libpri-dev)
dpkg -s dahdi-source >/dev/null 2>&1 || need+=(dahdi-source)
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ -x /usr/sbin/freeradius ] || need+=(freeradius)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
[ -x /usr/sbin/kamailio ] || need+=(kamailio)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ "${#need[@]}" -gt 0 ]; then
    echo "== installing test peers: ${need[*]}"
    $SUDO apt-get update -qq
    # tshark asks whether non-root users may capture: answer no, without a prompt.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! python3 -c 'import asterisk.agi' >/dev/null 2>&1; then
    echo "== installing Python test packages: pyst2 (FastAGI peer)"
    python3 -m pip install -q pyst2 >/dev/null 2>&1 || echo "   (pyst2 unavailable: FastAGI checks skip)"
fi
if ! python3 -c 'import asn1tools' >/dev/null 2>&1; then
    echo "== installing Python test packages: asn1tools bitstruct pyparsing (h323peer)"
    python3 -m pip install -q asn1tools==0.169.0 bitstruct==8.24.0 pyparsing==3.3.3 >/dev/null 2>&1 || echo "   (asn1tools unavailable: H.323 peer checks skip)"
fi
if ! python3 -c 'import numpy, pesq' >/dev/null 2>&1; then
    echo "== installing Python test packages: numpy pesq"
    python3 -m pip install -q numpy pesq >/dev/null 2>&1 || echo "   (pesq unavailable: PESQ checks fall back or skip)"
fi

if [ "${CI:-}" = true ] || [ -n "${TANDEM_DAHDI_QEMU:-}" ]; then
    # Real DAHDI kernel in qemu for control/tests/dahdi_qemu.rs: packages,
    # DKMS modules, kernel image, pri-peer (minutes the first time, then <1 s).
    phase "DAHDI qemu rig (../shared/peers/dahdi-qemu)"
    $SUDO ../shared/peers/dahdi-qemu/run-in-guest.sh --prepare ||
        echo "   (DAHDI qemu rig unavailable: dahdi_qemu skips)"
fi

phase "build (release, LTO ${CARGO_PROFILE_RELEASE_LTO})"
cargo build --workspace --release --all-targets

phase "clippy (protocol code must not read the clock)"
cargo clippy --workspace --release --lib --bins -q -- -D clippy::disallowed_methods -D clippy::undocumented_unsafe_blocks

phase "tests"
cargo test --workspace --release --no-fail-fast
