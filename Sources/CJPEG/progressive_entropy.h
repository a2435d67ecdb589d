// The progressive Huffman entropy decoder that replaces libjpeg-turbo's (see the .c file).
#ifndef MAXQ_PROGRESSIVE_ENTROPY_H
#define MAXQ_PROGRESSIVE_ENTROPY_H

#include <stdio.h>

#include <jpeglib.h>

/// Replaces the entropy decoder of a progressive, Huffman-coded decompression started in
/// buffered-image mode, before any scan data has been read.
void mq_install_progressive_entropy(j_decompress_ptr cinfo);

/// Whether the installed decoder met corrupt or truncated data. libjpeg's decoder handles such
/// data its own way (which bits it drops, where it leaves grey); redoing the image with it gives
/// exactly its pixels.
boolean mq_progressive_entropy_saw_damage(j_decompress_ptr cinfo);

#endif
