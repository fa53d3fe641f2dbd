#!/usr/bin/env bash
# Regenerates link/symbol-order.txt: the functions the release binary runs when it starts, idles,
# takes a call with audio and recording, and draws the TUI, in the order the linker should place
# them (see docs/decisions.md, "Memory: the binary's layout"). Needs valgrind (callgrind).
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
cfg callee "$(printf '[audio]\ninput = "null"\noutput = "null"\n[recording]\nauto = true\ndir = "%s/rec"' "$T")"
cfg caller "$(printf '[audio]\ninput = "null"\noutput = "null"')"
wait_for() { # file, pattern, seconds
  for _ in $(seq $(( $3 * 10 ))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for $2 in $1" >&2; cat "$1" >&2; exit 1
}
# 1. headless: start, idle, one answered call with a tone and recording, DTMF, hang up, quit.
mkfifo "$T/callee.in" "$T/caller.in"
XDG_DATA_HOME=$T/data1 valgrind --tool=callgrind --demangle=no --dump-instr=no \
  --callgrind-out-file="$T/cg.headless" "$BIN" --config "$T/callee.toml" headless --auto-answer \
  < "$T/callee.in" > "$T/callee.out" 2> "$T/callee.err" &
exec 3> "$T/callee.in"
wait_for "$T/callee.out" listen 60
ADDR=$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$T/callee.out" | head -1)
sleep 5
XDG_DATA_HOME=$T/data2 "$BIN" --config "$T/caller.toml" headless --audio-in "$T/tone.wav" \
  < "$T/caller.in" > "$T/caller.out" 2>/dev/null &
exec 4> "$T/caller.in"
wait_for "$T/caller.out" listen 10
echo "{\"cmd\":\"dial\",\"to\":\"sip:callee@$ADDR\"}" >&4
wait_for "$T/caller.out" '"answered"' 60
sleep 6
echo '{"cmd":"dtmf","digits":"12#"}' >&4
sleep 2
echo '{"cmd":"hangup"}' >&4
wait_for "$T/callee.out" '"ended"' 30
sleep 2
echo '{"cmd":"quit"}' >&4
echo '{"cmd":"quit"}' >&3
wait
exec 3>&- 4>&-
# 2. the TUI: the built-in demo in a real terminal for a few seconds, a call answered and hung up.
if command -v tmux >/dev/null; then
  S=ctiphone-order-$$
  tmux -L "$S" new-session -d -x 120 -y 32 \
    "XDG_DATA_HOME=$T/data3 XDG_CONFIG_HOME=$T/cfg3 valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$T/cg.tui $BIN demo 2>$T/tui.err"
  keys() { for k in "$@"; do tmux -L "$S" send-keys "$k"; sleep 3; done; }
  sleep 25; keys a; sleep 5; keys x "?" Escape c Escape s Escape q y
  for _ in $(seq 60); do [ -s "$T/cg.tui" ] && break; sleep 0.5; done
  tmux -L "$S" kill-server 2>/dev/null || true
fi
# The functions of our binary that ran: headless first, then those only the TUI ran.
python3 - "$BIN" "$T"/cg.headless "$T"/cg.tui > link/symbol-order.txt <<'PY'
import re, sys
binary, files = sys.argv[1], sys.argv[2:]
seen, out = set(), []
for path in files:
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except FileNotFoundError:
        continue
    names, objs = {}, {}
    ob = None
    before = len(out)
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
    print(f"{path.rsplit('.', 1)[-1]}: {len(out) - before} functions", file=sys.stderr)
print("\n".join(out))
PY
wc -l link/symbol-order.txt
