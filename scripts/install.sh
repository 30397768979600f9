#!/usr/bin/env bash
# Builds the release binaries and installs Tandem on this machine:
#   $PREFIX/bin/{tandemd,tandemctl,tandem-bench,tandem-codec}
#   /etc/systemd/system/{tandemd,tandem-tune}.service
#   $PREFIX/lib/sysusers.d/tandem.conf, $PREFIX/lib/tmpfiles.d/tandem.conf
#   /etc/tandem/tandem.toml and extensions.conf (commented examples; an existing file is kept)
#   $PREFIX/share/doc/tandem/ (README, docs)
# then, on a live system (no DESTDIR, root, systemd running), creates the user and directories
# and reloads systemd. Nothing is enabled or started: see README "Install on a telephony server".
#
# Environment:
#   PREFIX=/usr/local   where binaries, sysusers/tmpfiles snippets and docs go
#   DESTDIR=            staging root (packaging, tests): everything lands below it
#   NO_BUILD=1          skip `cargo build --release` (use binaries already built)
#   BIN_SRC=DIR         where the built binaries are (default: target/release of this tree)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
BIN_SRC="${BIN_SRC:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
BINS=(tandemd tandemctl tandem-bench tandem-codec)

say() { echo "install.sh: $*"; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    say "building release binaries"
    (cd "$ROOT" && cargo build --release -p control --bin tandemd --bin tandemctl \
        -p perf --bin tandem-bench --bin tandem-codec)
fi
for b in "${BINS[@]}"; do
    [ -x "$BIN_SRC/$b" ] || { say "$BIN_SRC/$b not built (run without NO_BUILD=1)" >&2; exit 1; }
done

bindir="$DESTDIR$PREFIX/bin"
unitdir="$DESTDIR/etc/systemd/system"
sysusersdir="$DESTDIR$PREFIX/lib/sysusers.d"
tmpfilesdir="$DESTDIR$PREFIX/lib/tmpfiles.d"
confdir="$DESTDIR/etc/tandem"
docdir="$DESTDIR$PREFIX/share/doc/tandem"

install -d "$bindir" "$unitdir" "$sysusersdir" "$tmpfilesdir" "$confdir" "$docdir"
for b in "${BINS[@]}"; do
    install -m 0755 "$BIN_SRC/$b" "$bindir/$b"
done
say "binaries in $bindir"

# Units name /usr/local/bin and /usr/local/share/doc; follow PREFIX.
for u in tandemd.service tandem-tune.service; do
    sed -e "s#/usr/local/bin/#$PREFIX/bin/#g" -e "s#/usr/local/share/doc/#$PREFIX/share/doc/#g" \
        "$ROOT/systemd/$u" > "$unitdir/$u"
    chmod 0644 "$unitdir/$u"
done
install -m 0644 "$ROOT/systemd/tandem.sysusers.conf" "$sysusersdir/tandem.conf"
install -m 0644 "$ROOT/systemd/tandem.tmpfiles.conf" "$tmpfilesdir/tandem.conf"
say "units in $unitdir, sysusers/tmpfiles snippets in $PREFIX/lib"

for f in tandem.toml extensions.conf; do
    if [ -e "$confdir/$f" ]; then
        install -m 0644 "$ROOT/docs/examples/$f" "$confdir/$f.example"
        say "kept $confdir/$f (the new example is $f.example)"
    else
        install -m 0644 "$ROOT/docs/examples/$f" "$confdir/$f"
        say "example config in $confdir/$f"
    fi
done
install -m 0644 "$ROOT/README.md" "$docdir/README.md"
cp -r "$ROOT/docs/." "$docdir/"

if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then
    systemd-sysusers "$sysusersdir/tandem.conf"
    systemd-tmpfiles --create "$tmpfilesdir/tandem.conf"
    systemctl daemon-reload
    say "user tandem and its directories created; systemd reloaded"
fi
cat <<NEXT
install.sh: next steps
  edit /etc/tandem/tandem.toml (listen address, users, media_ip, cores) and extensions.conf
  $PREFIX/bin/tandemd --check-config /etc/tandem/tandem.toml
  $PREFIX/bin/tandemctl tune check --config /etc/tandem/tandem.toml
  systemctl enable --now tandem-tune.service tandemd.service
NEXT
