#!/usr/bin/env bash
# Fuzz run of the cargo-fuzz targets in fuzz/ (see fuzz/README.md): installs cargo-fuzz when
# missing, builds every target once, then runs each for FUZZ_SECONDS (default 30) from a
# scratch corpus seeded with fuzz/seeds/<target> and fuzz/regressions/<target>. Fails when any
# target crashes, panics, times out or runs out of memory, and prints the reproducer.
#
#   bash tests/fuzz.sh                      # every target, 30 s each (CI)
#   FUZZ_SECONDS=3600 bash tests/fuzz.sh    # before a release
#   bash tests/fuzz.sh sdp ui_text          # some targets only
#   FUZZ_CORPUS=fuzz/corpus bash tests/fuzz.sh   # keep the grown corpus between runs
#
# Stable Rust is enough: without a sanitizer cargo-fuzz passes no -Z flag.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
seconds=${FUZZ_SECONDS:-30}
all=(sip_message sdp cti_template ui_text cti_capture front_end media_rx)
# Inputs longer than a real one buy no coverage and slow every run.
declare -A max_len=(
    [sip_message]=16384
    [sdp]=4096
    [cti_template]=4096
    [ui_text]=4096
    [cti_capture]=8192
    [front_end]=4096
    [media_rx]=4096
)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
for t in "${targets[@]}"; do
    [ -n "${max_len[$t]:-}" ] || { echo "fuzz: unknown target $t (known: ${all[*]})" >&2; exit 2; }
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# No sanitizer: the targets are safe Rust, and panics (including overflow and
# debug-assertion failures, on in cargo-fuzz builds) are what they find; see fuzz/README.md.
flags=(--sanitizer none)

# A relative FUZZ_CORPUS is relative to the repository's root.
if [ -n "${FUZZ_CORPUS:-}" ]; then
    mkdir -p "$FUZZ_CORPUS"
    work=$(cd "$FUZZ_CORPUS" && pwd)
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/ctiphone-fuzz.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi

cd "$root/fuzz"
start=$SECONDS
cargo fuzz build "${flags[@]}"
echo "fuzz: built in $((SECONDS - start)) s"

passed=0
failed=()
for t in "${targets[@]}"; do
    corpus=$work/$t
    mkdir -p "$corpus"
    for d in seeds regressions; do
        if [ -d "$d/$t" ]; then cp -n "$d/$t"/* "$corpus"/ 2>/dev/null || true; fi
    done
    log=$work/$t.log
    status=0
    cargo fuzz run "${flags[@]}" "$t" "$corpus" -- \
        -max_total_time="$seconds" -max_len="${max_len[$t]}" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        echo "fuzz: $t ok: ${runs:-?} runs in ${seconds} s ($(( ${runs:-0} / (seconds > 0 ? seconds : 1) )) exec/s), corpus $(ls "$corpus" | wc -l)"
    else
        failed+=("$t")
        mkdir -p "artifacts/$t"
        cp "$log" "artifacts/$t/last-run.log"
        echo "fuzz: $t FAILED (exit $status); full log: $root/fuzz/artifacts/$t/last-run.log"
        # The panic message (or libFuzzer's timeout / out-of-memory report), without the
        # backtrace and the input's byte dump.
        grep -E -A4 'panicked at|^==[0-9]+== ERROR: libFuzzer|^SUMMARY: ' "$log" |
            grep -v -E '^(stack backtrace|--)' | head -n 30 | sed 's/^/    /' || true
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        if [ -n "$artifact" ]; then
            echo "fuzz: reproducer: $artifact"
            echo "fuzz: replay it: (cd fuzz && cargo fuzz run ${flags[*]} $t $artifact)"
            echo "fuzz: once fixed, keep it as fuzz/regressions/$t/<name>"
        fi
    fi
done

[ ${#failed[@]} -eq 0 ] || echo "fuzz: failed: ${failed[*]}"
echo "fuzz: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
