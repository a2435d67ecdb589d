// Compiles one kernel body for each level and dispatches on the active one. `name##_body` must
// be a static inline function taking `args`; the variants differ only in the instructions the
// compiler may use.
#ifndef MAXQ_LEVELS_H
#define MAXQ_LEVELS_H

#include "kernels.h"

static inline float maxq_clamp(float v, float lower, float upper) {
    return v < lower ? lower : (v > upper ? upper : v);
}

/// The cache lines of the `pixels` + 16 floats from `at`: the next `pixels` pixels (a multiple of 16)
/// of a sparse kernel's input run that starts up to 15 floats further (run starts are listed
/// rounded down to 16 floats).
__attribute__((always_inline)) static inline void maxq_prefetch_run(const float *at, int pixels) {
    for (int line = 0; line <= pixels / 16; line++) __builtin_prefetch(at + 16 * line, 0, 3);
}

#define MAXQ_AVX2 __attribute__((target("avx2,fma,bmi,bmi2")))
#define MAXQ_AVX512 __attribute__((target("avx2,fma,bmi,bmi2,avx512f,avx512vl,avx512bw,avx512dq")))

#define MAXQ_LEVELS(name, params, args)                                 \
    static void name##_baseline params { name##_body args; }            \
    MAXQ_AVX2 static void name##_avx2 params { name##_body args; }      \
    MAXQ_AVX512 static void name##_avx512 params { name##_body args; }  \
    void name params {                                                  \
        switch (maxq_active_kernel_level()) {                           \
        case MAXQ_LEVEL_AVX512: name##_avx512 args; break;              \
        case MAXQ_LEVEL_AVX2: name##_avx2 args; break;                  \
        default: name##_baseline args; break;                           \
        }                                                               \
    }

#endif
