// The progressive Huffman entropy decoder that replaces libjpeg-turbo's (see the .c file).
#ifndef MAXQ_PROGRESSIVE_ENTROPY_H
#define MAXQ_PROGRESSIVE_ENTROPY_H

#include <stdio.h>

#include <jpeglib.h>

// The decoder relies on libjpeg-turbo's internal interfaces (jpegint.h), checked against the 2.x
// series; with another library it stays out and libjpeg's own decoder runs.
#if defined(LIBJPEG_TURBO_VERSION_NUMBER) && LIBJPEG_TURBO_VERSION_NUMBER >= 2000000 && LIBJPEG_TURBO_VERSION_NUMBER < 3000000
#define MQ_PROGRESSIVE_ENTROPY 1
#else
#define MQ_PROGRESSIVE_ENTROPY 0
#endif

/// Replaces the entropy decoder of a progressive, Huffman-coded decompression started in
/// buffered-image mode, before any scan data has been read. `portable` non-zero avoids pdep even
/// where it is fast (tests run both paths).
void mq_install_progressive_entropy(j_decompress_ptr cinfo, int portable);

/// Whether the installed decoder met corrupt or truncated data. libjpeg's decoder handles such
/// data its own way (which bits it drops, where it leaves grey); redoing the image with it gives
/// exactly its pixels.
boolean mq_progressive_entropy_saw_damage(j_decompress_ptr cinfo);

#endif
