// C shims for what Swift's Glibc overlay lacks or what needs a target attribute.
#ifndef CSHIPLOG_SUPPORT_H
#define CSHIPLOG_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), continuing from `crc`.
/// `crc` is the finalised CRC of the bytes so far (0 for none); the result is finalised too,
/// so crc32c(crc32c(0, a), b) == crc32c(0, a ++ b).
/// Dispatches to SSE4.2 when the CPU has it, to slicing-by-8 otherwise.
uint32_t shiplog_crc32c(uint32_t crc, const void *data, size_t length);

/// The portable slicing-by-8 implementation, always available (tests compare both).
uint32_t shiplog_crc32c_software(uint32_t crc, const void *data, size_t length);

/// The SSE4.2 implementation. Only call when shiplog_crc32c_hardware_available() != 0.
uint32_t shiplog_crc32c_hardware(uint32_t crc, const void *data, size_t length);

/// 1 when the CPU executes the SSE4.2 crc32 instruction, else 0.
int shiplog_crc32c_hardware_available(void);

/// fallocate(2) with mode 0 (allocate and extend the size). Returns 0 or an errno value.
int shiplog_fallocate(int fd, int64_t offset, int64_t length);

/// open(2) with O_DIRECT added to `flags`. Returns the descriptor or -1 with errno set.
int shiplog_open_direct(const char *path, int flags, int mode);

/// The O_DIRECT flag value on this platform (0 where unsupported).
int shiplog_o_direct_flag(void);

#ifdef __cplusplus
}
#endif

#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Index of the first non-zero byte in `data[0..<length]`, or `length` when all are zero.
size_t shiplog_first_nonzero(const void *data, size_t length);

/// Index of the first occurrence of the 4 bytes at `needle` in `data[0..<length]`, or `length`.
size_t shiplog_find4(const void *data, size_t length, const void *needle);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Index just past the last non-zero byte of `data[0..<length]` (0 when all are zero).
size_t shiplog_end_of_nonzero(const void *data, size_t length);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Names the calling thread (at most 15 bytes on Linux). Returns 0 or an errno value.
int shiplog_set_thread_name(const char *name);

/// Sets SO_RCVTIMEO (`receive` != 0) or SO_SNDTIMEO on socket `fd` to `nanoseconds`
/// (rounded down to microseconds, at least 1 µs); 0 or less removes the timeout.
/// Returns 0 or an errno value.
int shiplog_net_set_timeout(int fd, int receive, int64_t nanoseconds);

/// Writes the numeric host of the IPv4 or IPv6 socket address at `address` (`length` bytes)
/// into `host` (NUL-terminated, `hostCapacity` bytes; 46 bytes always suffice) and its port
/// into `port`. Returns 0, EAFNOSUPPORT for other families, or EINVAL.
int shiplog_net_format_address(const void *address, uint32_t length, char *host, size_t hostCapacity,
                               uint16_t *port);

/// shiplog_net_format_address of getpeername (`peer` != 0) or getsockname of `fd`.
int shiplog_net_socket_address(int fd, int peer, char *host, size_t hostCapacity, uint16_t *port);

/// The flags every send(2) passes: MSG_NOSIGNAL where it exists (a closed peer gives EPIPE,
/// not SIGPIPE).
int shiplog_net_send_flags(void);

/// SO_LINGER {on, 0 s}: close(2) then sends RST instead of FIN. Returns 0 or an errno value.
int shiplog_net_set_abortive_close(int fd);

/// accept4(2) with SOCK_CLOEXEC (plain accept where accept4 does not exist): the new
/// descriptor, or -1 with errno set.
int shiplog_net_accept(int fd);
#ifdef __cplusplus
}
#endif
