// N:M sparse convolution, weight-stationary, as implicit GEMM without an im2col buffer: each
// output line is accumulated in registers, 64 pixels at a time, by broadcasting every kept weight
// of the output channel against the 64 contiguous input values it meets. The caller lays the
// input out so that those are contiguous (padded, split by phase for stride 2) and turns each kept
// weight's input channel and kernel position into an offset once. Unlike the mask kernels, the
// levels may differ in the last bits: this file lets the compiler fuse multiply-adds where the CPU
// has FMA.
#include "levels.h"

#include <immintrin.h>

#pragma STDC FP_CONTRACT ON

#define BLOCK MAXQ_CHANNEL_BLOCK_PIXELS

/// 16 floats, the unit of the non-temporal stores (the vector width at AVX-512, four at baseline).
typedef float vector16 __attribute__((ext_vector_type(16)));

/// Where kept weight k of output channel o is in the chunk-major lists: chunk by chunk (k0 = k - k %
/// chunk), each chunk's weights output channel by output channel.
static inline int64_t chunk_major(int64_t o, int64_t k, int64_t kept, int64_t chunk, int64_t outputs) {
    const int64_t k0 = k / chunk * chunk, count = kept - k0 < chunk ? kept - k0 : chunk;
    return k0 * outputs + o * count + (k - k0);
}

// COUNT output pixels from `AT` of every output channel, the kept weights in chunks of `chunk`
// (consecutive input channels): all output channels go through one chunk, whose inputs stay in L1,
// before the next; partial sums wait in the output. A constant COUNT keeps the accumulators in
// registers. When the range holds another 64 pixels, they are prefetched from every input run
// (`run_starts`) meanwhile, a few runs per output channel: the runs are short (256 bytes) and far
// apart, which the CPU's prefetchers do not follow. Measured on a 1x1 256->64 56x56 layer at 1:16,
// batch 16, two cores: 4.5 ms without, 2.7 ms with (ranges of 448 pixels). Output vectors summed
// in one chunk go out with non-temporal stores when the caller streams the output: a regular store
// first reads the line it writes, a third of these layers' memory traffic when the output is large
// (1x1 64->256 at 56x56, batch 16, 1:16: 3.2 ms with regular stores, 1.4 ms streamed; whole
// models, same process: resnet50 1:16 1.01-1.11x, 1:4 1.03x, 2:4 1.00x, mobilenet_v1 2:4 1.15x).
// Each output channel's next 64 output pixels (to be written; not when streamed) and residual
// pixels are prefetched in the first chunk, as the quad kernel does (see there): resnet50 at batch 16
// 1:16 1.02-1.03x, 1:4 up to 1.06x with the quad kernel's (alternating processes).
#define SEGMENT(COUNT, AT)                                                                    \
    do {                                                                                      \
        const int64_t iterations = (kept + chunk - 1) / chunk * (end_output - first_output);  \
        const int ahead = (AT) + (COUNT) + BLOCK <= end_pixel; /* a whole next block in this range */ \
        const int64_t per_iteration = ahead && iterations > 0 ? (runs + iterations - 1) / iterations : 0; \
        int64_t run = 0;                                                                      \
        for (int64_t k0 = 0; k0 < kept; k0 += chunk) {                                       \
            const int64_t count = kept - k0 < chunk ? kept - k0 : chunk;                      \
            const int first = k0 == 0, last = k0 + count == kept;                             \
            for (int64_t o = first_output; o < end_output; o++) {                             \
                for (const int64_t until = run + per_iteration; run < until && run < runs; run++) \
                    maxq_prefetch_run(source + run_starts[run] + (AT) + (COUNT), BLOCK); \
                const float *w = values + k0 * outputs + o * count;                           \
                const int32_t *c = offsets + k0 * outputs + o * count;                        \
                float *y = output + o * length + (AT);                                        \
                /* the next 64 pixels' output (unless streamed) and residual */               \
                for (int line = 0; first && ahead && line < 4; line++) {                      \
                    if (!stream_output || chunk < kept)                                       \
                        __builtin_prefetch(y + (COUNT) + 16 * line, 1, 3);                    \
                    if (residual)                                                             \
                        __builtin_prefetch(residual + o * length + (AT) + (COUNT) + 16 * line, 0, 2);\
                }                                                                             \
                float acc[COUNT];                                                             \
                if (first)                                                                    \
                    for (int t = 0; t < COUNT; t++) acc[t] = bias[o];                         \
                else                                                                          \
                    for (int t = 0; t < COUNT; t++) acc[t] = y[t];                            \
                for (int64_t k = 0; k < count; k++) {                                         \
                    if ((k & 15) == 0) { /* the weight stream, kept out of the way of the inputs */ \
                        __builtin_prefetch(w + k + 64, 0, 0);                                 \
                        __builtin_prefetch(c + k + 64, 0, 0);                                 \
                    }                                                                         \
                    const float weight = w[k];                                                \
                    const float *x = source + c[k] + (AT);                                    \
                    for (int t = 0; t < COUNT; t++) acc[t] += weight * x[t];                  \
                }                                                                             \
                if (!last) {                                                                  \
                    for (int t = 0; t < COUNT; t++) y[t] = acc[t];                            \
                    continue;                                                                 \
                }                                                                             \
                if (residual)                                                                 \
                    for (int t = 0; t < COUNT; t++) acc[t] += residual[o * length + (AT) + t]; \
                for (int t = 0; t < COUNT; t++) acc[t] = maxq_clamp(acc[t], lower, upper);    \
                if (stream_output && first && ((uintptr_t)y & 63) == 0) {                     \
                    for (int t = 0; t < COUNT; t += 16) {                                     \
                        vector16 v;                                                           \
                        __builtin_memcpy(&v, acc + t, sizeof v);                              \
                        __builtin_nontemporal_store(v, (vector16 *)(y + t));                  \
                    }                                                                         \
                    continue;                                                                 \
                }                                                                             \
                for (int t = 0; t < COUNT; t++) y[t] = acc[t];                                \
            }                                                                                 \
        }                                                                                     \
    } while (0)

/// The last 17-63 pixels from `at`, when they are not a multiple of 16, in one pass at the AVX-512
/// level: VECTORS vectors, the last one masked to the range's end (loads, stores and the residual,
/// so that nothing past the range is read or written). As in the quad kernel, this replaces a pass
/// of whole vectors and an overlapping 16-pixel pass over every kept weight (see that kernel): the
/// 49-pixel lines of resnet50's stage-4 1x1 layers at 1:16, batch 1, 1.13-1.2x faster (processes
/// with and without it alternating within a minute; the whole model 3.44-3.45x dense against 3.39-3.41x).
#define MASKED_REST(VECTORS)                                                                                          \
    MAXQ_AVX512 __attribute__((noinline)) static void masked_rest##VECTORS##_avx512(                                   \
        const float *restrict source, const int32_t *restrict offsets, const float *restrict values, int64_t kept,   \
        int64_t chunk, int64_t outputs, const float *restrict bias, int64_t first_output, int64_t end_output,        \
        int64_t at, int64_t length, const float *restrict residual, float lower, float upper,                        \
        float *restrict output, __mmask16 lanes) {                                                                    \
        for (int64_t k0 = 0; k0 < kept; k0 += chunk) {                                                               \
            const int64_t count = kept - k0 < chunk ? kept - k0 : chunk;                                              \
            const int first = k0 == 0, last = k0 + count == kept;                                                     \
            for (int64_t o = first_output; o < end_output; o++) {                                                     \
                const float *w = values + k0 * outputs + o * count;                                                   \
                const int32_t *c = offsets + k0 * outputs + o * count;                                                \
                float *y = output + o * length + at;                                                                  \
                __m512 acc[VECTORS];                                                                                  \
                for (int v = 0; v < VECTORS; v++)                                                                     \
                    acc[v] = first                  ? _mm512_set1_ps(bias[o])                                          \
                             : v == VECTORS - 1 ? _mm512_maskz_loadu_ps(lanes, y + 16 * v)                            \
                                                : _mm512_loadu_ps(y + 16 * v);                                        \
                for (int64_t k = 0; k < count; k++) {                                                                 \
                    const __m512 weight = _mm512_set1_ps(w[k]);                                                       \
                    const float *x = source + c[k] + at;                                                              \
                    for (int v = 0; v < VECTORS; v++) {                                                               \
                        const __m512 in = v == VECTORS - 1 ? _mm512_maskz_loadu_ps(lanes, x + 16 * v)                 \
                                                           : _mm512_loadu_ps(x + 16 * v);                             \
                        acc[v] = _mm512_fmadd_ps(weight, in, acc[v]);                                                 \
                    }                                                                                                 \
                }                                                                                                     \
                for (int v = 0; v < VECTORS; v++) {                                                                   \
                    const __mmask16 stored = v == VECTORS - 1 ? lanes : (__mmask16)0xFFFF;                            \
                    if (last && residual)                                                                             \
                        acc[v] = _mm512_add_ps(                                                                       \
                            acc[v], _mm512_maskz_loadu_ps(stored, residual + o * length + at + 16 * v));              \
                    if (last)                                                                                         \
                        /* the sum second: where it is NaN, max and min return it (NaN stays NaN) */                  \
                        acc[v] = _mm512_min_ps(_mm512_set1_ps(upper), _mm512_max_ps(_mm512_set1_ps(lower), acc[v]));  \
                    _mm512_mask_storeu_ps(y + 16 * v, stored, acc[v]);                                                \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }

MASKED_REST(2)
MASKED_REST(3)
MASKED_REST(4)

__attribute__((always_inline)) static inline void segments_of_lines(
    const float *restrict source, const int32_t *restrict offsets, const float *restrict values, int64_t kept,
    int64_t chunk, int64_t outputs, const float *restrict bias, int64_t first_output, int64_t end_output,
    int64_t first_pixel, int64_t end_pixel, int64_t length, const float *restrict residual, float lower,
    float upper, float *restrict output, const int32_t *restrict run_starts, int64_t runs, int stream_output) {
    int64_t start = first_pixel;
    for (; start + BLOCK <= end_pixel; start += BLOCK) SEGMENT(BLOCK, start);
    if (start == end_pixel) return;
    // The rest (under 64): at the AVX-512 level, when it is over 16 pixels and not a multiple of 16,
    // one masked pass (masked_rest); else 48, 32 or 16 pixels with constant counts, then the last
    // pixels as a block of 16 ending at end_pixel, recomputing a few of this task's pixels (same
    // values); only a range shorter than 16 pixels takes the plain loop.
    const int64_t rest = end_pixel - start, tail = rest % 16;
    if (rest > 16 && tail != 0 && maxq_active_kernel_level() == MAXQ_LEVEL_AVX512) {
        const __mmask16 lanes = (__mmask16)((1u << tail) - 1);
#define MASKED_REST_CALL(VECTORS)                                                                                     \
    masked_rest##VECTORS##_avx512(source, offsets, values, kept, chunk, outputs, bias, first_output, end_output,     \
                                  start, length, residual, lower, upper, output, lanes)
        switch (rest / 16) {
        case 1: MASKED_REST_CALL(2); break;
        case 2: MASKED_REST_CALL(3); break;
        default: MASKED_REST_CALL(4); break;
        }
#undef MASKED_REST_CALL
        return;
    }
    switch (rest - tail) {
    case 48: SEGMENT(48, start); break;
    case 32: SEGMENT(32, start); break;
    case 16: SEGMENT(16, start); break;
    default: break;
    }
    if (tail == 0) return;
    if (end_pixel - first_pixel >= 16) {
        SEGMENT(16, end_pixel - 16);
        return;
    }
    for (int64_t o = first_output; o < end_output; o++) {
        for (int64_t t = start; t < end_pixel; t++) {
            float sum = bias[o];
            for (int64_t k = 0; k < kept; k++) {
                const int64_t at = chunk_major(o, k, kept, chunk, outputs);
                sum += values[at] * source[offsets[at] + t];
            }
            if (residual) sum += residual[o * length + t];
            output[o * length + t] = maxq_clamp(sum, lower, upper);
        }
    }
}

__attribute__((always_inline)) static inline void maxq_nm_conv_lines_body(
    const float *restrict source, const int32_t *restrict offsets, const float *restrict values, int64_t kept,
    int64_t chunk, int64_t outputs, const float *restrict bias, int64_t first_output, int64_t end_output,
    int64_t first_pixel, int64_t end_pixel, int64_t length, const float *restrict residual, float lower,
    float upper, float *restrict output, const int32_t *restrict run_starts, int64_t runs, int stream_output) {
    segments_of_lines(source, offsets, values, kept, chunk, outputs, bias, first_output, end_output, first_pixel,
                      end_pixel, length, residual, lower, upper, output, run_starts, runs, stream_output);
    // Non-temporal stores are weakly ordered: complete them before the caller reports the task done.
    if (stream_output) __builtin_ia32_sfence();
}

MAXQ_LEVELS(maxq_nm_conv_lines,
            (const float *restrict source, const int32_t *restrict offsets, const float *restrict values,
             int64_t kept, int64_t chunk, int64_t outputs, const float *restrict bias, int64_t first_output,
             int64_t end_output, int64_t first_pixel, int64_t end_pixel, int64_t length,
             const float *restrict residual, float lower, float upper, float *restrict output,
             const int32_t *restrict run_starts, int64_t runs, int stream_output),
            (source, offsets, values, kept, chunk, outputs, bias, first_output, end_output, first_pixel, end_pixel,
             length, residual, lower, upper, output, run_starts, runs, stream_output))
