// The umbrella module for embedders: `import ShipLog` brings the format, storage, recovery,
// state-machine and key-value layers. Each layer is also a product of its own.
@_exported public import ShipLogFormat
@_exported public import ShipLogStorage
@_exported public import ShipLogRecovery
@_exported public import ShipLogStateMachine
@_exported public import ShipLogKV
