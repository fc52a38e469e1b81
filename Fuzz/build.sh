#!/usr/bin/env bash
# Builds every libFuzzer target of ShipLog into .build-fuzz/bin/, outside SwiftPM.
#
#   Fuzz/build.sh            build all targets (+ the seed generator)
#   Fuzz/build.sh TARGET...  build only these targets
#
# Each library module is compiled once with swiftc (whole-module, -O with assertions kept:
# -assert-config Debug, so the library's own `assert`s — e.g. the bounds checks of
# readLittleEndian — stay armed), instrumented for libFuzzer (-sanitize=fuzzer: inline 8-bit
# counters, PC table, CMP tracing) and ASan; the C shims get the same with clang. The harness code
# itself gets ASan but no coverage, so that coverage reflects the code under test. Every target
# is linked with -sanitize=fuzzer,address. Only ShipLogFormat, ShipLogStorage and CShipLogSupport
# (+ liblz4) are needed, and ShipLogProtocol for message_decoder.
#
# Environment: SWIFTC (default: from PATH), CLANG (default: the clang next to swiftc), FUZZ_OPT (default -O).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/.build-fuzz"
SWIFTC="${SWIFTC:-swiftc}"
# The toolchain's own clang: it has the libFuzzer and ASan runtimes matching swiftc's.
TOOLCHAIN_CLANG="$(dirname "$(command -v "$SWIFTC" || echo /nonexistent/swiftc)")/clang"
if [ -z "${CLANG:-}" ]; then
    if [ -x "$TOOLCHAIN_CLANG" ]; then CLANG="$TOOLCHAIN_CLANG"; else CLANG=clang; fi
fi
OPT="${FUZZ_OPT:--O}"
ALL_TARGETS=(batch_decoder segment_scanner segment_scanner_big footer_decoder message_decoder)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")

command -v "$SWIFTC" >/dev/null || { echo "build.sh: $SWIFTC not found (Swift 6 toolchain needed)" >&2; exit 1; }
command -v "$CLANG" >/dev/null || { echo "build.sh: $CLANG not found (use the Swift toolchain's clang)" >&2; exit 1; }
if ! { pkg-config --exists liblz4 2>/dev/null || [ -e /usr/include/lz4.h ]; }; then
    echo "build.sh: liblz4 headers missing (apt-get install liblz4-dev)" >&2; exit 1
fi

MOD="$OUT/modules"
OBJ="$OUT/obj"
BIN="$OUT/bin"
PLAIN="$OUT/plain"  # uninstrumented build for the seed generator
mkdir -p "$MOD/CShipLogSupport" "$OBJ" "$BIN" "$PLAIN/modules/CShipLogSupport" "$PLAIN/obj"

# SwiftPM synthesises a module map for C targets; do the same outside Sources/.
for dir in "$MOD/CShipLogSupport" "$PLAIN/modules/CShipLogSupport"; do
    cat >"$dir/module.modulemap" <<EOF
module CShipLogSupport {
    header "$ROOT/Sources/CShipLogSupport/include/CShipLogSupport.h"
    export *
}
EOF
done

# Flags of Package.swift's `strict` settings, plus what SwiftPM would pass.
SWIFT_COMMON=(
    -swift-version 6 -enable-upcoming-feature ExistentialAny -enable-upcoming-feature InternalImportsByDefault
    -package-name shiplog -wmo -g
    -I "$ROOT/Sources/CLZ4"
)
FUZZ_FLAGS=("$OPT" -assert-config Debug -I "$MOD" -I "$MOD/CShipLogSupport")
PLAIN_FLAGS=(-O -I "$PLAIN/modules" -I "$PLAIN/modules/CShipLogSupport")

echo "== C shims"
C_OBJS=()
PLAIN_C_OBJS=()
for src in "$ROOT"/Sources/CShipLogSupport/*.c; do
    name="$(basename "$src" .c)"
    "$CLANG" -O2 -g -fsanitize=address,fuzzer-no-link -I "$ROOT/Sources/CShipLogSupport/include" -c "$src" -o "$OBJ/$name.o"
    "$CLANG" -O2 -g -I "$ROOT/Sources/CShipLogSupport/include" -c "$src" -o "$PLAIN/obj/$name.o"
    C_OBJS+=("$OBJ/$name.o")
    PLAIN_C_OBJS+=("$PLAIN/obj/$name.o")
done

# swift_module NAME SANITIZE OUTDIR-FLAGS...: compiles Sources/NAME/*.swift into OBJ/NAME.o + MOD/NAME.swiftmodule.
swift_module() {
    local name="$1" sanitize="$2" mod="$3" obj="$4"
    shift 4
    echo "== $name ($sanitize)"
    local sanitize_flags=()
    [ "$sanitize" != none ] && sanitize_flags=(-sanitize="$sanitize")
    "$SWIFTC" "${SWIFT_COMMON[@]}" "$@" "${sanitize_flags[@]}" -module-name "$name" \
        -parse-as-library -emit-module -emit-module-path "$mod/$name.swiftmodule" \
        -c "$ROOT"/Sources/"$name"/*.swift -o "$obj/$name.o"
}

swift_module ShipLogFormat fuzzer,address "$MOD" "$OBJ" "${FUZZ_FLAGS[@]}"
swift_module ShipLogStorage fuzzer,address "$MOD" "$OBJ" "${FUZZ_FLAGS[@]}"
LIB_OBJS=("$OBJ/ShipLogFormat.o" "$OBJ/ShipLogStorage.o" "${C_OBJS[@]}")
# The wire protocol (it needs only ShipLogFormat), compiled only when a target needs it.
if [[ " ${TARGETS[*]} " == *" message_decoder "* ]]; then
    swift_module ShipLogProtocol fuzzer,address "$MOD" "$OBJ" "${FUZZ_FLAGS[@]}"
fi

for target in "${TARGETS[@]}"; do
    src="$ROOT/Fuzz/targets/$target.swift"
    defines=()
    # segment_scanner_big: segment_scanner.swift with every input placed after ~1 MiB of batches.
    if [ "$target" = segment_scanner_big ]; then src="$ROOT/Fuzz/targets/segment_scanner.swift"; defines=(-D FUZZ_BIG_SEGMENTS); fi
    [ -f "$src" ] || { echo "build.sh: no target $target ($src)" >&2; exit 1; }
    echo "== target $target"
    # The harness itself gets ASan but no coverage: its reference checks would only add noise
    # (and cost) to the coverage signal. The link adds libFuzzer's runtime and main.
    "$SWIFTC" "${SWIFT_COMMON[@]}" "${FUZZ_FLAGS[@]}" -sanitize=address -parse-as-library -module-name "fuzz_$target" ${defines[@]+"${defines[@]}"} \
        -c "$src" "$ROOT/Fuzz/targets/Common.swift" -o "$OBJ/fuzz_$target.o"
    extra_objs=()
    [ "$target" = message_decoder ] && extra_objs=("$OBJ/ShipLogProtocol.o")
    "$SWIFTC" -sanitize=fuzzer,address -use-ld=lld "$OBJ/fuzz_$target.o" "${LIB_OBJS[@]}" ${extra_objs[@]+"${extra_objs[@]}"} -llz4 -o "$BIN/$target"
done

# Seed generator: uses the real encoders, so it links an uninstrumented ShipLogFormat.
if [ $# -eq 0 ]; then
    swift_module ShipLogFormat none "$PLAIN/modules" "$PLAIN/obj" "${PLAIN_FLAGS[@]}"
    echo "== make_seeds"
    # Top-level code (no -parse-as-library): a plain program.
    "$SWIFTC" "${SWIFT_COMMON[@]}" "${PLAIN_FLAGS[@]}" -module-name make_seeds \
        "$ROOT/Fuzz/tools/make_seeds.swift" "$PLAIN/obj/ShipLogFormat.o" "${PLAIN_C_OBJS[@]}" -use-ld=lld -llz4 -o "$BIN/make_seeds"
fi

echo "built: $(cd "$BIN" && ls | tr '\n' ' ')(in $BIN)"
