// Socket and thread helpers whose C types (timeval, sockaddr unions, linger) or _GNU_SOURCE
// declarations are awkward from Swift's Glibc overlay. Each returns 0 or an errno value.
#define _GNU_SOURCE
#include "CShipLogSupport.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

int shiplog_set_thread_name(const char *name) {
#if defined(__linux__)
    return pthread_setname_np(pthread_self(), name);
#elif defined(__APPLE__)
    return pthread_setname_np(name);
#else
    (void)name;
    return 0;
#endif
}

int shiplog_net_set_timeout(int fd, int receive, int64_t nanoseconds) {
    struct timeval value;
    if (nanoseconds <= 0) {
        value.tv_sec = 0;   // 0 means no timeout
        value.tv_usec = 0;
    } else {
        value.tv_sec = (time_t)(nanoseconds / 1000000000);
        value.tv_usec = (suseconds_t)((nanoseconds % 1000000000) / 1000);
        if (value.tv_sec == 0 && value.tv_usec == 0) value.tv_usec = 1;   // not "none"
    }
    int option = receive ? SO_RCVTIMEO : SO_SNDTIMEO;
    return setsockopt(fd, SOL_SOCKET, option, &value, sizeof value) == 0 ? 0 : errno;
}

int shiplog_net_format_address(const void *address, uint32_t length, char *host, size_t hostCapacity,
                               uint16_t *port) {
    const struct sockaddr *generic = address;
    if (generic->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        *port = ntohs(((const struct sockaddr_in *)address)->sin_port);
    } else if (generic->sa_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
        *port = ntohs(((const struct sockaddr_in6 *)address)->sin6_port);
    } else {
        return EAFNOSUPPORT;
    }
    int result = getnameinfo(generic, (socklen_t)length, host, (socklen_t)hostCapacity, NULL, 0, NI_NUMERICHOST);
    return result == 0 ? 0 : EINVAL;
}

int shiplog_net_socket_address(int fd, int peer, char *host, size_t hostCapacity, uint16_t *port) {
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    memset(&address, 0, sizeof address);
    int result = peer ? getpeername(fd, (struct sockaddr *)&address, &length)
                      : getsockname(fd, (struct sockaddr *)&address, &length);
    if (result != 0) return errno;
    return shiplog_net_format_address(&address, (uint32_t)length, host, hostCapacity, port);
}

int shiplog_net_send_flags(void) {
#ifdef MSG_NOSIGNAL
    return MSG_NOSIGNAL;
#else
    return 0;
#endif
}

int shiplog_net_set_abortive_close(int fd) {
    struct linger value;
    value.l_onoff = 1;
    value.l_linger = 0;
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &value, sizeof value) == 0 ? 0 : errno;
}

int shiplog_net_accept(int fd) {
#if defined(__linux__)
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
#else
    return accept(fd, NULL, NULL);
#endif
}
