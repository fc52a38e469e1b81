// CRC-32C: SSE4.2 (three interleaved streams for long buffers) with a slicing-by-8 fallback.
#include "CShipLogSupport.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <nmmintrin.h>
#define SHIPLOG_X86 1
#endif

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static uint32_t shift_table[4][256]; // multiplies a CRC by x^(8*STRIPE) for the 3-way combine
static int hardware = -1;

#define STRIPE 4096 // bytes per stream in one 3-way round

static uint32_t gf2_multiply(uint32_t a, uint32_t b) {
    // Multiply two polynomials modulo POLY in the reflected domain.
    uint32_t product = 0;
    for (int i = 0; i < 32; i++) {
        if (a & 0x80000000u) product ^= b;
        b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;
        a <<= 1;
    }
    return product;
}

static uint32_t x_pow_8n(size_t n) {
    // x^(8n) mod POLY, reflected: start from x^0 (0x80000000) and multiply by x^8 n times (square-and-multiply).
    uint32_t result = 0x80000000u;
    uint32_t base = 0x00800000u; // x^8
    while (n) {
        if (n & 1) result = gf2_multiply(result, base);
        base = gf2_multiply(base, base);
        n >>= 1;
    }
    return result;
}

__attribute__((constructor)) static void shiplog_crc32c_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xFF] ^ (c >> 8);
            table[k][n] = c;
        }
    }
    uint32_t shift = x_pow_8n(STRIPE);
    for (uint32_t n = 0; n < 256; n++) {
        for (int k = 0; k < 4; k++) {
            shift_table[k][n] = gf2_multiply(n << (8 * k) , shift);
        }
    }
#ifdef SHIPLOG_X86
    unsigned eax, ebx, ecx, edx;
    hardware = (__get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_SSE4_2)) ? 1 : 0;
#else
    hardware = 0;
#endif
}

int shiplog_crc32c_hardware_available(void) { return hardware == 1; }

uint32_t shiplog_crc32c_software(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = ~crc;
    while (length && ((uintptr_t)p & 7)) {
        c = table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        length--;
    }
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= c;
        c = table[7][word & 0xFF] ^ table[6][(word >> 8) & 0xFF] ^ table[5][(word >> 16) & 0xFF] ^
            table[4][(word >> 24) & 0xFF] ^ table[3][(word >> 32) & 0xFF] ^ table[2][(word >> 40) & 0xFF] ^
            table[1][(word >> 48) & 0xFF] ^ table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--) c = table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

#ifdef SHIPLOG_X86
static inline uint32_t shift_crc(uint32_t c) {
    return shift_table[0][c & 0xFF] ^ shift_table[1][(c >> 8) & 0xFF] ^ shift_table[2][(c >> 16) & 0xFF] ^
           shift_table[3][c >> 24];
}

__attribute__((target("sse4.2")))
uint32_t shiplog_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t c = (uint32_t)~crc;
    while (length && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        length--;
    }
    // Three independent streams hide the crc32 instruction's 3-cycle latency.
    while (length >= 3 * STRIPE) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *p1 = p + STRIPE, *p2 = p + 2 * STRIPE;
        for (size_t i = 0; i < STRIPE; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p1 + i, 8);
            memcpy(&w2, p2 + i, 8);
            c = _mm_crc32_u64(c, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
        }
        // crc(A ++ B) = shift(crc(A)) ^ crc'(B), where crc' runs from register 0.
        c = shift_crc((uint32_t)c) ^ c1;
        c = shift_crc((uint32_t)c) ^ c2;
        p += 3 * STRIPE;
        length -= 3 * STRIPE;
    }
    while (length >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        length -= 8;
    }
    while (length--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#else
uint32_t shiplog_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
    return shiplog_crc32c_software(crc, data, length);
}
#endif

uint32_t shiplog_crc32c(uint32_t crc, const void *data, size_t length) {
    if (hardware == 1) return shiplog_crc32c_hardware(crc, data, length);
    return shiplog_crc32c_software(crc, data, length);
}
