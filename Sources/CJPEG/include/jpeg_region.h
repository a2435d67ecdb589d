// Decoding a rectangle of a JPEG with libjpeg-turbo's libjpeg API (Debian libjpeg62-turbo-dev):
// only the rows and iMCU columns a transform reads are converted to pixels. C because libjpeg
// reports errors by longjmp, which Swift cannot catch.
#ifndef MAXQ_JPEG_REGION_H
#define MAXQ_JPEG_REGION_H

#include <stddef.h>
#include <stdint.h>

/// What the header says.
typedef struct {
    int width;
    int height;
    /// 4 when the image is CMYK or YCCK (decoded to CMYK), else 3 (decoded to RGB).
    int channels;
} mq_jpeg_header;

/// Where the decoded pixels of a region lie.
typedef struct {
    /// Image column of the first decoded column (at or left of the requested x0).
    int x;
    /// Decoded columns (covering the requested x0..<x1) and rows (exactly y0..<y1).
    int width;
    int height;
} mq_jpeg_region;

/// Reads the header and checks that the data is complete (an end-of-image marker after the last
/// scan, as Pillow requires). Returns 0, or -1 with a message.
int mq_jpeg_read_header(const uint8_t *data, size_t size, mq_jpeg_header *header, char *message, size_t message_size);

/// Which entropy decoder runs progressive scans (baseline scans always use libjpeg-turbo's).
typedef enum {
    mq_jpeg_fast_entropy = 0,      // ours, with pdep where the CPU does it fast
    mq_jpeg_libjpeg_entropy = 1,   // libjpeg-turbo's own
    mq_jpeg_portable_entropy = 2,  // ours without pdep
} mq_jpeg_entropy;

/// Decodes rows y0..<y1 and at least columns x0..<x1 with accurate integer DCT and fancy
/// upsampling, pixel-identical to decoding the whole image; every entropy decoder gives the same
/// pixels (tests compare). `out` must hold header.width * (y1 - y0) * header.channels bytes;
/// rows are region->width pixels long. Returns 0, or -1 with a message.
int mq_jpeg_decode_region(
    const uint8_t *data, size_t size, int x0, int y0, int x1, int y1, mq_jpeg_entropy entropy, uint8_t *out,
    size_t out_size, mq_jpeg_region *region, char *message, size_t message_size);

#endif
