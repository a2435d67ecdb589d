// The MaxQ soft-term loop (docs/algorithm.md 3): a sigmoid per axis and entry, which dominates
// the mask computation; written here so that it runs 8 or 16 lanes wide where the CPU can.
#include "levels.h"

#pragma STDC FP_CONTRACT OFF

// Cephes' expf polynomial on a clamped argument; floor by truncation (baseline SSE2 has no
// vector floor), exact for the clamped range.
static inline float fast_exp(float value) {
    const float x = value < -87.3f ? -87.3f : (value > 88.7f ? 88.7f : value);
    const float t = x * 1.44269504f + 0.5f;
    float n = (float)(int32_t)t;
    n = n > t ? n - 1.0f : n;
    const float r = (x - n * 0.693359375f) + n * 2.1219444e-4f;
    float p = 1.98756915e-4f;
    p = p * r + 1.39819995e-3f;
    p = p * r + 8.3334519e-3f;
    p = p * r + 4.16657959e-2f;
    p = p * r + 1.66666655e-1f;
    p = p * r + 5.00000012e-1f;
    p = ((p * r) * r + r) + 1.0f;
    union { uint32_t bits; float value; } scale = {.bits = (uint32_t)((int32_t)n + 127) << 23};
    return p * scale.value;
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

// 1 unless the entry is among the axis's pruned ones (branch-free so that the loop vectorises).
static inline float keep(float v, maxq_axis_cut cut, int64_t index) {
    const int pruned = (v < cut.kth) | ((v == cut.kth) & (index <= cut.last_tied_index));
    return (float)(1 - pruned);
}

static inline float term(float v, maxq_axis_cut cut, int64_t index, float tau) {
    return keep(v, cut, index) * sigmoid((v - cut.theta) / tau);
}

__attribute__((always_inline)) static inline void maxq_soft_terms_row_body(
    float *restrict mask, const float *restrict magnitudes, int64_t count, maxq_axis_cut filter, int64_t filter_first,
    int64_t filter_step, const maxq_axis_cut *position, int64_t position_first, float tau) {
    if (position == 0) {
        for (int64_t j = 0; j < count; j++) {
            const float v = magnitudes[j];
            mask[j] *= 1.0f + term(v, filter, filter_first + j * filter_step, tau);
        }
        return;
    }
    const maxq_axis_cut cut = *position;
    for (int64_t j = 0; j < count; j++) {
        const float v = magnitudes[j];
        const float filter_term = term(v, filter, filter_first + j * filter_step, tau);
        mask[j] *= (1.0f + filter_term) + term(v, cut, position_first + j, tau);
    }
}

MAXQ_LEVELS(maxq_soft_terms_row,
            (float *restrict mask, const float *restrict magnitudes, int64_t count, maxq_axis_cut filter,
             int64_t filter_first, int64_t filter_step, const maxq_axis_cut *position, int64_t position_first,
             float tau),
            (mask, magnitudes, count, filter, filter_first, filter_step, position, position_first, tau))

float maxq_fast_exp(float x) { return fast_exp(x); }
