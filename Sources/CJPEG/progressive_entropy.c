// A faster entropy decoder for progressive Huffman JPEG scans, plugged into libjpeg-turbo in
// place of its own (jdphuff.c walks every coefficient of a refinement band and branches on each
// correction and sign bit, which are random and mispredict: most of the time a progressive photo
// takes to decode; this one is 1.5x faster on the sample photos). It writes the same
// coefficients into the same blocks, so everything after it - dequantisation, IDCT,
// upsampling, colour conversion - is libjpeg-turbo's, and the pixels are identical.
//
// JPEG (ITU T.81) Annex G.1.2: DC first/refine scans over interleaved MCUs, AC first/refine
// scans over one component; end-of-band runs; restart markers. libjpeg's start_pass still runs
// for every scan (it validates the scan, tracks the progression in coef_bits and reports bad
// tables); this decoder then takes the scan over.
#include "progressive_entropy.h"

#include <immintrin.h>
#include <cpuid.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jpegint.h>
#include <jerror.h>

enum { lookahead_bits = 10 };

// Canonical Huffman code with a one-lookup table for codes up to lookahead_bits long.
typedef struct {
    uint16_t fast[1 << lookahead_bits];  // (length << 8) | symbol, 0 when the code is longer
    int32_t max_code[18];                 // largest code of each length, -1 if none; [17] ends the search
    int32_t value_offset[18];
    uint8_t values[256];
} huffman_table;

typedef struct {
    struct jpeg_entropy_decoder pub;  // first, so that cinfo->entropy points at this
    struct jpeg_entropy_decoder *libjpeg;
    const JOCTET *next;  // source position of the next byte not yet in the bit buffer
    size_t left;
    uint64_t buffer;     // bits, most significant first
    int bits;
    int zero_bits;       // how many of the buffered bits are padding past the segment's end
    unsigned end_of_band_run;
    int last_dc[MAX_COMPS_IN_SCAN];
    unsigned restarts_to_go;
    boolean damaged;     // corrupt or truncated data seen: libjpeg's decoder should redo the image
    boolean (*decode_ac_refine)(j_decompress_ptr, JBLOCKROW *);  // the variant for this CPU
    const huffman_table *dc_table[MAX_COMPS_IN_SCAN];
    const huffman_table *ac_table;
    huffman_table tables[2][NUM_HUFF_TBLS];  // [0] DC, [1] AC
} fast_entropy;

// Position in natural (row-major) order of the k-th coefficient in zigzag order; the 16
// extra entries keep a corrupt run that overshoots 63 inside the block.
static const int natural_order[64 + 16] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

static void build_table(huffman_table *table, const JHUFF_TBL *source) {
    memset(table->fast, 0, sizeof table->fast);
    int code = 0, index = 0;
    for (int length = 1; length <= 16; length++) {
        const int count = source->bits[length];
        table->value_offset[length] = index - code;
        for (int i = 0; i < count && index < 256; i++, index++, code++) {
            table->values[index] = source->huffval[index];
            if (length <= lookahead_bits) {
                const int shift = lookahead_bits - length;
                for (int fill = 0; fill < (1 << shift); fill++)
                    table->fast[(code << shift) | fill] = (uint16_t)((length << 8) | source->huffval[index]);
            }
        }
        table->max_code[length] = count > 0 ? code - 1 : -1;
        code <<= 1;
    }
    table->max_code[17] = INT32_MAX;  // stops the search for an invalid code
    table->value_offset[17] = 0;
}

static void save_position(j_decompress_ptr cinfo, const fast_entropy *e) {
    cinfo->src->next_input_byte = e->next;
    cinfo->src->bytes_in_buffer = e->left;
}

static unsigned next_byte(j_decompress_ptr cinfo, fast_entropy *e) {
    if (e->left == 0) {
        save_position(cinfo, e);
        (*cinfo->src->fill_input_buffer)(cinfo);  // a memory source ends with a fake EOI
        e->next = cinfo->src->next_input_byte;
        e->left = cinfo->src->bytes_in_buffer;
    }
    e->left--;
    return *e->next++;
}

// Fills the buffer to at least 57 bits: eight bytes at once when none is 0xFF (no stuffing, no
// marker; the bytes beyond the whole ones taken land below them and are OR-ed in again,
// unchanged, next time), else byte by byte. At a marker the segment ends: the marker is left for
// libjpeg (unread_marker) and zero bits follow, as libjpeg supplies them.
static void refill(j_decompress_ptr cinfo, fast_entropy *e) {
    if (e->left >= 8 && cinfo->unread_marker == 0) {
        uint64_t bytes;
        memcpy(&bytes, e->next, 8);
        bytes = __builtin_bswap64(bytes);
        const uint64_t inverted = ~bytes;
        if (((inverted - 0x0101010101010101ull) & ~inverted & 0x8080808080808080ull) == 0) {
            const int taken = (63 - e->bits) >> 3;
            e->buffer |= bytes >> e->bits;
            e->next += taken;
            e->left -= (size_t)taken;
            e->bits += 8 * taken;
            return;
        }
    }
    while (e->bits <= 56) {
        if (cinfo->unread_marker != 0) {
            e->zero_bits += 64 - e->bits;
            e->bits = 64;
            return;
        }
        unsigned c = next_byte(cinfo, e);
        if (c == 0xFF) {
            do c = next_byte(cinfo, e);
            while (c == 0xFF);
            if (c == 0) {
                c = 0xFF;  // stuffed zero: an FF data byte
            } else {
                cinfo->unread_marker = (int)c;
                continue;
            }
        }
        e->buffer |= (uint64_t)c << (56 - e->bits);
        e->bits += 8;
    }
}

// The check runs for every symbol and stays inline; the refill (every few symbols) is a call.
static inline __attribute__((always_inline)) void ensure(j_decompress_ptr cinfo, fast_entropy *e, int count) {
    if (e->bits < count) refill(cinfo, e);
}

static inline unsigned take(fast_entropy *e, int count) {  // 1 <= count <= 31, buffered
    const unsigned value = (unsigned)(e->buffer >> (64 - count));
    e->buffer <<= count;
    e->bits -= count;
    return value;
}

static inline unsigned take_bit(j_decompress_ptr cinfo, fast_entropy *e) {
    ensure(cinfo, e, 1);
    return take(e, 1);
}

// The next symbol; needs 16 buffered bits. An invalid code yields symbol 0, as in libjpeg.
static inline int decode_symbol(fast_entropy *e, const huffman_table *table) {
    const unsigned entry = table->fast[e->buffer >> (64 - lookahead_bits)];
    if (entry != 0) {
        take(e, (int)(entry >> 8));
        return (int)(entry & 0xFF);
    }
    int length = lookahead_bits + 1;
    int32_t code = (int32_t)(e->buffer >> (64 - length));
    while (code > table->max_code[length]) {
        length++;
        code = (int32_t)(e->buffer >> (64 - length));
    }
    if (length > 16) {
        e->damaged = TRUE;
        return 0;
    }
    take(e, length);
    return table->values[(table->value_offset[length] + code) & 0xFF];
}

// F.12: a `size`-bit magnitude category value to a signed coefficient.
static inline int extend(unsigned value, int size) {
    return value < (1u << (size - 1)) ? (int)value - (1 << size) + 1 : (int)value;
}

static void begin_segment(fast_entropy *e) {
    e->buffer = 0;
    e->bits = 0;
    e->zero_bits = 0;
    e->end_of_band_run = 0;
    memset(e->last_dc, 0, sizeof e->last_dc);
}

static void restart(j_decompress_ptr cinfo, fast_entropy *e) {
    cinfo->marker->discarded_bytes += (unsigned)(e->bits - e->zero_bits > 0 ? (e->bits - e->zero_bits) / 8 : 0);
    save_position(cinfo, e);
    (*cinfo->marker->read_restart_marker)(cinfo);
    e->next = cinfo->src->next_input_byte;
    e->left = cinfo->src->bytes_in_buffer;
    begin_segment(e);
    e->restarts_to_go = cinfo->restart_interval;
    if (cinfo->unread_marker == 0) e->pub.insufficient_data = FALSE;
}

// Common to every MCU: restarts before, and after, the source position and the check that
// no padding bits were consumed (then libjpeg's rule: the rest of the segment stays zero).
static inline boolean begin_mcu(j_decompress_ptr cinfo, fast_entropy *e) {
    if (cinfo->restart_interval) {
        if (e->restarts_to_go == 0) restart(cinfo, e);
        e->restarts_to_go--;
    }
    return !e->pub.insufficient_data;
}

static inline void end_mcu(j_decompress_ptr cinfo, fast_entropy *e) {
    save_position(cinfo, e);
    if (e->bits < e->zero_bits) {
        WARNMS(cinfo, JWRN_HIT_MARKER);
        e->damaged = TRUE;
        e->pub.insufficient_data = TRUE;
    }
}

static boolean decode_dc_first(j_decompress_ptr cinfo, JBLOCKROW *mcu) {
    fast_entropy *e = (fast_entropy *)cinfo->entropy;
    if (!begin_mcu(cinfo, e)) return TRUE;
    for (int block = 0; block < cinfo->blocks_in_MCU; block++) {
        const int component = cinfo->MCU_membership[block];
        ensure(cinfo, e, 32);
        const int size = decode_symbol(e, e->dc_table[component]) & 15;
        const int difference = size ? extend(take(e, size), size) : 0;
        const int last = e->last_dc[component];
        if ((last >= 0 && difference > INT_MAX - last) || (last < 0 && difference < INT_MIN - last))
            ERREXIT(cinfo, JERR_BAD_DCT_COEF);
        e->last_dc[component] = last + difference;
        mcu[block][0][0] = (JCOEF)((unsigned)(last + difference) << cinfo->Al);
    }
    end_mcu(cinfo, e);
    return TRUE;
}

static boolean decode_dc_refine(j_decompress_ptr cinfo, JBLOCKROW *mcu) {
    fast_entropy *e = (fast_entropy *)cinfo->entropy;
    if (!begin_mcu(cinfo, e)) return TRUE;
    const JCOEF bit = (JCOEF)(1 << cinfo->Al);
    for (int block = 0; block < cinfo->blocks_in_MCU; block++)
        if (take_bit(cinfo, e)) mcu[block][0][0] |= bit;
    end_mcu(cinfo, e);
    return TRUE;
}

static boolean decode_ac_first(j_decompress_ptr cinfo, JBLOCKROW *mcu) {
    fast_entropy *e = (fast_entropy *)cinfo->entropy;
    if (!begin_mcu(cinfo, e)) return TRUE;
    if (e->end_of_band_run > 0) {
        e->end_of_band_run--;
    } else {
        JCOEF *block = mcu[0][0];
        const int last = cinfo->Se, shift = cinfo->Al;
        const huffman_table *table = e->ac_table;
        for (int k = cinfo->Ss; k <= last; k++) {
            ensure(cinfo, e, 32);
            const int symbol = decode_symbol(e, table), run = symbol >> 4, size = symbol & 15;
            if (size) {
                k += run;
                if (k > last) {  // a run past the band: corrupt
                    e->damaged = TRUE;
                    if (k > 63) break;
                }
                block[natural_order[k]] = (JCOEF)((unsigned)extend(take(e, size), size) << shift);
            } else if (run == 15) {
                k += 15;  // sixteen zeros
            } else {
                unsigned band_run = 1u << run;
                if (run) band_run += take(e, run);
                e->end_of_band_run = band_run - 1;  // this block ends the first of them
                break;
            }
        }
    }
    end_mcu(cinfo, e);
    return TRUE;
}

// Zigzag index of each natural-order position.
static const uint8_t zigzag_index[64] = {
    0,  1,  5,  6,  14, 15, 27, 28, 2,  4,  7,  13, 16, 26, 29, 42, 3,  8,  12, 17, 25, 30, 41, 43, 9,  11, 18, 24, 31, 40, 44, 53,
    10, 19, 23, 32, 39, 45, 52, 54, 20, 22, 33, 38, 46, 51, 55, 60, 21, 34, 37, 47, 50, 56, 59, 61, 35, 36, 48, 49, 57, 58, 62, 63};

// Bit k set when the coefficient at zigzag position k of the block is non-zero.
static inline uint64_t nonzero_in_zigzag_order(const JCOEF *block) {
    uint64_t natural = 0;
    const __m128i zero = _mm_setzero_si128();  // SSE2: every x86-64 CPU has it
    for (int quarter = 0; quarter < 4; quarter++) {
        const __m128i a = _mm_cmpeq_epi16(_mm_loadu_si128((const __m128i *)(block + 16 * quarter)), zero);
        const __m128i b = _mm_cmpeq_epi16(_mm_loadu_si128((const __m128i *)(block + 16 * quarter + 8)), zero);
        natural |= (uint64_t)(uint16_t)~_mm_movemask_epi8(_mm_packs_epi16(a, b)) << (16 * quarter);
    }
    uint64_t zigzag = 0;
    for (; natural != 0; natural &= natural - 1) zigzag |= 1ull << zigzag_index[__builtin_ctzll(natural)];
    return zigzag;
}

// Position of set bit number `n` (from 0, lowest first) of x, or 64 when x has fewer. pdep does
// it in one instruction, but on AMD before Zen 3 pdep is microcoded and slow; there a broadword
// select (running byte counts, then a table for the byte) is used.
static uint8_t select_in_byte[8][256];

static void fill_select_in_byte(void) {
    for (int byte = 0; byte < 256; byte++) {
        int rank = 0;
        for (int b = 0; b < 8; b++)
            if (byte & (1 << b)) select_in_byte[rank++][byte] = (uint8_t)b;
    }
}

// pdep as inline assembly: it appears only in decode_ac_refine_bmi2, which runs only where the CPU
// has BMI2 and pdep is fast (fast_pdep); the intrinsic would need the whole caller chain marked.
static inline int select_bit_pdep(uint64_t x, int n) {
    uint64_t bit;
    __asm__("pdepq %[mask], %[source], %[bit]" : [bit] "=r"(bit) : [source] "r"(1ull << n), [mask] "r"(x));
    return bit != 0 ? __builtin_ctzll(bit) : 64;
}

// `pdep` is a constant in each compiled variant of decode_ac_refine.
__attribute__((always_inline)) static inline int select_bit(uint64_t x, int n, const boolean pdep) {
    if (pdep) return select_bit_pdep(x, n);
    uint64_t counts = x - ((x >> 1) & 0x5555555555555555ull);
    counts = (counts & 0x3333333333333333ull) + ((counts >> 2) & 0x3333333333333333ull);
    counts = (counts + (counts >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    const uint64_t running = counts * 0x0101010101010101ull;  // byte i: set bits in bytes 0...i
    // High bit of each byte whose running count exceeds n (counts <= 64 never borrow across bytes).
    const uint64_t beyond = ((running | 0x8080808080808080ull) - (uint64_t)(n + 1) * 0x0101010101010101ull) & 0x8080808080808080ull;
    if (beyond == 0) return 64;
    const int byte = __builtin_ctzll(beyond) >> 3;
    const int before = byte == 0 ? 0 : (int)((running >> (8 * byte - 8)) & 0xFF);
    return 8 * byte + select_in_byte[n - before][(x >> (8 * byte)) & 0xFF];
}

// Zigzag positions from..<to as bits.
static inline uint64_t band(int from, int to) {
    const uint64_t below_to = to >= 64 ? ~0ull : (1ull << to) - 1;
    return below_to & ~((1ull << from) - 1);
}

// Appends the next `count` (0...63) bits of the stream to `bits`, the latest lowest.
static inline uint64_t append_bits(j_decompress_ptr cinfo, fast_entropy *e, uint64_t bits, int count) {
    while (count > 24) {
        ensure(cinfo, e, 24);
        bits = (bits << 24) | take(e, 24);
        count -= 24;
    }
    ensure(cinfo, e, count);
    // take(count) for 0 <= count <= 24 without a branch on zero: (buffer >> 1) >> (63 - count).
    const uint64_t value = (e->buffer >> 1) >> (63 - count);
    e->buffer <<= count;
    e->bits -= count;
    return (bits << count) | value;
}

// G.1.2.3: every coefficient that was non-zero before the scan gets one correction bit, in
// zigzag order, interleaved with the codes of the new coefficients; a set bit adds `bit` to its
// magnitude. The bits do not change which coefficients are zero, so they are collected while
// decoding and applied to the block once at the end (a branch per symbol costs more than the
// work: the bits are random and mispredict).
// Compiled three times below (baseline x86-64; with POPCNT; with POPCNT, BMI and pdep), chosen once
// per image from the CPU, since popcount and bit scans are most of its work.
__attribute__((always_inline)) static inline boolean ac_refine(j_decompress_ptr cinfo, JBLOCKROW *mcu,
                                                               const boolean pdep) {
    fast_entropy *e = (fast_entropy *)cinfo->entropy;
    if (!begin_mcu(cinfo, e)) return TRUE;
    JCOEF *block = mcu[0][0];
    const int first = cinfo->Ss, last = cinfo->Se, bit = 1 << cinfo->Al;
    const uint64_t nonzero = nonzero_in_zigzag_order(block) & band(first, last + 1);
    uint64_t corrections = 0;
    int k = first;
    if (e->end_of_band_run == 0) {
        const huffman_table *table = e->ac_table;
        for (; k <= last; k++) {
            ensure(cinfo, e, 32);
            const int symbol = decode_symbol(e, table), run = symbol >> 4;
            int value = 0;
            if (symbol & 15) {
                // A new coefficient of magnitude 1 (size must be 1), its sign in the next bit
                // (arithmetic, not a branch: the sign is random).
                if ((symbol & 15) != 1) e->damaged = TRUE;
                value = (2 * (int)take(e, 1) - 1) * bit;
            } else if (run != 15) {
                e->end_of_band_run = 1u << run;
                if (run) e->end_of_band_run += take(e, run);
                break;
            }
            // Pass `run` zero coefficients and the non-zero ones among them (one correction bit
            // each); the new coefficient, if any, goes to the zero after them.
            int target = select_bit(~nonzero & band(k, last + 1), run, pdep);
            if (target > last) {  // a run past the band
                e->damaged = TRUE;
                target = last + 1;
            }
            corrections = append_bits(cinfo, e, corrections, __builtin_popcountll(nonzero & band(k, target)));
            k = target;
            if (k <= last) block[natural_order[k]] = (JCOEF)value;  // 0 after sixteen zeros: a zero stays
        }
    }
    if (e->end_of_band_run > 0) {
        if (k <= last) corrections = append_bits(cinfo, e, corrections, __builtin_popcountll(nonzero & band(k, last + 1)));
        e->end_of_band_run--;
    }
    // The last bit read belongs to the highest position: apply from the top down.
    for (uint64_t positions = nonzero; positions != 0; corrections >>= 1) {
        const int k = 63 - __builtin_clzll(positions);
        positions ^= 1ull << k;
        JCOEF *coefficient = block + natural_order[k];
        const int v = *coefficient, apply = (int)(corrections & 1) & ((v & bit) == 0);
        *coefficient = (JCOEF)(v + ((v < 0 ? -bit : bit) & -apply));
    }
    end_mcu(cinfo, e);
    return TRUE;
}

static boolean decode_ac_refine_baseline(j_decompress_ptr cinfo, JBLOCKROW *mcu) {
    return ac_refine(cinfo, mcu, FALSE);
}
__attribute__((target("popcnt"))) static boolean decode_ac_refine_popcnt(j_decompress_ptr cinfo,
                                                                         JBLOCKROW *mcu) {
    return ac_refine(cinfo, mcu, FALSE);
}
__attribute__((target("popcnt,bmi,bmi2"))) static boolean decode_ac_refine_bmi2(j_decompress_ptr cinfo,
                                                                               JBLOCKROW *mcu) {
    return ac_refine(cinfo, mcu, TRUE);
}

// Sets the decoder up for the scan libjpeg has just started.
static void begin_scan(j_decompress_ptr cinfo, fast_entropy *e) {
    const boolean dc = cinfo->Ss == 0;
    for (int i = 0; i < cinfo->comps_in_scan; i++) {
        const jpeg_component_info *component = cinfo->cur_comp_info[i];
        const int number = dc ? component->dc_tbl_no : component->ac_tbl_no;
        const JHUFF_TBL *source = dc ? cinfo->dc_huff_tbl_ptrs[number] : cinfo->ac_huff_tbl_ptrs[number];
        if (dc && cinfo->Ah != 0) continue;  // DC refinement reads raw bits
        if (source == NULL) ERREXIT1(cinfo, JERR_NO_HUFF_TABLE, number);
        huffman_table *table = &e->tables[dc ? 0 : 1][number];
        build_table(table, source);
        if (dc) e->dc_table[i] = table;
        else e->ac_table = table;
    }
    e->pub.decode_mcu = dc ? (cinfo->Ah == 0 ? decode_dc_first : decode_dc_refine)
                           : (cinfo->Ah == 0 ? decode_ac_first : e->decode_ac_refine);
    e->pub.insufficient_data = FALSE;
    e->next = cinfo->src->next_input_byte;
    e->left = cinfo->src->bytes_in_buffer;
    begin_segment(e);
    e->restarts_to_go = cinfo->restart_interval;
}

static void start_pass(j_decompress_ptr cinfo) {
    fast_entropy *e = (fast_entropy *)cinfo->entropy;
    cinfo->entropy = e->libjpeg;  // libjpeg's start_pass reads its own state through cinfo
    (*e->libjpeg->start_pass)(cinfo);
    cinfo->entropy = &e->pub;
    begin_scan(cinfo, e);
}

// Whether the CPU has pdep (BMI2) and it is fast: it is microcoded on AMD families before 19h
// (Zen 3), and on Hygon's Zen-based 18h: hundreds of cycles instead of three.
static boolean pdep_is_fast(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("bmi2")) return FALSE;
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return FALSE;
    const boolean amd = ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163;    // "AuthenticAMD"
    const boolean hygon = ebx == 0x6f677948 && edx == 0x6e65476e && ecx == 0x656e6975;  // "HygonGenuine"
    if (!amd && !hygon) return TRUE;
    __get_cpuid(1, &eax, &ebx, &ecx, &edx);
    const unsigned base = (eax >> 8) & 0xF, family = base == 0xF ? base + ((eax >> 20) & 0xFF) : base;
    return family >= 0x19;
}

// Set once: cpuid is slow, and in a virtual machine a trap to the hypervisor.
static boolean fast_pdep, has_popcnt;

static void initialise(void) {
    fill_select_in_byte();
    fast_pdep = pdep_is_fast();
    has_popcnt = __builtin_cpu_supports("popcnt");
}

void mq_install_progressive_entropy(j_decompress_ptr cinfo, int portable) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, initialise);
    fast_entropy *e = (fast_entropy *)(*cinfo->mem->alloc_small)((j_common_ptr)cinfo, JPOOL_IMAGE, sizeof(fast_entropy));
    memset(e, 0, sizeof *e);
    e->libjpeg = cinfo->entropy;
    e->decode_ac_refine = portable ? decode_ac_refine_baseline
                          : fast_pdep ? decode_ac_refine_bmi2
                          : has_popcnt ? decode_ac_refine_popcnt
                                       : decode_ac_refine_baseline;
    e->pub.start_pass = start_pass;
    cinfo->entropy = &e->pub;
    begin_scan(cinfo, e);  // libjpeg has already started the first scan
}

boolean mq_progressive_entropy_saw_damage(j_decompress_ptr cinfo) {
    return ((fast_entropy *)cinfo->entropy)->damaged;
}
