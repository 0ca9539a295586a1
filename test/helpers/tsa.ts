/** The local openssl TSA of the agent demo (demo/local-tsa.ts), for tests. */
export { startLocalTsa, type LocalTsa } from '../../demo/local-tsa.ts';
