public import ShipLogReplication

/// Free loopback TCP ports for servers the tests start (each bound once, then released, so
/// another process could still take one before the server binds it).
public enum TestPorts {
    /// Ports below Linux's ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 by
    /// default), which no outgoing connection is given.
    public static let belowEphemeralRangePorts: ClosedRange<UInt16> = 20_000...32_767
    /// Random ports tried below the ephemeral range before falling back to ``free()``.
    static let belowEphemeralRangeAttempts = 200

    /// A free loopback port, chosen by the kernel (from the ephemeral range).
    public static func free() throws(TransportError) -> UInt16 {
        let listener = try TCPNetwork().listen(on: Endpoint(host: "127.0.0.1", port: 0))
        defer { listener.close() }
        return listener.endpoint.port
    }

    /// A free loopback port in ``belowEphemeralRangePorts``, for a server that must get its
    /// port back after a restart: an outgoing connection of another process never holds one.
    /// Falls back to ``free()`` when none of a few random tries is free.
    public static func belowEphemeralRange() throws(TransportError) -> UInt16 {
        for _ in 0..<belowEphemeralRangeAttempts {
            let port = UInt16.random(in: belowEphemeralRangePorts)
            guard let listener = try? TCPNetwork().listen(on: Endpoint(host: "127.0.0.1", port: port)) else { continue }
            listener.close()
            return port
        }
        return try free()
    }
}
