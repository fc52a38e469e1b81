#!/usr/bin/env bash
# Runs one fuzz target for SECONDS seconds.
#
#   Fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#
# * Builds the target first if .build-fuzz/bin/TARGET is missing (Fuzz/build.sh rebuilds).
# * Replays Fuzz/regressions/TARGET/* first: a regression that crashes again fails the run.
# * Fuzzes a working copy of the committed corpus: Fuzz/corpus/TARGET is copied into
#   .build-fuzz/work/TARGET (which keeps what earlier runs found); the committed corpus is
#   never written to.
# * Crashes, timeouts and OOMs go to .build-fuzz/findings/TARGET/; the log of the run to
#   .build-fuzz/logs/. On a finding the script prints the reproducer path and exits 1.
#
# Environment: FUZZ_SKIP_CHECKS=id,... disables named invariants (see Fuzz/README.md);
# FUZZ_VERBOSE=1 makes a target print what it decoded (use when replaying one input).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [ $# -lt 2 ]; then
    echo "usage: Fuzz/run.sh TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
TARGET="$1"
SECONDS_TO_RUN="$2"
shift 2

OUT="$ROOT/.build-fuzz"
BIN="$OUT/bin/$TARGET"
CORPUS="$ROOT/Fuzz/corpus/${TARGET%_big}"  # segment_scanner_big shares segment_scanner's seeds
REGRESSIONS="$ROOT/Fuzz/regressions/$TARGET"
WORK="$OUT/work/$TARGET"
FINDINGS="$OUT/findings/$TARGET"
LOGS="$OUT/logs"

case "$TARGET" in
    batch_decoder) MAX_LEN=32768 ;;
    segment_scanner) MAX_LEN=65536 ;;
    segment_scanner_big) MAX_LEN=16384 ;;
    footer_decoder) MAX_LEN=8192 ;;
    message_decoder) MAX_LEN=16384 ;;
    *) echo "run.sh: unknown target $TARGET (batch_decoder, segment_scanner, segment_scanner_big, footer_decoder, message_decoder)" >&2; exit 2 ;;
esac
[ -x "$BIN" ] || "$ROOT/Fuzz/build.sh" "$TARGET"
mkdir -p "$WORK" "$FINDINGS" "$LOGS"
[ -d "$CORPUS" ] && cp -n "$CORPUS"/* "$WORK"/ 2>/dev/null || true

# Swift's backtracer would intercept the crash signals libFuzzer needs; the Swift runtime keeps
# allocations alive on purpose (metadata caches), so LeakSanitizer would only report noise.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0:abort_on_error=0:symbolize=1}"

# The largest single allocation the decoders may make from hostile input is a 16 MiB record
# block (FormatLimits.batchUncompressedBytesMax); anything over 64 MiB is a bug.
FLAGS=(
    -max_total_time="$SECONDS_TO_RUN" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64
    -dict="$ROOT/Fuzz/shiplog.dict" -artifact_prefix="$FINDINGS/" -print_final_stats=1 -reload=0
)

STAMP="$(date +%Y%m%d-%H%M%S)"
LOG="$LOGS/$TARGET-$STAMP.log"

report_crash() {
    local log="$1"
    local unit
    unit="$(grep -o 'Test unit written to .*' "$log" | tail -1 | sed 's/Test unit written to //')"
    echo "run.sh: $TARGET FAILED — see $log" >&2
    grep -m1 -E 'FUZZ INVARIANT VIOLATED|ERROR: AddressSanitizer|ERROR: libFuzzer|Fatal error|SUMMARY' "$log" >&2 || true
    if [ -n "$unit" ]; then
        echo "reproducer: $unit" >&2
        echo "replay:     SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 FUZZ_VERBOSE=1 $BIN $unit" >&2
        echo "minimize:   SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 $BIN -minimize_crash=1 -max_total_time=60 -exact_artifact_path=$unit.min $unit" >&2
    fi
}

# 1. Regressions must stay fixed.
if [ -d "$REGRESSIONS" ] && [ -n "$(ls -A "$REGRESSIONS" 2>/dev/null)" ]; then
    echo "== $TARGET: replaying $(ls "$REGRESSIONS" | wc -l) regression input(s)"
    if ! "$BIN" -runs=1 "$REGRESSIONS"/* >"$LOGS/$TARGET-$STAMP-regressions.log" 2>&1; then
        echo "run.sh: a regression input of $TARGET crashes again" >&2
        grep -E '^Running: ' "$LOGS/$TARGET-$STAMP-regressions.log" | tail -1 >&2 || true
        grep -m1 -E 'FUZZ INVARIANT VIOLATED|ERROR: AddressSanitizer|ERROR: libFuzzer|Fatal error' "$LOGS/$TARGET-$STAMP-regressions.log" >&2 || true
        echo "log: $LOGS/$TARGET-$STAMP-regressions.log" >&2
        exit 1
    fi
fi

# 2. Fuzz.
echo "== $TARGET: fuzzing for ${SECONDS_TO_RUN}s (corpus $WORK, findings $FINDINGS)"
set +e
"$BIN" "${FLAGS[@]}" "$@" "$WORK" >"$LOG" 2>&1
STATUS=$?
set -e
grep -E '^#[0-9]+.*(DONE|pulse)' "$LOG" | tail -1 || true
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$LOG" || true
if [ $STATUS -ne 0 ]; then
    report_crash "$LOG"
    exit 1
fi
echo "== $TARGET: no findings ($LOG)"
