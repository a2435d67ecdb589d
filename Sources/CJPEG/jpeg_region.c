// libjpeg-turbo decoding of image regions with setjmp error recovery (see jpeg_region.h).
#include "jpeg_region.h"
#include "progressive_entropy.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr manager;
    jmp_buf recovery;
} recovering_error_mgr;

static void exit_with_jump(j_common_ptr info) {
    longjmp(((recovering_error_mgr *)info->err)->recovery, 1);
}

// Warnings (corrupt data that libjpeg can recover from) are ignored, as Pillow does.
static void ignore_message(j_common_ptr info, int level) {
    (void)info;
    (void)level;
}

static void copy_message(j_common_ptr info, char *message, size_t message_size) {
    char text[JMSG_LENGTH_MAX];
    info->err->format_message(info, text);
    snprintf(message, message_size, "%s", text);
}

// Everything the error branch reads is set up before setjmp: were it set up after, clang could
// treat the branch as reading uninitialised memory and delete it (errors then loop forever).
static void create(j_decompress_ptr info, recovering_error_mgr *errors, const uint8_t *data, size_t size) {
    info->err = jpeg_std_error(&errors->manager);
    errors->manager.error_exit = exit_with_jump;
    errors->manager.emit_message = ignore_message;
    jpeg_create_decompress(info);
    jpeg_mem_src(info, data, (unsigned long)size);
}

static int fail(j_decompress_ptr info, char *message, size_t message_size) {
    copy_message((j_common_ptr)info, message, message_size);
    jpeg_destroy_decompress(info);
    return -1;
}

static int channels_of(j_decompress_ptr info) {
    return info->jpeg_color_space == JCS_CMYK || info->jpeg_color_space == JCS_YCCK ? 4 : 3;
}

// Whether the marker structure reaches an end-of-image marker: segments are skipped by their
// lengths and scans' entropy-coded data up to the next marker (where FF is followed by neither
// 00, a stuffed byte, nor a restart marker). A file cut short never reaches it; Pillow refuses
// such files ("image file is truncated") while libjpeg would fill the rest with grey, and a
// region decode may stop before the end: checking the bytes gives one answer for every crop.
// Data after the end-of-image marker (an appended preview, say) does not matter.
static int reaches_end_of_image(const uint8_t *data, size_t size) {
    size_t at = 2;  // after SOI
    while (at + 1 < size) {
        if (data[at] != 0xFF) {  // stray bytes before a marker: libjpeg skips them too
            at++;
            continue;
        }
        const uint8_t marker = data[at + 1];
        if (marker == 0xD9) return 1;
        if (marker == 0xFF) {  // fill byte
            at++;
            continue;
        }
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
            at += 2;
            continue;
        }
        if (at + 3 >= size) return 0;
        at += 2 + (((size_t)data[at + 2] << 8) | data[at + 3]);
        while (marker == 0xDA && at + 1 < size) {  // a scan: entropy-coded data up to the next real marker
            const uint8_t *ff = memchr(data + at, 0xFF, size - at - 1);
            if (ff == NULL) return 0;
            at = (size_t)(ff - data);
            const uint8_t next = data[at + 1];
            if (next != 0x00 && (next < 0xD0 || next > 0xD7)) break;
            at += 2;
        }
    }
    return 0;
}

int mq_jpeg_read_header(const uint8_t *data, size_t size, mq_jpeg_header *header, char *message, size_t message_size) {
    struct jpeg_decompress_struct info;
    recovering_error_mgr errors;
    create(&info, &errors, data, size);
    if (setjmp(errors.recovery)) return fail(&info, message, message_size);
    jpeg_read_header(&info, TRUE);  // without an image it fails (JERR_NO_IMAGE)
    if (!reaches_end_of_image(data, size)) {
        snprintf(message, message_size, "truncated: the JPEG data ends before its end-of-image marker");
        jpeg_destroy_decompress(&info);
        return -1;
    }
    header->width = (int)info.image_width;
    header->height = (int)info.image_height;
    header->channels = channels_of(&info);
    jpeg_destroy_decompress(&info);
    return 0;
}

int mq_jpeg_decode_region(
    const uint8_t *data, size_t size, int x0, int y0, int x1, int y1, mq_jpeg_entropy entropy, uint8_t *out,
    size_t out_size, mq_jpeg_region *region, char *message, size_t message_size) {
    struct jpeg_decompress_struct info;
    recovering_error_mgr errors;
    create(&info, &errors, data, size);
    if (setjmp(errors.recovery)) return fail(&info, message, message_size);
    jpeg_read_header(&info, TRUE);  // without an image it fails (JERR_NO_IMAGE)
    const int width = (int)info.image_width, height = (int)info.image_height, channels = channels_of(&info);
    if (x0 < 0 || y0 < 0 || x1 > width || y1 > height || x0 >= x1 || y0 >= y1 ||
        out_size < (size_t)width * (size_t)(y1 - y0) * (size_t)channels) {
        snprintf(message, message_size, "region %d..<%d x %d..<%d outside the %dx%d image or buffer too small", x0, x1, y0, y1, width, height);
        jpeg_destroy_decompress(&info);
        return -1;
    }
    info.out_color_space = channels == 4 ? JCS_CMYK : JCS_RGB;
    info.dct_method = JDCT_ISLOW;
    info.do_fancy_upsampling = TRUE;
    // Progressive Huffman scans go through our faster entropy decoder: buffered-image mode
    // stops jpeg_start_decompress before it reads any scan, so the decoder can be swapped.
    const int fast_entropy = MQ_PROGRESSIVE_ENTROPY && info.progressive_mode && !info.arith_code && entropy != mq_jpeg_libjpeg_entropy;
    info.buffered_image = fast_entropy ? TRUE : FALSE;
    jpeg_start_decompress(&info);
    if (fast_entropy) {
        mq_install_progressive_entropy(&info, entropy == mq_jpeg_portable_entropy);
        int status;
        do status = jpeg_consume_input(&info);
        while (status != JPEG_REACHED_EOI && status != JPEG_SUSPENDED);
        if (mq_progressive_entropy_saw_damage(&info)) {
            jpeg_destroy_decompress(&info);
            return mq_jpeg_decode_region(data, size, x0, y0, x1, y1, mq_jpeg_libjpeg_entropy, out, out_size, region, message, message_size);
        }
        jpeg_start_output(&info, info.input_scan_number);
    }

    // Fancy upsampling blends each chroma sample with its neighbours, which a cropped decode
    // replaces by its own edge: keep one iMCU of margin on every cut side, so every pixel the
    // caller reads is decoded exactly as in a whole-image decode.
    const int mcu_width = info.max_h_samp_factor * DCTSIZE, mcu_height = info.max_v_samp_factor * DCTSIZE;
    const int left = x0 - mcu_width > 0 ? x0 - mcu_width : 0;
    const int right = x1 + mcu_width < width ? x1 + mcu_width : width;
    JDIMENSION crop_x = (JDIMENSION)left, crop_width = (JDIMENSION)(right - left);
    if (left > 0 || right < width) jpeg_crop_scanline(&info, &crop_x, &crop_width);
    const int first_row = y0 - mcu_height > 0 ? y0 - mcu_height : 0;
    if (first_row > 0) jpeg_skip_scanlines(&info, (JDIMENSION)first_row);

    const size_t stride = (size_t)crop_width * (size_t)channels;
    for (int y = first_row; y < y1; y++) {
        // Margin rows above the region go to its first row, which is written after them.
        JSAMPROW row = out + (size_t)(y >= y0 ? y - y0 : 0) * stride;
        jpeg_read_scanlines(&info, &row, 1);
    }
    region->x = (int)crop_x;
    region->width = (int)crop_width;
    region->height = y1 - y0;
    // Rows below the region are never decoded (a baseline image's remaining data is not even read).
    jpeg_abort_decompress(&info);
    jpeg_destroy_decompress(&info);
    return 0;
}
