#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need, then runs
# the format check, clippy, and every test. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Debian packages the tests use: python3 (the argv recorder used as a real OS command and a
# browser stand-in), ca-certificates (rustls trust store for TLS tests), and the real SIP peers
# of the sip_* tests: sip-tester (sipp), kamailio (and its presence modules, the busy-lamp
# server), baresip-core, sox (tone file for baresip);
# for the media layer: cmake and g++ (the opus crate builds libopus), ALSA and PulseAudio
# headers (cpal), and a PulseAudio daemon for the null-sink test of the real device path;
# tmux for the end-to-end tests of the terminal UI; binutils (nm) for the release layout check;
# for contrib/: xdg-utils (xdg-mime, xdg-open: a tel: link opened on the desktop),
# desktop-file-utils (desktop-file-validate) and systemd (systemd-analyze verify of the unit);
# chromium and xvfb (a real browser on a virtual display) for the browser_post test;
# postgresql (a throwaway cluster per test: the central call log, issue 18);
# kamailio-tls-modules (Kamailio as a TLS registrar, issue 19); tcpdump (what a stranger on
# the loopback sees of an SRTP call).
# iproute2 (ip netns, veth) and nftables (the router's masquerade): tests/sip_nat.rs builds
# network namespaces as root. dnsmasq-base (a DNS server on a loopback port with the
# NAPTR/SRV records of two registrars: tests/sip_dns.rs, failover per RFC 3263). coturn
# (turnserver, the STUN server of tests/sip_stun.rs, started by the test in a network namespace
# of its own; the system service the package may start on install listens in the host's
# namespace and is never used, so it does not matter whether it runs).
# espeak-ng: the spoken reference of `ctiphone bench audio` (tests/bench_audio.rs).
PKGS="python3 ca-certificates sip-tester kamailio kamailio-presence-modules baresip-core sox \
  cmake g++ pkg-config libasound2-dev libpulse-dev pulseaudio pulseaudio-utils tmux binutils \
  xdg-utils desktop-file-utils systemd chromium xvfb postgresql kamailio-tls-modules tcpdump \
  iproute2 nftables dnsmasq-base coturn espeak-ng"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
# The release build, and the layout its memory figures rely on (docs/decisions.md D3): the
# functions listed in link/symbol-order.txt exist and were placed together.
echo "== release build and link/symbol-order.txt"
cargo build --release
bash link/symbol-order.sh --check
# A short fuzz run of every cargo-fuzz target (30 s each; see fuzz/README.md for the longer
# run before a release). Installs cargo-fuzz when missing.
echo "== fuzz"
bash tests/fuzz.sh
