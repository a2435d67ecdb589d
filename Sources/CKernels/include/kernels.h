// Hot loops in C, each compiled for three x86-64 levels (AVX-512, AVX2 with FMA, baseline SSE2)
// and run at the best level the CPU has, chosen at run time: Swift has no per-function target,
// and a build for one CPU level would stop the package running on older CPUs
// (docs/performance.md). The mask kernels compute bit-identical results at every level (no FP
// contraction, no reassociation), which the tests check level against level; the sparse
// convolution fuses multiply-adds where the CPU has FMA.
#ifndef MAXQ_KERNELS_H
#define MAXQ_KERNELS_H

#include <stdint.h>

typedef enum { MAXQ_LEVEL_BASELINE = 0, MAXQ_LEVEL_AVX2 = 1, MAXQ_LEVEL_AVX512 = 2 } maxq_kernel_level;

/// The best level this CPU supports.
maxq_kernel_level maxq_supported_kernel_level(void);
/// The level the kernels run at: the supported one unless lowered.
maxq_kernel_level maxq_active_kernel_level(void);
/// Runs the kernels at `level`, or at the supported level if that is lower (tests, comparisons).
void maxq_use_kernel_level(maxq_kernel_level level);

/// One axis of the MaxQ soft mask (docs/algorithm.md 3): the threshold theta, the k-th smallest
/// magnitude, and the last index, in the axis's index order, of the entries equal to it that
/// count as pruned.
typedef struct {
    float theta;
    float kth;
    int64_t last_tied_index;
} maxq_axis_cut;

/// One row of the soft terms: for j in 0..<count, with v = magnitudes[j],
///   term(cut, index) = keep(v, index) * sigmoid((v - cut.theta) / tau)
///   mask[j] *= (1 + term(filter, filter_first + j * filter_step)) + term(position, position_first + j)
/// where keep is 0 for the pruned entries of the axis; without `position` its term is absent.
void maxq_soft_terms_row(float *mask, const float *magnitudes, int64_t count, maxq_axis_cut filter,
                         int64_t filter_first, int64_t filter_step, const maxq_axis_cut *position,
                         int64_t position_first, float tau);

/// exp(x) as the soft terms compute it: Cephes' single-precision polynomial, within 2 ulp of the
/// exact value over [-87.3, 88.7] (arguments are clamped to that range); for tests.
float maxq_fast_exp(float x);

/// Pixels each sparse kernel computes per pass over its kept weights (its accumulators in registers):
/// 64 for maxq_nm_conv_lines, 80 for maxq_nm_conv_quads (20 accumulators in AVX-512's 32 registers).
/// MaxQDeploy sizes its chunks and task ranges by them.
enum { MAXQ_CHANNEL_BLOCK_PIXELS = 64, MAXQ_QUAD_BLOCK_PIXELS = 80 };

/// N:M sparse convolution of one image into output channels first_output..<end_output, each one
/// line of `length` pixels, pixels first_pixel..<end_pixel of it (a range no concurrent call
/// writes: a range's last pixels may be written twice, with the same values): for output channel
/// o and pixel t,
///   output[o * length + t] = clamp(bias[o] + sum over k < kept of
///       values[i] * source[offsets[i] + t] (+ residual[o * length + t]), lower, upper),
/// the residual term only when `residual` is not NULL. The kept weights are summed in chunks of
/// `chunk` (those of a few input channels, whose inputs then stay in L1 for every output channel)
/// and stored chunk by chunk, output channel by output channel within a chunk (`outputs` of them):
/// kept weight k of output channel o is at i = k0 * outputs + o * count + (k - k0), k0 = k - k % chunk,
/// count = min(chunk, kept - k0), the order in which the kernel reads them.
/// The caller lays the input out so that this is the convolution (see MaxQDeploy's NMConvolution).
/// `run_starts` (`runs` of them) are where the distinct input runs start, one per cache line at
/// most: the kernel prefetches each one's next 64 pixels while it computes the current ones (any
/// list, even an empty one, gives the same results). With `stream_output` nonzero, output vectors
/// that are written once (the kept weights in one chunk) and 64-byte aligned go to memory with
/// non-temporal stores (no read of the line first, no cache space): for outputs no later pass of
/// this call reads; the call ends with a store fence, so the values are visible to any thread that
/// synchronises with the caller afterwards.
void maxq_nm_conv_lines(const float *source, const int32_t *offsets, const float *values, int64_t kept,
                        int64_t chunk, int64_t outputs, const float *bias, int64_t first_output, int64_t end_output,
                        int64_t first_pixel, int64_t end_pixel, int64_t length, const float *residual, float lower,
                        float upper, float *output, const int32_t *run_starts, int64_t runs, int stream_output);

/// The same in quads of output channels, AVX-512 only (call it only on a CPU with AVX-512, as the
/// caller's plan checks; it traps otherwise): into the channels of quads
/// first_quad..<end_quad (channels 4q..<min(4q + 4, outputs)), pixels first_pixel..<end_pixel of
/// their lines: for output channel o and pixel t,
///   output[o * length + t] = clamp(bias[o] + sum over o's kept weights w, with their input run
///       at offset r, of w * image[r + t] (+ residual[o * length + t]), lower, upper),
/// the residual term only when `residual` is not NULL. The kept weights come as lists per quad
/// and chunk of input channels (list = chunk * quads + quad), summed chunk by chunk (a chunk's
/// inputs stay in L1 for every quad): list_counts[list * 15 + s - 1] entries for subset s = 1...15
/// (bit j: channel 4q + j keeps the entry), the list's first entry at entry_offsets[list_starts[2 *
/// list]] and first weight at entry_weights[list_starts[2 * list + 1]], each entry one offset and
/// one weight per keeping channel. The caller lays the input out so that this is the convolution
/// (see MaxQDeploy's NMConvolution and QuadLists). `run_starts` and `runs` as for
/// maxq_nm_conv_lines.
void maxq_nm_conv_quads(const float *image, const int32_t *entry_offsets, const float *entry_weights,
                        const int32_t *list_counts, const int64_t *list_starts, int64_t chunks, const float *bias,
                        int64_t first_quad, int64_t end_quad, int64_t outputs, int64_t first_pixel,
                        int64_t end_pixel, int64_t length, const float *residual, float lower, float upper,
                        float *output, const int32_t *run_starts, int64_t runs);

/// Depthwise 3x3 convolution with padding 1 and stride 1 or 2 of planes first_plane..<end_plane (each
/// height x width floats) into the same planes of an output of (height - 1) / stride + 1 rows and
/// (width - 1) / stride + 1 columns. Plane p holds channel p / channel_run % channels: channel_run 1
/// for NCHW (channel p % channels of image p / channels), the batch size for channel-major
/// (C, N, H, W). output = clamp(bias[channel] + sum of the nine taps weights[channel * 9 + ky * 3 +
/// kx] times the input pixel (y * stride - 1 + ky, x * stride - 1 + kx), 0 outside the plane, lower,
/// upper). `zeros` holds at least `width` zeros (the padding rows).
void maxq_depthwise3x3(const float *input, int64_t channels, int64_t channel_run, int64_t height, int64_t width,
                       int64_t stride, const float *weights, const float *bias, float lower, float upper,
                       int64_t first_plane, int64_t end_plane, float *output, const float *zeros);

/// Pillow's horizontal bilinear pass over one row of interleaved RGB: output pixel t (of `columns`)
/// is output column x = first_column + t, the clipped fixed-point sum over count[x] taps from input
/// pixel first[x] with weights[x * taps ...].
void maxq_resample_row_horizontal(const uint8_t *row, int64_t first_column, int64_t columns, const int64_t *first,
                                  const int64_t *count, const int32_t *weights, int64_t taps, uint8_t *out);

/// Pillow's vertical pass for one output row: `count` consecutive input rows of `row_length` bytes
/// weighted by `weights`, clipped into `out` (`sums` is scratch of `row_length`).
void maxq_resample_row_vertical(const uint8_t *rows, int64_t row_length, int64_t count, const int32_t *weights,
                                int32_t *sums, uint8_t *out);

/// 1 when the CPU has AVX512_BF16 (bfloat16 multiply-adds), else 0.
int maxq_cpu_has_avx512_bf16(void);

/// One thread's peak bfloat16 rate in GFLOP/s (a multiply-add counts as 2) from about `seconds`
/// of independent vdpbf16ps instructions; 0 without AVX512_BF16.
double maxq_bf16_peak_gflops(double seconds);

/// `count` floats rounded to bfloat16 as oneDNN's reorders round them (vcvtneps2bf16 where the CPU
/// has it: to nearest, ties to even, subnormals as zero; the same in C elsewhere).
void maxq_round_to_bf16(const float *source, uint16_t *target, int64_t count);
/// `count` bfloat16 values as the float32 values they are (exact).
void maxq_widen_bf16(const uint16_t *source, float *target, int64_t count);

#endif
