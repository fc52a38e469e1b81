#!/usr/bin/env bash
# Source-based coverage of what a fuzz corpus reaches.
#
#   Fuzz/coverage.sh TARGET [CORPUS_DIR...]
#
# Builds TARGET with -profile-coverage-mapping (no ASan; libFuzzer only for its main) into
# .build-fuzz/cov/, replays the corpus (default: the working corpus .build-fuzz/work/TARGET if it
# exists, else Fuzz/corpus/TARGET) once, and prints `llvm-cov report` for the library sources.
# HTML: .build-fuzz/cov/TARGET-html/index.html.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
[ $# -ge 1 ] || { echo "usage: Fuzz/coverage.sh TARGET [CORPUS_DIR...]" >&2; exit 2; }
TARGET="$1"
shift
CORPORA=("$@")
if [ ${#CORPORA[@]} -eq 0 ]; then
    if [ -d "$ROOT/.build-fuzz/work/$TARGET" ]; then CORPORA=("$ROOT/.build-fuzz/work/$TARGET"); else CORPORA=("$ROOT/Fuzz/corpus/${TARGET%_big}"); fi
fi
SWIFTC="${SWIFTC:-swiftc}"
TOOLBIN="$(dirname "$(command -v "$SWIFTC")")"
CLANG="${CLANG:-$TOOLBIN/clang}"
COV="$ROOT/.build-fuzz/cov"
MOD="$COV/modules"
OBJ="$COV/obj"
mkdir -p "$MOD/CShipLogSupport" "$OBJ"
cat >"$MOD/CShipLogSupport/module.modulemap" <<EOF
module CShipLogSupport {
    header "$ROOT/Sources/CShipLogSupport/include/CShipLogSupport.h"
    export *
}
EOF
COMMON=(
    -swift-version 6 -enable-upcoming-feature ExistentialAny -enable-upcoming-feature InternalImportsByDefault
    -package-name shiplog -wmo -g -O -assert-config Debug -I "$ROOT/Sources/CLZ4" -I "$MOD" -I "$MOD/CShipLogSupport"
    -profile-generate -profile-coverage-mapping
)
C_OBJS=()
for src in "$ROOT"/Sources/CShipLogSupport/*.c; do
    name="$(basename "$src" .c)"
    "$CLANG" -O2 -g -fprofile-instr-generate -fcoverage-mapping -I "$ROOT/Sources/CShipLogSupport/include" -c "$src" -o "$OBJ/$name.o"
    C_OBJS+=("$OBJ/$name.o")
done
for m in ShipLogFormat ShipLogStorage ShipLogProtocol; do
    "$SWIFTC" "${COMMON[@]}" -parse-as-library -module-name "$m" -emit-module -emit-module-path "$MOD/$m.swiftmodule" \
        -c "$ROOT"/Sources/"$m"/*.swift -o "$OBJ/$m.o"
done
SRC="$ROOT/Fuzz/targets/$TARGET.swift"
DEFINES=()
if [ "$TARGET" = segment_scanner_big ]; then SRC="$ROOT/Fuzz/targets/segment_scanner.swift"; DEFINES=(-D FUZZ_BIG_SEGMENTS); fi
"$SWIFTC" "${COMMON[@]}" -parse-as-library -module-name "fuzz_$TARGET" ${DEFINES[@]+"${DEFINES[@]}"} \
    -c "$SRC" "$ROOT/Fuzz/targets/Common.swift" -o "$OBJ/fuzz_$TARGET.o"
"$SWIFTC" -sanitize=fuzzer -profile-generate -use-ld=lld "$OBJ/fuzz_$TARGET.o" "$OBJ"/ShipLog*.o "${C_OBJS[@]}" -llz4 \
    -o "$COV/$TARGET"

rm -f "$COV/$TARGET".*.profraw
SWIFT_BACKTRACE=enable=no LLVM_PROFILE_FILE="$COV/$TARGET.%p.profraw" FUZZ_SKIP_CHECKS="${FUZZ_SKIP_CHECKS:-torn-signature}" \
    "$COV/$TARGET" -runs=0 "${CORPORA[@]}" >"$COV/$TARGET-replay.log" 2>&1 || {
    echo "coverage.sh: replay failed, see $COV/$TARGET-replay.log" >&2
    exit 1
}
"$TOOLBIN/llvm-profdata" merge -sparse "$COV/$TARGET".*.profraw -o "$COV/$TARGET.profdata"
SOURCES=(
    "$ROOT/Sources/ShipLogFormat" "$ROOT/Sources/ShipLogStorage/SegmentScanner.swift"
    "$ROOT/Sources/ShipLogStorage/SegmentFile.swift" "$ROOT/Sources/CShipLogSupport"
)
[ "$TARGET" = message_decoder ] && SOURCES=("$ROOT/Sources/ShipLogProtocol")
"$TOOLBIN/llvm-cov" report "$COV/$TARGET" -instr-profile="$COV/$TARGET.profdata" "${SOURCES[@]}"
"$TOOLBIN/llvm-cov" show "$COV/$TARGET" -instr-profile="$COV/$TARGET.profdata" -format=html \
    -output-dir="$COV/$TARGET-html" "${SOURCES[@]}" >/dev/null
echo "html: $COV/$TARGET-html/index.html"
