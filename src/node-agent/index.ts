// Public face of src/node-agent.
export { NodeAgent, type NodeAgentOptions } from './agent.js';
export { limitsFromSpec, configFromSpec } from './ve-config.js';
export { NodeRegistration, hostProbe, type HostProbe, type HostCapacity, type NodeRegistrationOptions } from './node-registration.js';
export { BeancounterMetrics, startMetricsServer, type MetricsServer } from './metrics.js';
export { BeancounterRefresher, beancountersFrom } from './beancounters.js';
export { MigrationAgent, type MigrationAgentOptions } from './migration-agent.js';
export { MigrationChannelServer, MigrationChannelClient, parseHostPort } from './migration-channel.js';
