#if canImport(Glibc)
import Glibc

extension CoordinationTestServer {
    /// The coordination services the failover tests run against; the raw value is the scheme
    /// of an election URL.
    public enum Backend: String, CaseIterable, Sendable, CustomStringConvertible {
        case etcd
        case zookeeper

        public var description: String { rawValue }

        /// etcd's server binary (Debian: etcd-server), or ZooKeeper's start script (Debian:
        /// zookeeper) when java is installed too; nil when missing.
        public var binary: String? {
            switch self {
            case .etcd: Self.etcdBinary
            case .zookeeper: Self.zooKeeperScript
            }
        }

        /// Whether a backend is missing: the condition of the suites' `.enabled(if:)` traits.
        public static let anyMissing = allCases.contains { $0.binary == nil }

        /// Why the suites that need both services are skipped, and how to install them.
        public static let skipMessage =
            "etcd (\(Backend.etcd.binary ?? "missing: apt-get install etcd-server")) and ZooKeeper "
            + "(\(Backend.zookeeper.binary ?? "missing: apt-get install zookeeper")): `make deps` installs both"

        private static let etcdBinary = firstExecutable(["/usr/bin/etcd", "/usr/local/bin/etcd"])

        private static let zooKeeperScript: String? = {
            guard firstExecutable(["/usr/bin/java"]) != nil else { return nil }
            return firstExecutable(["/usr/share/zookeeper/bin/zkServer.sh", "/opt/zookeeper/bin/zkServer.sh"])
        }()

        /// The first of `candidates` that is executable, else the first of their names found on `PATH`.
        private static func firstExecutable(_ candidates: [String]) -> String? {
            candidates.first { access($0, X_OK) == 0 }
                ?? candidates.lazy.compactMap { findOnPath(String($0.split(separator: "/").last ?? "")) }.first
        }

        private static func findOnPath(_ name: String) -> String? {
            let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
            return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
        }
    }
}
#endif
