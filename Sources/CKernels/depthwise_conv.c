// Depthwise 3x3 convolution (padding 1, stride 1 or 2) on planes of an NCHW or channel-major
// tensor, bias and clamp fused: what a deployed MobileNet runs between its sparse pointwise
// layers, which read and write those layouts. oneDNN's depthwise kernels want a channel-blocked
// layout, so each such layer cost a reorder in and one out around the convolution: three times the
// memory traffic. This kernel reads each input plane once and writes each output plane once. Measured per layer
// (mobilenet_v1, batch 16, `maxq bench infer --layers`), against oneDNN with its reorders:
// 32 channels at 112x112 3.9 -> 1.4-1.7 ms, 64 at 112x112 stride 2 5.1 -> 1.3, 512 at 14x14
// 0.71 -> 0.38-0.41, 1024 at 7x7 0.28 -> 0.21. At AVX-512 the taps outside the plane are masked-off
// lanes (not read); below it, a row's interior is a loop the compiler vectorizes and its first
// and last columns are summed one by one. Multiply-adds are fused where the CPU has FMA.
#include "levels.h"

#include <immintrin.h>
#include <stddef.h>

#pragma STDC FP_CONTRACT ON

/// Output pixel x of one row: the taps that fall inside the plane (rows given, NULL = padding).
static inline float depthwise_edge_pixel(const float *const rows[3], const float *w, float bias, int64_t width,
                                         int64_t stride, int64_t x) {
    float sum = bias;
    for (int ky = 0; ky < 3; ky++) {
        if (!rows[ky]) continue;
        for (int kx = 0; kx < 3; kx++) {
            const int64_t column = x * stride - 1 + kx;
            if (column >= 0 && column < width) sum += w[ky * 3 + kx] * rows[ky][column];
        }
    }
    return sum;
}

/// Columns first..<end of one output row, all of whose taps are inside the row (stride 1).
static inline void depthwise_interior_stride1(const float *restrict a, const float *restrict b,
                                              const float *restrict c, const float *w, float bias, float lower,
                                              float upper, int64_t first, int64_t end, float *restrict out) {
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    for (int64_t x = first; x < end; x++) {
        float v = bias + w0 * a[x - 1] + w1 * a[x] + w2 * a[x + 1];
        v += w3 * b[x - 1] + w4 * b[x] + w5 * b[x + 1];
        v += w6 * c[x - 1] + w7 * c[x] + w8 * c[x + 1];
        out[x] = maxq_clamp(v, lower, upper);
    }
}

/// The same at stride 2: output column x reads input columns 2x - 1, 2x and 2x + 1.
static inline void depthwise_interior_stride2(const float *restrict a, const float *restrict b,
                                              const float *restrict c, const float *w, float bias, float lower,
                                              float upper, int64_t first, int64_t end, float *restrict out) {
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    for (int64_t x = first; x < end; x++) {
        float v = bias + w0 * a[2 * x - 1] + w1 * a[2 * x] + w2 * a[2 * x + 1];
        v += w3 * b[2 * x - 1] + w4 * b[2 * x] + w5 * b[2 * x + 1];
        v += w6 * c[2 * x - 1] + w7 * c[2 * x] + w8 * c[2 * x + 1];
        out[x] = maxq_clamp(v, lower, upper);
    }
}

static inline void depthwise_generic_body(const float *input, int64_t channels, int64_t channel_run,
                                          int64_t height, int64_t width, int64_t stride, const float *weights,
                                          const float *bias, float lower, float upper, int64_t first_plane,
                                          int64_t end_plane, float *output, const float *zeros) {
    const int64_t out_height = (height - 1) / stride + 1, out_width = (width - 1) / stride + 1;
    // Columns whose taps all lie inside the row: 1 <= x and x * stride + 1 <= width - 1.
    const int64_t interior_end = width >= 3 ? (width - 2) / stride + 1 : 1;
    for (int64_t plane = first_plane; plane < end_plane; plane++) {
        const int64_t channel = plane / channel_run % channels;
        const float *w = weights + channel * 9, *source = input + plane * height * width;
        float *destination = output + plane * out_height * out_width;
        for (int64_t y = 0; y < out_height; y++) {
            const float *rows[3];
            for (int ky = 0; ky < 3; ky++) {
                const int64_t row = y * stride - 1 + ky;
                rows[ky] = row >= 0 && row < height ? source + row * width : NULL;
            }
            float *out = destination + y * out_width;
            const float *a = rows[0] ? rows[0] : zeros, *b = rows[1] ? rows[1] : zeros;
            const float *c = rows[2] ? rows[2] : zeros;
            if (interior_end > 1) {
                if (stride == 1)
                    depthwise_interior_stride1(a, b, c, w, bias[channel], lower, upper, 1, interior_end, out);
                else
                    depthwise_interior_stride2(a, b, c, w, bias[channel], lower, upper, 1, interior_end, out);
            }
            out[0] = maxq_clamp(depthwise_edge_pixel(rows, w, bias[channel], width, stride, 0), lower, upper);
            for (int64_t x = interior_end > 1 ? interior_end : 1; x < out_width; x++)
                out[x] = maxq_clamp(depthwise_edge_pixel(rows, w, bias[channel], width, stride, x), lower, upper);
        }
    }
}

/// Lanes first..<end of 16 (clipped to 0...16) as a mask.
MAXQ_AVX512 static inline __mmask16 depthwise_lanes_avx512(int64_t first, int64_t end) {
    first = first < 0 ? 0 : first;
    end = end > 16 ? 16 : end;
    return end <= first ? 0 : (__mmask16)(((1u << end) - 1) & ~((1u << first) - 1));
}

/// 16 input columns from `column` of a row of `width`, zero outside the row (masked-off lanes are
/// not read).
MAXQ_AVX512 static inline __m512 depthwise_load_avx512(const float *row, int64_t column, int64_t width) {
    return _mm512_maskz_loadu_ps(depthwise_lanes_avx512(-column, width - column), row + column);
}

/// The tap masks of vectors first..<first + count of a plane read as one flat run of height * width
/// outputs, 16 per vector (see `depthwise_stride1_avx512`): masks[v * 9 + (dy + 1) * 3 + dx + 1]
/// holds the lanes whose tap (dy, dx) lies inside the plane and in the output's row.
MAXQ_AVX512 static void depthwise_tap_masks_avx512(int64_t height, int64_t width, int64_t first, int64_t count,
                                                    __mmask16 *masks) {
    const int64_t pixels = height * width;
    const __m512i wrap = _mm512_set1_epi32((int)width), last = _mm512_set1_epi32((int)width - 1);
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t v = 0; v < count; v++) {
        const int64_t i = (first + v) * 16;
        // The lanes' columns: (i + lane) % width, from i % width counted up and wrapped.
        __m512i columns = _mm512_add_epi32(_mm512_set1_epi32((int)(i % width)),
                                           _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        for (__mmask16 over; (over = _mm512_cmpge_epi32_mask(columns, wrap));)
            columns = _mm512_mask_sub_epi32(columns, over, columns, wrap);
        const __mmask16 in_row[3] = {_mm512_cmpgt_epi32_mask(columns, zero), 0xFFFF,
                                     _mm512_cmplt_epi32_mask(columns, last)};
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                const int64_t at = i + dy * width + dx;
                masks[v * 9 + (dy + 1) * 3 + dx + 1] =
                    depthwise_lanes_avx512(-at, pixels - at) & depthwise_lanes_avx512(0, pixels - i) & in_row[dx + 1];
            }
    }
}

/// Stride 1 in the AVX-512 form: each plane as one flat run of height * width outputs in vectors
/// of 16, so that rows of 7 or 14 columns fill whole vectors too. Tap (dy, dx) of output i is
/// input i + dy * width + dx, read where it lies inside the plane and in the same row (masked-off
/// lanes are not read). All planes share the masks: they are made for up to 256 vectors at a
/// time, and every plane's vectors run through them.
MAXQ_AVX512 static void depthwise_stride1_avx512(const float *input, int64_t channels, int64_t channel_run,
                                                  int64_t height, int64_t width, const float *weights,
                                                  const float *bias, __m512 low, __m512 high, int64_t first_plane,
                                                  int64_t end_plane, float *output) {
    enum { BLOCK = 256 };
    const int64_t pixels = height * width, vectors = (pixels + 15) / 16;
    __mmask16 masks[BLOCK * 9];
    for (int64_t v0 = 0; v0 < vectors; v0 += BLOCK) {
        const int64_t count = vectors - v0 < BLOCK ? vectors - v0 : BLOCK;
        depthwise_tap_masks_avx512(height, width, v0, count, masks);
        for (int64_t plane = first_plane; plane < end_plane; plane++) {
            const int64_t channel = plane / channel_run % channels;
            __m512 w[9];
            for (int k = 0; k < 9; k++) w[k] = _mm512_set1_ps(weights[channel * 9 + k]);
            const __m512 b = _mm512_set1_ps(bias[channel]);
            const float *source = input + plane * pixels;
            float *out = output + plane * pixels;
            for (int64_t v = 0; v < count; v++) {
                const int64_t i = (v0 + v) * 16;
                const __mmask16 *m = masks + v * 9;
                __m512 sum = b;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        const int t = (dy + 1) * 3 + dx + 1;
                        sum = _mm512_fmadd_ps(w[t], _mm512_maskz_loadu_ps(m[t], source + i + dy * width + dx), sum);
                    }
                // NaN stays NaN: max and min return their second operand when either is NaN.
                sum = _mm512_min_ps(high, _mm512_max_ps(low, sum));
                _mm512_mask_storeu_ps(out + i, depthwise_lanes_avx512(0, pixels - i), sum);
            }
        }
    }
}

/// One plane at stride 2 in the AVX-512 form: each output row in vectors of 16 columns, the last
/// one masked; the even and odd input columns of two loads separated with permutes, columns
/// outside the row masked off (not read), rows outside the plane skipped.
MAXQ_AVX512 static void depthwise_plane_stride2_avx512(const float *source, int64_t height, int64_t width,
                                                        const __m512 w[9], __m512 b, __m512 low, __m512 high,
                                                        float *destination) {
    const int64_t out_height = (height - 1) / 2 + 1, out_width = (width - 1) / 2 + 1;
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t y = 0; y < out_height; y++) {
        float *out = destination + y * out_width;
        for (int64_t x = 0; x < out_width; x += 16) {
            __m512 sum = b;
            for (int ky = 0; ky < 3; ky++) {
                const int64_t r = y * 2 - 1 + ky;
                if (r < 0 || r >= height) continue;
                const float *row = source + r * width;
                const __m512 a0 = depthwise_load_avx512(row, 2 * x - 1, width);
                const __m512 a1 = depthwise_load_avx512(row, 2 * x + 15, width);
                const __m512 c0 = depthwise_load_avx512(row, 2 * x, width);
                const __m512 c1 = depthwise_load_avx512(row, 2 * x + 16, width);
                sum = _mm512_fmadd_ps(w[ky * 3], _mm512_permutex2var_ps(a0, evens, a1), sum);
                sum = _mm512_fmadd_ps(w[ky * 3 + 1], _mm512_permutex2var_ps(c0, evens, c1), sum);
                sum = _mm512_fmadd_ps(w[ky * 3 + 2], _mm512_permutex2var_ps(c0, odds, c1), sum);
            }
            sum = _mm512_min_ps(high, _mm512_max_ps(low, sum));
            _mm512_mask_storeu_ps(out + x, depthwise_lanes_avx512(0, out_width - x), sum);
        }
    }
}

MAXQ_AVX512 static void depthwise_planes_avx512(const float *input, int64_t channels, int64_t channel_run,
                                                 int64_t height, int64_t width, int64_t stride, const float *weights,
                                                 const float *bias, float lower, float upper, int64_t first_plane,
                                                 int64_t end_plane, float *output) {
    const __m512 low = _mm512_set1_ps(lower), high = _mm512_set1_ps(upper);
    if (stride == 1) {
        depthwise_stride1_avx512(input, channels, channel_run, height, width, weights, bias, low, high, first_plane,
                                 end_plane, output);
        return;
    }
    const int64_t out_pixels = ((height - 1) / 2 + 1) * ((width - 1) / 2 + 1);
    for (int64_t plane = first_plane; plane < end_plane; plane++) {
        const int64_t channel = plane / channel_run % channels;
        __m512 w[9];
        for (int k = 0; k < 9; k++) w[k] = _mm512_set1_ps(weights[channel * 9 + k]);
        depthwise_plane_stride2_avx512(input + plane * height * width, height, width, w,
                                       _mm512_set1_ps(bias[channel]), low, high, output + plane * out_pixels);
    }
}

#define DEPTHWISE_PARAMETERS                                                                                   \
    (const float *input, int64_t channels, int64_t channel_run, int64_t height, int64_t width, int64_t stride,     \
     const float *weights, const float *bias, float lower, float upper, int64_t first_plane, int64_t end_plane,    \
     float *output, const float *zeros)
#define DEPTHWISE_ARGUMENTS                                                                                    \
    (input, channels, channel_run, height, width, stride, weights, bias, lower, upper, first_plane, end_plane,     \
     output, zeros)
static void depthwise_generic_baseline DEPTHWISE_PARAMETERS { depthwise_generic_body DEPTHWISE_ARGUMENTS; }
MAXQ_AVX2 static void depthwise_generic_avx2 DEPTHWISE_PARAMETERS { depthwise_generic_body DEPTHWISE_ARGUMENTS; }

void maxq_depthwise3x3 DEPTHWISE_PARAMETERS {
    switch (maxq_active_kernel_level()) {
    case MAXQ_LEVEL_AVX512:
        depthwise_planes_avx512(input, channels, channel_run, height, width, stride, weights, bias, lower, upper,
                                first_plane, end_plane, output);
        break;
    case MAXQ_LEVEL_AVX2: depthwise_generic_avx2 DEPTHWISE_ARGUMENTS; break;
    default: depthwise_generic_baseline DEPTHWISE_ARGUMENTS; break;
    }
}
