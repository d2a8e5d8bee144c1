// Public face of src/apiserver: the embedded Kubernetes-compatible API server.
export { startApiServer, type ApiServerOptions, type RunningApiServer } from './server.js';
export { kubeconfigYaml } from './kubeconfig.js';
