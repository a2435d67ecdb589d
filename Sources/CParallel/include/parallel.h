// Parallel loops on OpenMP's thread pool: the pool oneDNN already runs on, so our kernels and
// oneDNN's never compete with each other's spinning threads for the cores.
#ifndef MAXQ_PARALLEL_H
#define MAXQ_PARALLEL_H

typedef void (*maxq_range_body)(void *context, long start, long end);

/// Splits 0..<total into `chunks` contiguous ranges, one per thread.
void maxq_parallel_ranges(long total, long chunks, void *context, maxq_range_body body);

/// Calls body(i, i + 1) for every i in 0..<count, threads taking the next index when free.
void maxq_parallel_dynamic(long count, void *context, maxq_range_body body);

/// Threads in OpenMP's pool.
int maxq_max_threads(void);

/// Sets the pool's size for the parallel regions that follow.
void maxq_set_threads(int count);

#endif
