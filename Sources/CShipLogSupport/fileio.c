// fallocate(2) and O_DIRECT, which Swift's Glibc overlay does not expose.
#define _GNU_SOURCE
#include "CShipLogSupport.h"

#include <errno.h>
#include <fcntl.h>

int shiplog_fallocate(int fd, int64_t offset, int64_t length) {
#ifdef __linux__
    int result;
    do {
        result = fallocate(fd, 0, (off_t)offset, (off_t)length);
    } while (result != 0 && errno == EINTR);
    return result == 0 ? 0 : errno;
#else
    (void)fd; (void)offset; (void)length;
    return EOPNOTSUPP;
#endif
}

int shiplog_o_direct_flag(void) {
#ifdef O_DIRECT
    return O_DIRECT;
#else
    return 0;
#endif
}

int shiplog_open_direct(const char *path, int flags, int mode) {
    return open(path, flags | shiplog_o_direct_flag(), mode);
}
