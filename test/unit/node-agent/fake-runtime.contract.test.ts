import { FakeRuntime } from '../../helpers/fake-runtime.js';
import { runtimeContract } from '../../helpers/runtime-contract.js';

runtimeContract('fake runtime', async () => ({
  runtime: new FakeRuntime(),
  config: { uid: 'c0ffee00-0000-4000-8000-000000000001', name: 'default/c1', hostname: 'c1', template: 'busybox', addresses: ['10.213.9.10/24'], limits: { pids: 64 } },
}));
