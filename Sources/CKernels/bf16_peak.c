// The CPU's bfloat16 capability: whether it has AVX512_BF16, and the peak rate of its bf16
// multiply-add instruction (vdpbf16ps) measured by a loop of independent accumulations, the
// ceiling `maxq doctor` reports mixed-precision training against.
#include "kernels.h"

#include <immintrin.h>
#include <time.h>

int maxq_cpu_has_avx512_bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define ACCUMULATORS 24

// `rounds` rounds of ACCUMULATORS independent vdpbf16ps, written as assembly so that the compiler
// can neither fold nor drop them; returns a value that depends on every accumulator.
__attribute__((target("avx512f,avx512bf16"), noinline)) static float dot_rounds_avx512(long rounds) {
    const __m512i a = _mm512_set1_epi16(0x3f80);  // 1.0 in every bf16 lane
    const __m512i b = _mm512_set1_epi16(0x3c00);  // 2^-7, so the sums stay finite
    __m512 acc[ACCUMULATORS];
    for (int k = 0; k < ACCUMULATORS; k++) acc[k] = _mm512_setzero_ps();
    for (long r = 0; r < rounds; r++) {
#define DOT(k) __asm__ volatile("vdpbf16ps %2, %1, %0" : "+v"(acc[k]) : "v"(a), "v"(b))
        DOT(0); DOT(1); DOT(2); DOT(3); DOT(4); DOT(5); DOT(6); DOT(7);
        DOT(8); DOT(9); DOT(10); DOT(11); DOT(12); DOT(13); DOT(14); DOT(15);
        DOT(16); DOT(17); DOT(18); DOT(19); DOT(20); DOT(21); DOT(22); DOT(23);
#undef DOT
    }
    __m512 total = acc[0];
    for (int k = 1; k < ACCUMULATORS; k++) total = _mm512_add_ps(total, acc[k]);
    return _mm512_reduce_add_ps(total);
}

double maxq_bf16_peak_gflops(double seconds) {
    if (!maxq_cpu_has_avx512_bf16() || !(seconds > 0)) return 0;
    volatile float sink = 0;
    long rounds = 1 << 12;
    double elapsed = 0;
    // Grow the loop until it runs long enough to time, then time it once more.
    for (;;) {
        const double start = now_seconds();
        sink += dot_rounds_avx512(rounds);
        elapsed = now_seconds() - start;
        if (elapsed >= seconds / 4 || rounds > (1L << 40)) break;
        rounds *= 2;
    }
    const double start = now_seconds();
    sink += dot_rounds_avx512(rounds);
    elapsed = now_seconds() - start;
    (void)sink;
    // Each instruction: 16 lanes x 2 bf16 pairs x (multiply + add).
    return (double)rounds * ACCUMULATORS * 64.0 / elapsed / 1e9;
}
