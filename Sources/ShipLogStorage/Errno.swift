#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let ENOSPC_VALUE: Int32 = ENOSPC
let EDQUOT_VALUE: Int32 = EDQUOT
let EOPNOTSUPP_VALUE: Int32 = EOPNOTSUPP
let ENOSYS_VALUE: Int32 = ENOSYS
let ENOENT_VALUE: Int32 = ENOENT

/// "ENOSPC (No space left on device)" and so on.
func errorName(_ code: Int32) -> String {
    let names: [Int32: String] = [
        EIO: "EIO", ENOSPC: "ENOSPC", EDQUOT: "EDQUOT", ENOENT: "ENOENT", EEXIST: "EEXIST", EACCES: "EACCES",
        EROFS: "EROFS", EBADF: "EBADF", EINVAL: "EINVAL", EOPNOTSUPP: "EOPNOTSUPP", ENOSYS: "ENOSYS",
        EISDIR: "EISDIR", ENOTDIR: "ENOTDIR", EPERM: "EPERM", EMFILE: "EMFILE", EWOULDBLOCK: "EWOULDBLOCK",
    ]
    let message = String(cString: strerror(code))
    return "\(names[code] ?? "errno \(code)") (\(message))"
}
