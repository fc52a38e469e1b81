// The replication wire protocol (docs/PROTOCOL.md).
