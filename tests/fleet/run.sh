#!/usr/bin/env bash
# The fleet benchmark with a small N, as CI runs it (tests/fleet.rs runs this script with
# N = 10): a throwaway PostgreSQL, Kamailio's agent group, the demo CRM, N headless phones with
# central history and CTI, sipp calling them at CPS calls per second for SECS seconds, and
# PostgreSQL stopped for OUTAGE seconds in the middle. Prints the bench's JSON object and fails
# unless every answered call is exactly one row in PostgreSQL at its final state.
#   bash tests/fleet/run.sh [N]             # N agents (default 10)
#   CPS=5 SECS=60 OUTAGE=30 bash tests/fleet/run.sh 50
#   CTIPHONE=path/to/ctiphone               # the binary (default: target/release, else debug)
# Needs postgresql, kamailio and sip-tester (tests/run.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10}
BIN=${CTIPHONE:-}
if [ -z "$BIN" ]; then
  for b in target/release/ctiphone target/debug/ctiphone; do
    if [ -x "$b" ]; then BIN=$b; break; fi
  done
fi
[ -n "$BIN" ] || { echo "no ctiphone binary: cargo build --release first" >&2; exit 2; }
out=$("$BIN" bench fleet --agents "$N" --cps "${CPS:-2}" --secs "${SECS:-20}" \
  --outage "${OUTAGE:-5}" --hold "${HOLD:-2}" --json) || {
  echo "ctiphone bench fleet failed: $out" >&2
  exit 1
}
echo "$out"
python3 - "$out" <<'PY'
import json, sys
v = json.loads(sys.argv[1])
bad = {k: v[k] for k in ("lost", "duplicated", "stale", "answered_not_so_recorded") if v[k] != 0}
if v["rows_answered"] != v["answered"]:
    bad["rows_answered"] = f'{v["rows_answered"]} for {v["answered"]} calls answered'
if bad:
    sys.exit(f"fleet of {v['agents']}: rows in PostgreSQL do not match the calls: {bad}")
PY
