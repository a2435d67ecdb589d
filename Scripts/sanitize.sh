#!/usr/bin/env bash
# The whole test suite under a sanitizer (debug build, its own scratch path):
#   Scripts/sanitize.sh address     AddressSanitizer
#   Scripts/sanitize.sh thread      ThreadSanitizer
# libgomp (the OpenMP runtime of oneDNN and of our parallel loops) is not instrumented, so
# ThreadSanitizer would report its barriers as races: under `thread`, OpenMP regions run on one
# thread (OMP_NUM_THREADS=1) and what is checked is our own concurrency (test cases running at
# once, the data loader's threads, locks around shared state).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: Scripts/sanitize.sh address|thread}
scratch=.build/sanitize-$kind
swift build --build-tests --sanitize="$kind" --scratch-path "$scratch"
log="$scratch/test.log"
status=0
if [ "$kind" = thread ]; then
    OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=0" \
        swift test --skip-build --sanitize=thread --scratch-path "$scratch" > "$log" 2>&1 || status=$?
else
    ASAN_OPTIONS="detect_leaks=0" swift test --skip-build --sanitize=address --scratch-path "$scratch" > "$log" 2>&1 || status=$?
fi
reports=$(grep -c "WARNING: ThreadSanitizer\|ERROR: AddressSanitizer" "$log" || true)
grep -E "Test run with" "$log" | tail -1
echo "sanitize $kind: exit $status, $reports sanitizer reports (log: $log)"
[ "$status" -eq 0 ] && [ "$reports" -eq 0 ]
