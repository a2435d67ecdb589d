// Which instruction-set level the kernels run at: probed once, lowerable for tests.
#include "kernels.h"

static int lowered = -1;  // -1: not lowered

maxq_kernel_level maxq_supported_kernel_level(void) {
    static int supported = -1;
    int level = __atomic_load_n(&supported, __ATOMIC_RELAXED);
    if (level >= 0) return (maxq_kernel_level)level;
    __builtin_cpu_init();
    level = MAXQ_LEVEL_BASELINE;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2")) {
        level = MAXQ_LEVEL_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
            level = MAXQ_LEVEL_AVX512;
    }
    __atomic_store_n(&supported, level, __ATOMIC_RELAXED);
    return (maxq_kernel_level)level;
}

maxq_kernel_level maxq_active_kernel_level(void) {
    const maxq_kernel_level supported = maxq_supported_kernel_level();
    const int level = __atomic_load_n(&lowered, __ATOMIC_RELAXED);
    return level >= 0 && level < (int)supported ? (maxq_kernel_level)level : supported;
}

void maxq_use_kernel_level(maxq_kernel_level level) { __atomic_store_n(&lowered, (int)level, __ATOMIC_RELAXED); }
