#!/usr/bin/env bash
# Fuzzes the readers of untrusted files with libFuzzer and AddressSanitizer (debug build in
# .build/fuzz, separate from the normal one):
#   Scripts/fuzz.sh [SECONDS per target, default 900] [TARGET...]   (targets: pickle zip safetensors jpeg png nm)
# Seeds come from Tests/Fixtures (the kept corpus in Tests/Fixtures/fuzz/TARGET included); new
# inputs collect in .build/fuzz/corpus/TARGET; crashes are written to .build/fuzz/crashes/ and end
# the run with a non-zero status. Reproduce one with the normal build: `swift run maxq-fuzz TARGET
# FILE`. To refresh the kept corpus after a run (smallest inputs covering the same branches):
#   MAXQ_FUZZ_TARGET=T .build/fuzz/debug/maxq-fuzz -merge=1 -use_counters=0 Tests/Fixtures/fuzz/T .build/fuzz/corpus/T
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-900}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(pickle zip safetensors jpeg png nm)

swift build --scratch-path .build/fuzz --product maxq-fuzz \
    --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xcc -DFUZZING
binary=.build/fuzz/debug/maxq-fuzz
mkdir -p .build/fuzz/crashes

seed() {  # the fixtures a target starts from
    case $1 in
        pickle) for f in Tests/Fixtures/checkpoints/*.pth* Tests/Fixtures/hostile/*.pth; do
                    unzip -p "$f" '*/data.pkl' 2>/dev/null > ".build/fuzz/corpus/pickle/$(basename "$f").pkl" || true
                done ;;
        zip) cp Tests/Fixtures/checkpoints/*.pth* Tests/Fixtures/hostile/*.pth ".build/fuzz/corpus/zip/" ;;
        safetensors) cp Tests/Fixtures/masks/case0[0-3].*.safetensors Tests/Fixtures/hostile/*.safetensors \
                        ".build/fuzz/corpus/safetensors/" ;;
        jpeg) cp Tests/Fixtures/images/*.jpg Tests/Fixtures/images/jpeg/*.jpg Tests/Fixtures/hostile/*.jpg \
                 ".build/fuzz/corpus/jpeg/" ;;
        png) cp Tests/Fixtures/images/*.png Tests/Fixtures/hostile/*.png ".build/fuzz/corpus/png/" ;;
        nm) cp Tests/Fixtures/models/*.nm.safetensors ".build/fuzz/corpus/nm/" ;;
    esac
}

status=0
for target in "${targets[@]}"; do
    mkdir -p ".build/fuzz/corpus/$target"
    seed "$target"
    cp Tests/Fixtures/fuzz/"$target"/* ".build/fuzz/corpus/$target/"
    echo "fuzz: $target for ${seconds}s"
    # No Swift backtracer: a trap must reach AddressSanitizer/libFuzzer as the crash it is.
    SWIFT_BACKTRACE=enable=no MAXQ_FUZZ_TARGET=$target "$binary" ".build/fuzz/corpus/$target" -max_total_time="$seconds" \
        -rss_limit_mb=4096 -max_len=262144 -timeout=20 -artifact_prefix=".build/fuzz/crashes/$target-" \
        -print_final_stats=1 2>&1 | grep -E "^#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|cov:|ERROR|SUMMARY" \
        | tail -4 || status=1
    # crash-, leak-, oom- and timeout- files are failures; slow-unit- files only take long.
    if ls .build/fuzz/crashes/"$target"-{crash,leak,oom,timeout}-* >/dev/null 2>&1; then
        echo "fuzz: $target found crashes"
        status=1
    fi
done
exit $status
