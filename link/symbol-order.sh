#!/usr/bin/env bash
# Regenerates link/symbol-order.txt: the functions the release binary runs when it starts, idles,
# takes a call with audio (files, then real devices through cpal and a PulseAudio null sink),
# DTMF and recording, and draws the TUI, in the order the linker should place them
# (docs/decisions.md D3). A contact center's agent (`ctiphone bench fleet`: registered at
# Kamailio with digest auth, CTI accesses to the demo CRM, the central log in PostgreSQL
# through an outage), the phone that runs by the hundred on one host, is profiled too, and
# what it shares with the plain headless phone comes first. Needs valgrind
# (callgrind), python3; kamailio, sipp and postgresql for the agent part, pulseaudio and tmux
# for the device and TUI parts.
#   bash link/symbol-order.sh           # builds the release binary, profiles it, writes the file
#   BIN=path/to/ctiphone bash link/symbol-order.sh   # profiles that binary instead
#   bash link/symbol-order.sh --check   # the release binary follows the file (tests/run.sh)
# Run it again after a dependency upgrade or a large change; `ctiphone bench` shows the effect.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --check ]; then
  # Fails when the list no longer names this build's functions (a rustc or dependency upgrade
  # renames them) or the linker did not follow it: then run this script without --check.
  BIN=${BIN:-$PWD/target/release/ctiphone}
  nm -S --defined-only "$BIN" | python3 -c '
import sys
listed = [l.strip() for l in open("link/symbol-order.txt") if l.strip()]
syms = {}
for line in sys.stdin:
    f = line.split()
    if len(f) == 4 and f[2] in "tTwW":
        syms[f[3]] = (int(f[0], 16), int(f[1], 16))
found = [syms[n] for n in listed if n in syms]
share = len(found) / max(len(listed), 1)
size = sum(s for _, s in found)
span = max(a + s for a, s in found) - min(a for a, _ in found) if found else 0
print(f"link/symbol-order.txt: {len(found)} of {len(listed)} functions in the binary ({share:.0%}), "
      f"{size // 1024} KiB of code in a span of {span // 1024} KiB")
if share < 0.9:
    sys.exit("stale: run link/symbol-order.sh")
if span > size * 1.25 + 65536:
    sys.exit("the linker did not place them together (see build.rs)")
'
  exit
fi
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; BIN=$PWD/target/release/ctiphone; fi
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT
python3 - "$T/tone.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(8000 * 10)))
PY
cfg() { # name, extra lines
  printf '[account]\nuri = "sip:%s@127.0.0.1"\nregistrar = ""\nlisten = "127.0.0.1:0"\n%s\n' "$1" "$2" > "$T/$1.toml"
}
wait_for() { # file, pattern, seconds
  for _ in $(seq $(( $3 * 10 ))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for $2 in $1" >&2; cat "$1" >&2; exit 1
}
cfg caller "$(printf '[audio]\ninput = "null"\noutput = "null"')"
# A headless phone under callgrind: start, idle 5 s, one call answered with a tone from the
# caller and recording on, DTMF, the far end hangs up, quit. $1: name, $2: its [audio] lines;
# the rest: environment.
profile_call() {
  local name=$1 audio=$2; shift 2
  cfg "$name" "$(printf '%s\n[recording]\nauto = true\ndir = "%s/rec"' "$audio" "$T")"
  mkfifo "$T/$name.in" "$T/$name-caller.in"
  env "$@" XDG_DATA_HOME="$T/data-$name" valgrind --tool=callgrind --demangle=no --dump-instr=no \
    --callgrind-out-file="$T/cg.$name" "$BIN" --config "$T/$name.toml" headless --auto-answer \
    < "$T/$name.in" > "$T/$name.out" 2> "$T/$name.err" &
  local callee=$!
  exec 3> "$T/$name.in"
  wait_for "$T/$name.out" listen 60
  local addr
  addr=$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$T/$name.out" | head -1)
  sleep 5
  XDG_DATA_HOME=$T/data-$name-caller "$BIN" --config "$T/caller.toml" headless \
    --audio-in "$T/tone.wav" < "$T/$name-caller.in" > "$T/$name-caller.out" 2>/dev/null &
  local caller=$!
  exec 4> "$T/$name-caller.in"
  wait_for "$T/$name-caller.out" listen 10
  echo "{\"cmd\":\"dial\",\"to\":\"sip:$name@$addr\"}" >&4
  wait_for "$T/$name-caller.out" '"answered"' 60
  sleep 6
  echo '{"cmd":"dtmf","digits":"12#"}' >&4
  sleep 2
  echo '{"cmd":"hangup"}' >&4
  wait_for "$T/$name.out" '"ended"' 30
  sleep 2
  echo '{"cmd":"quit"}' >&4
  echo '{"cmd":"quit"}' >&3
  wait "$callee" "$caller"
  exec 3>&- 4>&-
}
# 0. the agents of `ctiphone bench fleet` (two of them, a few calls, PostgreSQL down for 6 s):
# the bench and its agents under callgrind, Kamailio, sipp and PostgreSQL not.
if command -v kamailio >/dev/null && command -v sipp >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  mkdir "$T/fleet"
  valgrind --tool=callgrind --trace-children=yes \
    --trace-children-skip='*runuser*,*pg_ctl*,*postgres*,*initdb*,*kamailio*,*sipp*,*chown*' \
    --demangle=no --dump-instr=no --callgrind-out-file="$T/fleet/cg.%p" \
    "$BIN" bench fleet --agents 2 --cps 0.5 --secs 20 --outage 6 --hold 2 --json \
    > "$T/fleet.out" 2> "$T/fleet.err" || { cat "$T/fleet.err" >&2; exit 1; }
  # The agents' profiles (headless), not the bench's own.
  for f in "$T"/fleet/cg.*; do
    if grep -q '^cmd: .* headless' "$f"; then mv "$f" "$T/cg.agent.${f##*.}"; fi
  done
else
  echo "kamailio, sipp or postgresql not installed: the fleet agent's path is not profiled" >&2
fi
# 1. headless with a file as microphone and the null speaker (the benchmarks' set-up).
profile_call files "$(printf '[audio]\ninput = "file:%s"\noutput = "null"' "$T/tone.wav")"
# 2. headless with real devices through cpal: a private PulseAudio daemon with a null sink.
if command -v pulseaudio >/dev/null; then
  P=$T/pulse; mkdir -p "$P/home/.config" "$P/run"; chmod 700 "$P/run"
  printf 'load-module module-null-sink sink_name=ctinull rate=48000\nload-module module-native-protocol-unix auth-anonymous=1 socket=%s\nset-default-sink ctinull\nset-default-source ctinull.monitor\n' "$P/run/native" > "$P/order.pa"
  HOME=$P/home XDG_CONFIG_HOME=$P/home/.config XDG_RUNTIME_DIR=$P/run PULSE_RUNTIME_PATH=$P/run \
    pulseaudio --daemonize=no --system=false --exit-idle-time=-1 --disallow-exit \
    --use-pid-file=false -n -F "$P/order.pa" --log-target=file:"$P/log" &
  for _ in $(seq 150); do [ -S "$P/run/native" ] && break; sleep 0.1; done
  profile_call devices "$(printf '[audio]\ninput = "ctinull.monitor"\noutput = "ctinull"')" \
    PULSE_SERVER="unix:$P/run/native" PULSE_RUNTIME_PATH="$P/run" XDG_RUNTIME_DIR="$P/run"
else
  echo "pulseaudio not installed: the real-device path is not profiled" >&2
fi
# 3. the TUI: the built-in demo in a real terminal for a few seconds, a call answered and hung up.
if command -v tmux >/dev/null; then
  S=ctiphone-order-$$
  tmux -L "$S" new-session -d -x 120 -y 32 \
    "XDG_DATA_HOME=$T/data3 XDG_CONFIG_HOME=$T/cfg3 valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$T/cg.tui $BIN demo 2>$T/tui.err"
  keys() { for k in "$@"; do tmux -L "$S" send-keys "$k"; sleep 3; done; }
  sleep 25; keys a; sleep 5; keys x "?" Escape c Escape s Escape q y
  for _ in $(seq 60); do [ -s "$T/cg.tui" ] && break; sleep 0.5; done
  tmux -L "$S" kill-server 2>/dev/null || true
fi
# The functions of our binary that ran, in blocks: those both a fleet's agent and the plain
# headless phone run; then the phone's others; then the agent's others (registration, CTI over
# HTTP, the central log); then those only the devices or the TUI ran. Each of the two kinds of
# phone then touches one stretch of code, or two with a small gap.
python3 - "$BIN" "$T" > link/symbol-order.txt <<'PY'
import glob, re, sys
binary, tmp = sys.argv[1], sys.argv[2]
def functions(path):
    """The functions of `binary` with a cost of their own in a callgrind file, in its order."""
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except FileNotFoundError:
        return []
    names, objs, ob, seen, out = {}, {}, None, set(), []
    def name_of(table, v):
        m = re.match(r"\((\d+)\)(?: (.*))?$", v)
        if not m:
            return v
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1))
    for line in lines:
        key, _, v = line.partition("=")
        if key in ("ob", "cob"):
            o = name_of(objs, v)
            if key == "ob":
                ob = o
        elif key in ("fn", "cfn"):
            n = name_of(names, v)
            # callgrind marks recursion levels with 'N; addresses without a symbol are skipped.
            n = re.sub(r"'\d+$", "", n) if n else n
            if n and (n.startswith("0x") or n.startswith("(")):
                n = None
            # Every function that ran has a cost of its own, so its own fn= line.
            if key == "fn" and n and ob == binary and n not in seen:
                seen.add(n); out.append(n)
    return out
agent = []
for path in sorted(glob.glob(f"{tmp}/cg.agent.*")):
    agent += functions(path)
files = functions(f"{tmp}/cg.files")
in_agent, in_files = set(agent), set(files)
blocks = [
    ("agent and headless", [n for n in agent if n in in_files]),
    ("headless only", files),
    ("agent only", agent),
    ("devices", functions(f"{tmp}/cg.devices")),
    ("tui", functions(f"{tmp}/cg.tui")),
]
seen, out = set(), []
for name, block in blocks:
    before = len(out)
    for n in block:
        if n not in seen:
            seen.add(n); out.append(n)
    print(f"{name}: {len(out) - before} functions", file=sys.stderr)
print("\n".join(out))
PY
wc -l link/symbol-order.txt
