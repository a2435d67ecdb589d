// N:M sparse convolution, weight-stationary, as implicit GEMM without an im2col buffer: each
// output line is accumulated in registers, 64 pixels at a time, by broadcasting every kept weight
// of the output channel against the 64 contiguous input values it meets. The caller lays the
// input out so that those are contiguous (padded, split by phase for stride 2) and turns each kept
// weight's input channel and kernel position into an offset once. Unlike the mask kernels, the
// levels may differ in the last bits: this file lets the compiler fuse multiply-adds where the CPU
// has FMA.
#include "levels.h"

#pragma STDC FP_CONTRACT ON

static inline float clamp(float v, float lower, float upper) { return v < lower ? lower : (v > upper ? upper : v); }

// COUNT output pixels from `start`; a constant COUNT keeps the accumulators in registers.
#define BLOCK(COUNT)                                                                          \
    do {                                                                                      \
        float acc[COUNT];                                                                     \
        for (int t = 0; t < COUNT; t++) acc[t] = b;                                           \
        for (int64_t k = 0; k < kept; k++) {                                                  \
            const float weight = w[k];                                                        \
            const float *x = source + c[k] + start;                                           \
            for (int t = 0; t < COUNT; t++) acc[t] += weight * x[t];                          \
        }                                                                                     \
        for (int t = 0; t < COUNT; t++) y[start + t] = clamp(acc[t], lower, upper);           \
    } while (0)

__attribute__((always_inline)) static inline void maxq_nm_conv_lines_body(
    const float *restrict source, const int32_t *restrict offsets, const float *restrict values, int64_t kept,
    const float *restrict bias, int64_t first_output, int64_t end_output, int64_t length, float lower, float upper,
    float *restrict output) {
    // Pixel blocks outside, output channels inside: the block's inputs (64 pixels of every input
    // channel) stay in cache while all the task's output channels read them.
    int64_t start = 0;
    for (; start + 64 <= length; start += 64) {
        for (int64_t o = first_output; o < end_output; o++) {
            const float *w = values + o * kept;
            const int32_t *c = offsets + o * kept;
            const float b = bias[o];
            float *y = output + o * length;
            BLOCK(64);
        }
    }
    for (int64_t o = first_output; o < end_output; o++) {
        const float *w = values + o * kept;
        const int32_t *c = offsets + o * kept;
        const float b = bias[o];
        float *y = output + o * length;
        switch (length - start) {
        case 48: BLOCK(48); break;
        case 32: BLOCK(32); break;
        case 16: BLOCK(16); break;
        default: break;
        }
    }
}

MAXQ_LEVELS(maxq_nm_conv_lines,
            (const float *restrict source, const int32_t *restrict offsets, const float *restrict values,
             int64_t kept, const float *restrict bias, int64_t first_output, int64_t end_output, int64_t length,
             float lower, float upper, float *restrict output),
            (source, offsets, values, kept, bias, first_output, end_output, length, lower, upper, output))
