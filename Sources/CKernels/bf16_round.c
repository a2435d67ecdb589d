// Float32 rounded to bfloat16 with the instruction oneDNN's reorders use on CPUs that multiply
// bfloat16 (vcvtneps2bf16: to nearest, ties to even, subnormal inputs as zero), so that a copy made
// here is, bit for bit, what a bf16 convolution would round the same values to itself.
#include "kernels.h"

#include <immintrin.h>
#include <string.h>

__attribute__((target("avx512f,avx512bf16,avx512vl"))) static void round_avx512(const float *source,
                                                                               uint16_t *target, int64_t count) {
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        const __m256bh rounded = _mm512_cvtneps_pbh(_mm512_loadu_ps(source + i));
        _mm256_storeu_si256((__m256i *)(target + i), (__m256i)rounded);
    }
    if (i < count) {
        const __mmask16 lanes = (__mmask16)((1u << (count - i)) - 1);
        const __m256bh rounded = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lanes, source + i));
        _mm256_mask_storeu_epi16(target + i, lanes, (__m256i)rounded);
    }
}

/// The instruction's result in plain C, for CPUs without it.
static uint16_t round_one(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7f800000u) == 0) bits &= 0x80000000u;  // subnormal: signed zero
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits | 0x00400000u) >> 16);  // NaN: quiet
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

void maxq_widen_bf16(const uint16_t *source, float *target, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        const uint32_t bits = (uint32_t)source[i] << 16;
        memcpy(target + i, &bits, sizeof bits);
    }
}

void maxq_round_to_bf16(const float *source, uint16_t *target, int64_t count) {
    static int has_instruction = -1;  // unknown until the first call; every thread finds the same
    int known = __atomic_load_n(&has_instruction, __ATOMIC_RELAXED);
    if (known < 0) {
        known = maxq_cpu_has_avx512_bf16();
        __atomic_store_n(&has_instruction, known, __ATOMIC_RELAXED);
    }
    if (known) {
        round_avx512(source, target, count);
        return;
    }
    for (int64_t i = 0; i < count; i++) target[i] = round_one(source[i]);
}
