// N:M sparse convolution in quads of output channels, for AVX-512 and the denser patterns (N/M >=
// 1/2, and 3x3 layers at 1/4, with 64 kept weights per channel or more; the per-channel kernel in
// sparse_conv.c serves the rest, where a quad's channels rarely share an input or fifteen short
// loops per quad cost more than they save). Every input run (an input channel at one kernel
// position, 80 contiguous pixels the caller's layout lines up) is loaded once and multiplied into
// each channel of the quad that keeps it, the weight broadcast against the 80 pixels held in
// registers. A quad's kept weights are stored by which of its channels keep them (15 subsets, a
// loop each, so that the subset is a constant and the accumulators stay in registers). Loading each
// run once per quad instead of once per channel takes the loop off the load ports: at 2:4 one run
// serves about two multiply-adds (measured: 1.35-1.6x the per-channel kernel with the data in L2,
// 85-92 % of the multiply-add peak). Its 20 accumulators and 5 inputs need AVX-512's 32 registers:
// compiled for AVX2 (16 registers) they spilled and the kernel ran at half the per-channel kernel's
// speed, so it exists at the AVX-512 level only and the caller checks the level. The compiler may
// fuse multiply-adds (the per-channel kernel's last bits differ likewise).
#include "levels.h"

#include <immintrin.h>

#pragma STDC FP_CONTRACT ON

/// 16 floats; loads and stores through the unaligned variant.
typedef float vector16 __attribute__((ext_vector_type(16)));
typedef float vector16_unaligned __attribute__((ext_vector_type(16), aligned(4)));
typedef int32_t mask16 __attribute__((ext_vector_type(16)));

#define QUAD 4
_Static_assert(MAXQ_QUAD_BLOCK_PIXELS == 5 * 16, "the walk over a range runs segment5 per block");
#define SUBSETS 15

/// `maxq_clamp` on 16 lanes, as selects (NaN stays NaN); element by element, the accumulators would
/// leave the registers.
#define clamp16(v, lower, upper) select16(select16((v), (lower), (v) < (lower)), (upper), (v) > (upper))
#define select16(a, b, take_b) ((vector16)(((mask16)(b) & (take_b)) | ((mask16)(a) & ~(take_b))))

#define load16(p) (*(const vector16_unaligned *)(p))
#define store16(p, v) (*(vector16_unaligned *)(p) = (v))

/// Vector v of a segment: in a MASKED segment the last vector holds only `lanes` (the pixels of
/// the range), read (without touching memory beyond them) and written under that mask.
#define load_vector(p, v, VECTORS, MASKED)                                                                             \
    ((MASKED) && (v) == (VECTORS) - 1 ? (vector16)_mm512_maskz_loadu_ps(lanes, (p)) : load16(p))
#define store_vector(p, v, VECTORS, MASKED, value)                                                                     \
    do {                                                                                                               \
        if ((MASKED) && (v) == (VECTORS) - 1)                                                                          \
            _mm512_mask_storeu_ps((p), lanes, (__m512)(value));                                                        \
        else                                                                                                           \
            store16((p), (value));                                                                                     \
    } while (0)

/// Everything a call reads and writes but the pixels.
typedef struct {
    const float *image;
    const int32_t *entry_offsets;
    const float *entry_weights;
    const int32_t *list_counts;
    const int64_t *list_starts;
    int64_t chunks;
    const float *bias;
    int64_t first_quad, end_quad, outputs, length;
    const float *residual;
    float lower, upper;
    float *output;
    const int32_t *run_starts;
    int64_t runs;
} job;

/// The entries of one subset (bit j: channel j of the quad keeps them): `count` runs at
/// source + offsets[k], each with one weight per channel of the subset, added into the
/// accumulators of VECTORS x 16 pixels. Not unrolled: a subset holds a few entries (about four for a 1x1
/// chunk at 2:4), and the compiler's unrolling by two added a branch on the count's parity that the CPU
/// cannot predict; without it resnet50's 1x1 layers at 2:4 ran 1.03x faster, 3x3 1.01x (same-process A/B).
#define SUBSET_LOOP(SUBSET, VECTORS, MASKED)                                                                           \
    do {                                                                                                               \
        const int64_t count = counts[SUBSET - 1];                                                                      \
        const int keepers = __builtin_popcount(SUBSET);                                                                \
        _Pragma("clang loop unroll(disable)") for (int64_t k = 0; k < count; k++) {                                    \
            const float *x = source + offsets[k];                                                                      \
            vector16 inputs[VECTORS];                                                                                  \
            for (int v = 0; v < VECTORS; v++) inputs[v] = load_vector(x + 16 * v, v, VECTORS, MASKED);                 \
            int taken = 0;                                                                                             \
            for (int j = 0; j < QUAD; j++) {                                                                           \
                if (!((SUBSET >> j) & 1)) continue;                                                                    \
                const float weight = weights[k * keepers + taken++];                                                   \
                for (int v = 0; v < VECTORS; v++) sums[j][v] += weight * inputs[v];                                    \
            }                                                                                                          \
        }                                                                                                              \
        offsets += count;                                                                                              \
        weights += count * keepers;                                                                                    \
    } while (0)

/// VECTORS x 16 pixels from `at` for the job's quads, chunk by chunk: every quad goes through a
/// chunk (whose inputs stay in L1) before the next; partial sums wait in the output. With `ahead`,
/// the next block's pixels of every input run are prefetched meanwhile (see sparse_conv.c), and in the
/// first chunk each quad's next block of output pixels (for writing) and of the residual: hundreds of
/// output lines are written and read at once, which no hardware prefetcher follows, so a store
/// missed and read its line, and the residual came from memory when added. A C harness (one thread,
/// caches flushed between runs, 2:4, 128 -> 512 channels on 12544-pixel lines) ran 15.2-15.9 ms
/// with a residual and 11.2 without, 12.5-12.6 and 9.6 so; resnet50 2:4 at batch 16 1.22-1.26x
/// against 1.19-1.23x (alternating processes, both kernels prefetching). One function
/// per VECTORS, so that each one's accumulators get the registers; NAME masked: the last vector
/// holds the pixels in `lanes` only (the end of a range that is not a multiple of 16 pixels).
#define SEGMENT_FUNCTION(VECTORS, LEVEL, TARGET, MASKED, NAME)                                                         \
    TARGET __attribute__((noinline)) static void NAME##VECTORS##LEVEL(const job *restrict jb, int64_t at, int ahead,   \
                                                                       __mmask16 lanes) {                              \
        const int64_t chunks = jb->chunks, length = jb->length, quads = (jb->outputs + QUAD - 1) / QUAD;               \
        /* the next block of every input run, prefetched a few runs per (chunk, quad) */                             \
        const int64_t iterations = chunks * (jb->end_quad - jb->first_quad);                                           \
        const int64_t per_iteration = ahead && iterations > 0 ? (jb->runs + iterations - 1) / iterations : 0;          \
        int64_t run = 0;                                                                                               \
        for (int64_t chunk = 0; chunk < chunks; chunk++) {                                                             \
            const int first = chunk == 0, last = chunk == chunks - 1;                                                  \
            for (int64_t quad = jb->first_quad; quad < jb->end_quad; quad++) {                                         \
                for (const int64_t until = run + per_iteration; run < until && run < jb->runs; run++)                  \
                    maxq_prefetch_run(jb->image + jb->run_starts[run] + at + 16 * VECTORS, 16 * VECTORS);              \
                const int64_t list = chunk * quads + quad; /* lists are stored chunk by chunk */                       \
                const int members = jb->outputs - quad * QUAD < QUAD ? (int)(jb->outputs - quad * QUAD) : QUAD;        \
                const int32_t *restrict counts = jb->list_counts + list * SUBSETS;                                     \
                const int32_t *restrict offsets = jb->entry_offsets + jb->list_starts[2 * list];                       \
                const float *restrict weights = jb->entry_weights + jb->list_starts[2 * list + 1];                     \
                const float *restrict source = jb->image + at;                                                         \
                float *restrict y = jb->output + quad * QUAD * length + at;                                            \
                if (first && ahead) /* the quad's next output pixels (to be written) and residual ones */             \
                    for (int j = 0; j < members; j++)                                                                  \
                        for (int line = 0; line < VECTORS; line++) {                                                   \
                            __builtin_prefetch(y + j * length + 16 * VECTORS + 16 * line, 1, 3);                       \
                            if (jb->residual)                                                                          \
                                __builtin_prefetch(jb->residual + (quad * QUAD + j) * length + at + 16 * VECTORS       \
                                                       + 16 * line, 0, 2);                                             \
                        }                                                                                              \
                vector16 sums[QUAD][VECTORS];                                                                          \
                for (int j = 0; j < QUAD; j++)                                                                         \
                    for (int v = 0; v < VECTORS; v++)                                                                  \
                        sums[j][v] = j >= members ? (vector16)0.0f                                                     \
                                     : first      ? (vector16)jb->bias[quad * QUAD + j]                                \
                                                  : load_vector(y + j * length + 16 * v, v, VECTORS, MASKED);          \
                SUBSET_LOOP(1, VECTORS, MASKED);                                                                       \
                SUBSET_LOOP(2, VECTORS, MASKED);                                                                       \
                SUBSET_LOOP(3, VECTORS, MASKED);                                                                       \
                SUBSET_LOOP(4, VECTORS, MASKED);                                                                       \
                SUBSET_LOOP(5, VECTORS, MASKED);                                                                       \
                SUBSET_LOOP(6, VECTORS, MASKED);                                                                       \
                SUBSET_LOOP(7, VECTORS, MASKED);                                                                       \
                SUBSET_LOOP(8, VECTORS, MASKED);                                                                       \
                SUBSET_LOOP(9, VECTORS, MASKED);                                                                       \
                SUBSET_LOOP(10, VECTORS, MASKED);                                                                      \
                SUBSET_LOOP(11, VECTORS, MASKED);                                                                      \
                SUBSET_LOOP(12, VECTORS, MASKED);                                                                      \
                SUBSET_LOOP(13, VECTORS, MASKED);                                                                      \
                SUBSET_LOOP(14, VECTORS, MASKED);                                                                      \
                SUBSET_LOOP(15, VECTORS, MASKED);                                                                      \
                /* j runs to the constant QUAD: an index known at compile time keeps sums in registers. */             \
                if (!last) {                                                                                           \
                    for (int j = 0; j < QUAD; j++)                                                                     \
                        for (int v = 0; v < VECTORS && j < members; v++)                                               \
                            store_vector(y + j * length + 16 * v, v, VECTORS, MASKED, sums[j][v]);                     \
                    continue;                                                                                          \
                }                                                                                                      \
                for (int j = 0; j < QUAD; j++) {                                                                       \
                    const float *added = jb->residual ? jb->residual + (quad * QUAD + j) * length + at : 0;            \
                    for (int v = 0; v < VECTORS && j < members; v++) {                                                 \
                        vector16 s = sums[j][v];                                                                       \
                        if (added) s += load_vector(added + 16 * v, v, VECTORS, MASKED);                               \
                        s = clamp16(s, (vector16)jb->lower, (vector16)jb->upper);                                      \
                        store_vector(y + j * length + 16 * v, v, VECTORS, MASKED, s);                                  \
                    }                                                                                                  \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
    }

/// The level's segment functions and the walk over a pixel range: 80-pixel blocks,
/// then the rest as one segment whose last vector is masked to the range's end (all lanes when the
/// rest is a multiple of 16). Until the masks, the rest took a segment of whole vectors and a 16-pixel
/// one ending at end_pixel (recomputing a few pixels): two passes over every kept weight where one
/// does. The 49-pixel lines of 7x7 pointwise layers at batch 1 (2048 -> 512, 2:4, one thread) ran 1.7x
/// faster so, 113-pixel lines 1.2x, lines of whole blocks unchanged.
///
/// Blocks of 80 pixels (20 accumulators and 5 inputs of the 32 registers) rather than 64: each entry's
/// offset and weights, loaded once per block, then serve 5 input vectors instead of 4. C harness, one
/// thread, 2:4 on resnet50's 1x1 shapes: 1.02-1.13x (256 -> 64 at 3136 pixels 77 -> 81 % of the peak,
/// 1024 -> 256 70 -> 78 %, 2048 -> 512 on 784 pixels 64 -> 72 %). 96 pixels (24 accumulators) spilled
/// registers and ran at half the speed.
#define LEVEL_FUNCTIONS(LEVEL, TARGET)                                                                                 \
    SEGMENT_FUNCTION(5, LEVEL, TARGET, 0, segment)                                                                     \
    SEGMENT_FUNCTION(5, LEVEL, TARGET, 1, masked)                                                                      \
    SEGMENT_FUNCTION(4, LEVEL, TARGET, 1, masked)                                                                      \
    SEGMENT_FUNCTION(3, LEVEL, TARGET, 1, masked)                                                                      \
    SEGMENT_FUNCTION(2, LEVEL, TARGET, 1, masked)                                                                      \
    SEGMENT_FUNCTION(1, LEVEL, TARGET, 1, masked)                                                                      \
    TARGET static void lines##LEVEL(const job *restrict jb, int64_t first_pixel, int64_t end_pixel) {                  \
        const int64_t block = MAXQ_QUAD_BLOCK_PIXELS;                                                                  \
        int64_t start = first_pixel;                                                                                   \
        for (; start + block <= end_pixel; start += block)                                                             \
            segment5##LEVEL(jb, start, start + 2 * block <= end_pixel, 0xFFFF);                                        \
        const int64_t rest = end_pixel - start, tail = rest % 16;                                                      \
        const __mmask16 lanes = tail == 0 ? (__mmask16)0xFFFF : (__mmask16)((1u << tail) - 1);                         \
        switch ((rest + 15) / 16) {                                                                                    \
        case 5: masked5##LEVEL(jb, start, 0, lanes); break;                                                            \
        case 4: masked4##LEVEL(jb, start, 0, lanes); break;                                                            \
        case 3: masked3##LEVEL(jb, start, 0, lanes); break;                                                            \
        case 2: masked2##LEVEL(jb, start, 0, lanes); break;                                                            \
        case 1: masked1##LEVEL(jb, start, 0, lanes); break;                                                            \
        default: break;                                                                                                \
        }                                                                                                              \
    }

LEVEL_FUNCTIONS(_avx512, MAXQ_AVX512)

void maxq_nm_conv_quads(const float *image, const int32_t *entry_offsets, const float *entry_weights,
                        const int32_t *list_counts, const int64_t *list_starts, int64_t chunks, const float *bias,
                        int64_t first_quad, int64_t end_quad, int64_t outputs, int64_t first_pixel,
                        int64_t end_pixel, int64_t length, const float *residual, float lower, float upper,
                        float *output, const int32_t *run_starts, int64_t runs) {
    const job jb = {image, entry_offsets, entry_weights, list_counts, list_starts, chunks, bias, first_quad,
                    end_quad, outputs, length, residual, lower, upper, output, run_starts, runs};
    // The plan chose quads at the AVX-512 level; another thread may have lowered the active level
    // since (the tests do), which only asks for other speeds. A CPU without AVX-512 is another
    // matter: stop rather than run instructions it lacks.
    if (maxq_supported_kernel_level() != MAXQ_LEVEL_AVX512) __builtin_trap();
    lines_avx512(&jb, first_pixel, end_pixel);
}
