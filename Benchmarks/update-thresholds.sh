#!/usr/bin/env bash
# Runs the micro-benchmarks and writes their p90 figures to Thresholds/, the reference that
# `make bench-check` (check-thresholds.sh) compares with. Run it on a quiet machine (no other
# build or benchmark on the cores) after a change that makes the engine faster or slower on
# purpose, and commit Thresholds/ with that change. Extra arguments go to the plugin, e.g.
# `--filter 'CRC32C-.*'` to update some benchmarks only.
set -euo pipefail
cd "$(dirname "$0")"
SWIFT=${SWIFT:-swift}

"$SWIFT" package --allow-writing-to-package-directory benchmark thresholds update --no-progress "$@"

# ordo-one/benchmark 1.38 writes the 90th percentile of the throughput samples in ascending
# order (the fast tail), but `thresholds check` compares the p90 of its reversed percentiles
# (the slow tail, like the p90 of wall clock). With a wide distribution the two differ several
# times over and every check fails. Throughput is 1e9 / wall-clock ns per sample, so the slow
# tail's throughput is 1e9 / the wall-clock p90: write that.
for file in Thresholds/*.p90.json; do
    wall=$(sed -n 's/.*"wallClock" : \([0-9]*\).*/\1/p' "$file")
    if [ -z "$wall" ] || [ "$wall" -le 0 ]; then continue; fi
    throughput=$(((1000000000 + wall / 2) / wall))
    sed -i "s/\"throughput\" : [0-9]*/\"throughput\" : $throughput/" "$file"
done
echo "update-thresholds: wrote $(ls Thresholds/*.p90.json | wc -l) files under Benchmarks/Thresholds/"
