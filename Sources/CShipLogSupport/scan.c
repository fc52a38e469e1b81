// Byte scans the segment scanner runs over whole files (zero tails, batch magic search).
#define _GNU_SOURCE
#include "CShipLogSupport.h"

#include <string.h>

size_t shiplog_first_nonzero(const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;
    while (i < length && ((uintptr_t)(p + i) & 7)) {
        if (p[i]) return i;
        i++;
    }
    while (i + 32 <= length) {
        uint64_t a, b, c, d;
        memcpy(&a, p + i, 8);
        memcpy(&b, p + i + 8, 8);
        memcpy(&c, p + i + 16, 8);
        memcpy(&d, p + i + 24, 8);
        if (a | b | c | d) break;
        i += 32;
    }
    while (i < length) {
        if (p[i]) return i;
        i++;
    }
    return length;
}

size_t shiplog_find4(const void *data, size_t length, const void *needle) {
    const void *hit = memmem(data, length, needle, 4);
    return hit ? (size_t)((const unsigned char *)hit - (const unsigned char *)data) : length;
}

size_t shiplog_end_of_nonzero(const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    size_t end = length;
    while (end >= 32) {
        uint64_t a, b, c, d;
        memcpy(&a, p + end - 32, 8);
        memcpy(&b, p + end - 24, 8);
        memcpy(&c, p + end - 16, 8);
        memcpy(&d, p + end - 8, 8);
        if (a | b | c | d) break;
        end -= 32;
    }
    while (end > 0 && p[end - 1] == 0) end--;
    return end;
}
