// swift-tools-version:6.0
//
// ShipLog: a write-ahead-log shipping storage engine.
// The engine has no package dependencies: only the toolchain and the system
// library liblz4 (Debian: liblz4-dev). See docs/ARCHITECTURE.md for the layers.
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "ShipLog",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ShipLog", targets: ["ShipLog"]),
        .library(name: "ShipLogFormat", targets: ["ShipLogFormat"]),
        .library(name: "ShipLogStorage", targets: ["ShipLogStorage"]),
        .library(name: "ShipLogRecovery", targets: ["ShipLogRecovery"]),
        .library(name: "ShipLogStateMachine", targets: ["ShipLogStateMachine"]),
        .library(name: "ShipLogKV", targets: ["ShipLogKV"]),
        .library(name: "ShipLogProtocol", targets: ["ShipLogProtocol"]),
        .library(name: "ShipLogReplication", targets: ["ShipLogReplication"]),
        .library(name: "ShipLogFailover", targets: ["ShipLogFailover"]),
        .executable(name: "shiplog", targets: ["shiplog"]),
    ],
    targets: [
        // C shims: hardware CRC32C with runtime detection, fallocate, O_DIRECT.
        .target(name: "CShipLogSupport", cSettings: [.unsafeFlags(["-O3"])]),
        // liblz4 through pkg-config.
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // Layer 1: on-disk format and codecs. No I/O.
        .target(name: "ShipLogFormat", dependencies: ["CShipLogSupport", "CLZ4"], swiftSettings: strict),
        // Layer 2: segments, writer with group commit, reader, tailer, retention.
        .target(name: "ShipLogStorage", dependencies: ["ShipLogFormat", "CShipLogSupport"], swiftSettings: strict),
        // Layer 3: opening a log after any shutdown, clean or not.
        .target(name: "ShipLogRecovery", dependencies: ["ShipLogStorage", "CShipLogSupport"], swiftSettings: strict),
        // Layer 4: deterministic state machines on the log, with checkpoints and replay.
        .target(name: "ShipLogStateMachine", dependencies: ["ShipLogRecovery"], swiftSettings: strict),
        // Layer 4: the embedded key-value store (a state machine with a B-tree index).
        .target(name: "ShipLogKV", dependencies: ["ShipLogStateMachine"], swiftSettings: strict),
        // The replication wire protocol: frames, messages, handshake and authentication. No I/O.
        .target(name: "ShipLogProtocol", dependencies: ["ShipLogFormat"], swiftSettings: strict),
        // Layer 5: log shipping over TCP: primary, followers, commit levels, clients.
        .target(
            name: "ShipLogReplication", dependencies: ["ShipLogStateMachine", "ShipLogProtocol", "CShipLogSupport"],
            swiftSettings: strict),
        // Failover: leader election through a coordination service (etcd, ZooKeeper).
        .target(name: "ShipLogFailover", dependencies: ["ShipLogReplication"], swiftSettings: strict),
        // Umbrella for embedders.
        .target(
            name: "ShipLog",
            dependencies: [
                "ShipLogFormat", "ShipLogStorage", "ShipLogRecovery", "ShipLogStateMachine", "ShipLogKV", "ShipLogProtocol",
                "ShipLogReplication",
            ],
            swiftSettings: strict),
        // The command-line tool.
        .executableTarget(name: "shiplog", dependencies: ["ShipLog", "ShipLogFailover", "CLZ4"], swiftSettings: strict),
        // Test-only: fault-injecting file systems and network, coordination test servers.
        .target(name: "ShipLogTestSupport", dependencies: ["ShipLogStorage", "ShipLogReplication"], swiftSettings: strict),

        .testTarget(name: "ShipLogFormatTests", dependencies: ["ShipLogFormat"]),
        .testTarget(name: "ShipLogStorageTests", dependencies: ["ShipLog", "ShipLogTestSupport"]),
        .testTarget(name: "ShipLogRecoveryTests", dependencies: ["ShipLog", "ShipLogTestSupport"]),
        .testTarget(name: "ShipLogKVTests", dependencies: ["ShipLog", "ShipLogTestSupport"]),
        .testTarget(name: "ShipLogProtocolTests", dependencies: ["ShipLogProtocol"]),
        .testTarget(name: "ShipLogReplicationTests", dependencies: ["ShipLog", "ShipLogTestSupport"]),
        .testTarget(name: "ShipLogFailoverTests", dependencies: ["ShipLogFailover", "ShipLogTestSupport"]),
        .testTarget(name: "ShipLogCLITests", dependencies: ["ShipLog", "shiplog", "ShipLogTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
