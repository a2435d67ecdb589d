// See parallel.h. Calls libgomp's entry points directly (what GCC emits for `omp parallel`),
// since Swift's clang would target LLVM's OpenMP runtime instead of the libgomp oneDNN uses.
#include "parallel.h"
#include <stdatomic.h>

extern void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
extern int omp_get_thread_num(void);
extern int omp_get_num_threads(void);
extern int omp_get_max_threads(void);
extern void omp_set_num_threads(int);

struct job {
    long total, chunks;
    void *context;
    maxq_range_body body;
    atomic_long next;
};

static void ranges(void *data) {
    struct job *job = data;
    long threads = omp_get_num_threads();
    for (long c = omp_get_thread_num(); c < job->chunks; c += threads) {
        long start = job->total * c / job->chunks, end = job->total * (c + 1) / job->chunks;
        if (start < end) job->body(job->context, start, end);
    }
}

static void dynamic(void *data) {
    struct job *job = data;
    for (long i = atomic_fetch_add(&job->next, 1); i < job->total; i = atomic_fetch_add(&job->next, 1)) {
        job->body(job->context, i, i + 1);
    }
}

void maxq_parallel_ranges(long total, long chunks, void *context, maxq_range_body body) {
    struct job job = {total, chunks, context, body, 0};
    GOMP_parallel(ranges, &job, (unsigned)chunks, 0);
}

void maxq_parallel_dynamic(long count, void *context, maxq_range_body body) {
    struct job job = {count, count, context, body, 0};
    GOMP_parallel(dynamic, &job, 0, 0);
}

int maxq_max_threads(void) { return omp_get_max_threads(); }

void maxq_set_threads(int count) { omp_set_num_threads(count); }
