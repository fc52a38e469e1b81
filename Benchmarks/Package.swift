// swift-tools-version:6.1
//
// ShipLog micro-benchmarks (ordo-one/benchmark). A package of its own so that the engine's
// root Package.swift stays free of package dependencies.
//
//     cd Benchmarks && swift package benchmark                  # run and print every benchmark
//     make bench-check                                          # compare with Thresholds/, fail on regression
//
// The thresholds (p90 of each metric, checked into Thresholds/) and the tolerances (in
// Sources/ShipLogBenchmarkSupport/Tolerances.swift) are described in the README,
// "Micro-benchmarks".
import PackageDescription

let package = Package(
    name: "ShipLogBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "ShipLog", path: ".."),
        // The malloc interposer (the mallocCount metrics) is a trait from 1.38 on; naming the
        // traits also leaves out the default RuntimeInterposer trait and its dependency.
        .package(url: "https://github.com/ordo-one/benchmark", .upToNextMinor(from: "1.38.0"), traits: ["MallocInterposer"]),
    ],
    targets: [
        // Deterministic workloads, temporary directories and the tolerances shared by the suites.
        .target(
            name: "ShipLogBenchmarkSupport",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ShipLogFormat", package: "ShipLog"),
            ]),
        // CRC32C (each implementation), LZ4 batch encode and decode, the batch header codec.
        .executableTarget(
            name: "FormatBenchmarks",
            dependencies: [
                "ShipLogBenchmarkSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ShipLogFormat", package: "ShipLog"),
            ],
            path: "Benchmarks/FormatBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        // Buffered appends and a reader scan on a real log in a temporary directory.
        .executableTarget(
            name: "LogBenchmarks",
            dependencies: [
                "ShipLogBenchmarkSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ShipLogFormat", package: "ShipLog"),
                .product(name: "ShipLogStorage", package: "ShipLog"),
                .product(name: "ShipLogRecovery", package: "ShipLog"),
            ],
            path: "Benchmarks/LogBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        // Key-value puts and gets.
        .executableTarget(
            name: "KeyValueBenchmarks",
            dependencies: [
                "ShipLogBenchmarkSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ShipLogStorage", package: "ShipLog"),
                .product(name: "ShipLogStateMachine", package: "ShipLog"),
                .product(name: "ShipLogKV", package: "ShipLog"),
            ],
            path: "Benchmarks/KeyValueBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    ],
    swiftLanguageModes: [.v6]
)
