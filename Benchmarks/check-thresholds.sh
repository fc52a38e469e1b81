#!/usr/bin/env bash
# `make bench-check`: builds and runs the micro-benchmarks (release) and compares each one's
# p90 figures with Thresholds/, within the tolerances of
# Sources/ShipLogBenchmarkSupport/Tolerances.swift. A benchmark that falls behind is run again,
# up to BENCH_CHECK_ATTEMPTS runs in all (default 3), and fails the check only when it falls
# behind in every one: a burst of load from another process rarely lasts that long, a
# regression in the code does. Exits 0 when every benchmark is within its thresholds (or
# better: then it says so, and update-thresholds.sh can record the gain), 1 otherwise.
# Extra arguments go to the plugin's first run, e.g. `--filter 'CRC32C-.*'`.
set -uo pipefail
cd "$(dirname "$0")"
SWIFT=${SWIFT:-swift}
ATTEMPTS=${BENCH_CHECK_ATTEMPTS:-3}

output=$(mktemp)
trap 'rm -f "$output"' EXIT
filters=("$@")
for attempt in $(seq 1 "$ATTEMPTS"); do
    echo "bench-check: run $attempt of at most $ATTEMPTS (load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"
    "$SWIFT" package benchmark thresholds check --no-progress "${filters[@]}" 2>&1 | tee "$output"
    if grep -aq "is EQUAL to the defined thresholds" "$output"; then
        echo "bench-check: every benchmark is within its thresholds"
        exit 0
    elif grep -aq "is BETTER than the defined thresholds" "$output"; then
        echo "bench-check: no regression; some benchmarks beat their thresholds by more than the"
        echo "bench-check: tolerance (above): Benchmarks/update-thresholds.sh records a lasting gain"
        exit 0
    elif ! grep -aq "is WORSE than the defined thresholds" "$output"; then
        echo "bench-check: the benchmarks did not run to a comparison (build failure or crash, above)" >&2
        exit 1
    fi
    # Names are letters, digits and '-' only, so each is its own exact --filter pattern.
    regressed=$(grep -ao "Deviations worse than threshold for [A-Za-z0-9]*:[A-Za-z0-9-]*" "$output" \
        | sed 's/.*://' | sort -u)
    filters=()
    for name in $regressed; do filters+=(--filter "$name"); done
    echo "bench-check: behind the thresholds in run $attempt: $(echo $regressed)"
done
echo "bench-check: FAILED: behind the thresholds in $ATTEMPTS runs: $(echo $regressed)" >&2
echo "bench-check: a deliberate slowdown? Run Benchmarks/update-thresholds.sh on a quiet machine." >&2
exit 1
