#!/bin/bash
# Fails if the binary uses instructions beyond baseline x86-64 (SSE2) outside the functions that
# run only after a CPU check (CKernels' *_avx2 / *_avx512 levels, CJPEG's decode_ac_refine_popcnt
# and _bmi2): a build flag such as -march or -target-cpu would otherwise make the program die with
# an illegal instruction on an older CPU.
#     Scripts/check_baseline_isa.sh .build/release/maxq
set -euo pipefail
binary=${1:-.build/release/maxq}
objdump -d --no-show-raw-insn "$binary" | awk '
    /^[0-9a-f]+ <.*>:$/ { name = $2; gated = name ~ /_(avx2|avx512|popcnt|bmi2)>:$/; next }
    gated { next }
    {
        mnemonic = $2
        bmi = mnemonic ~ /^(pdep|pext|shlx|sarx|shrx|andn|bzhi|mulx|rorx|popcnt|lzcnt)$/
        if (mnemonic ~ /^v[a-z]/ || $0 ~ /%[yz]mm|%k[0-7]/ || bmi) {
            if (!(name in seen)) { seen[name] = $0; count++ }
        }
    }
    END {
        for (name in seen) print "beyond baseline x86-64: " name " " seen[name]
        if (count > 0) exit 1
        print "baseline x86-64 outside the CPU-checked kernels"
    }'
