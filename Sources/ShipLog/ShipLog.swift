// The umbrella module for embedders: `import ShipLog` brings the format, storage, recovery,
// state-machine, key-value, wire-protocol and replication layers. Each layer is also a
// product of its own.
@_exported public import ShipLogFormat
@_exported public import ShipLogStorage
@_exported public import ShipLogRecovery
@_exported public import ShipLogStateMachine
@_exported public import ShipLogKV
@_exported public import ShipLogProtocol
@_exported public import ShipLogReplication
