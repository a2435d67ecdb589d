// Pillow's fixed-point bilinear resampling passes (docs: MaxQData's PillowResample.swift): integer
// arithmetic, so every level gives the same bytes. Here because 32-bit multiplies vectorise well
// only from SSE4.1 on, which a baseline build cannot assume.
#include "levels.h"

enum { PRECISION_BITS = 32 - 8 - 2 };

static inline uint8_t clip8(int32_t value) {
    const int32_t shifted = value >> PRECISION_BITS;
    return (uint8_t)(shifted < 0 ? 0 : (shifted > 255 ? 255 : shifted));
}

__attribute__((always_inline)) static inline void maxq_resample_row_horizontal_body(
    const uint8_t *restrict row, int64_t first_column, int64_t columns, const int64_t *restrict first,
    const int64_t *restrict count, const int32_t *restrict weights, int64_t taps, uint8_t *restrict out) {
    const int32_t bias = 1 << (PRECISION_BITS - 1);
    for (int64_t t = 0; t < columns; t++) {
        const int64_t x = first_column + t;
        const int32_t *k = weights + x * taps;
        const uint8_t *p = row + first[x] * 3;
        int32_t s0 = bias, s1 = bias, s2 = bias;
        for (int64_t i = 0; i < count[x]; i++) {
            s0 += (int32_t)p[3 * i] * k[i];
            s1 += (int32_t)p[3 * i + 1] * k[i];
            s2 += (int32_t)p[3 * i + 2] * k[i];
        }
        out[3 * t] = clip8(s0);
        out[3 * t + 1] = clip8(s1);
        out[3 * t + 2] = clip8(s2);
    }
}

__attribute__((always_inline)) static inline void maxq_resample_row_vertical_body(
    const uint8_t *restrict rows, int64_t row_length, int64_t count, const int32_t *restrict weights,
    int32_t *restrict sums, uint8_t *restrict out) {
    const int32_t bias = 1 << (PRECISION_BITS - 1);
    for (int64_t j = 0; j < row_length; j++) sums[j] = bias;
    for (int64_t i = 0; i < count; i++) {
        const int32_t w = weights[i];
        const uint8_t *input = rows + i * row_length;
        for (int64_t j = 0; j < row_length; j++) sums[j] += (int32_t)input[j] * w;
    }
    for (int64_t j = 0; j < row_length; j++) out[j] = clip8(sums[j]);
}

MAXQ_LEVELS(maxq_resample_row_horizontal,
            (const uint8_t *restrict row, int64_t first_column, int64_t columns, const int64_t *restrict first,
             const int64_t *restrict count, const int32_t *restrict weights, int64_t taps, uint8_t *restrict out),
            (row, first_column, columns, first, count, weights, taps, out))

MAXQ_LEVELS(maxq_resample_row_vertical,
            (const uint8_t *restrict rows, int64_t row_length, int64_t count, const int32_t *restrict weights,
             int32_t *restrict sums, uint8_t *restrict out),
            (rows, row_length, count, weights, sums, out))
