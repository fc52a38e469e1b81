#if canImport(Glibc)
public import Glibc

/// posix_spawn attributes for a child that starts with no blocked signals and the default
/// dispositions of the signals that end it (SIGPIPE, SIGTERM, SIGINT, SIGHUP), whatever the
/// spawning thread has (test worker threads block SIGTERM; test processes ignore SIGPIPE).
/// The attributes live for the duration of `body`.
public func withDefaultSignalSpawnAttributes<T>(_ body: (inout posix_spawnattr_t) throws -> T) rethrows -> T {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    return try body(&attributes)
}
#endif
