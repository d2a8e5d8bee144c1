// Public face of src/node-agent.
export { NodeAgent, type NodeAgentOptions } from './agent.js';
export { limitsFromSpec, configFromSpec } from './ve-config.js';
