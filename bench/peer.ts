import { spawn } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { es256Costs } from './crypto-ceiling.ts';
import { palindrome, processTreeCpuMs, round, startServerProcess, type BenchLine, type ServerProcess } from './harness.ts';
import { freePort } from '../test/helpers/server.ts';
import { benchDocument, clientId, loadM2m, resource } from './m2m.ts';

/**
 * `peer` (issue 13 item 6): Clearance against node-oidc-provider on the same machine in the same
 * run, both answering the m2m-private-key-jwt request (client_credentials, fresh ES256 assertion
 * per request with its replay check, ES256 JWT access token for one resource). Each server is its
 * own process under the same load generator, run A B B A (half the seconds each time, `alternate`). Clearance keeps its guarantees (durable jti,
 * token.issued committed before the answer); the peer keeps everything in memory and audits
 * nothing (bench/peer-server.ts). Reports both throughputs, the ratio (the headline of issue 13),
 * and each one's server CPU per request beside the crypto's.
 *
 * Beside them, in the same turns (A B C D D C B A), the floor (bench/floor-server.ts): node:http
 * answering the same request with the assertion's signature verified and a token signed, nothing
 * else, its crypto on the event loop (`floor_`, as Clearance) and on the threadpool
 * (`floor_async_`, as node-oidc-provider). What it reaches bounds what any server doing this
 * request reaches on this machine under this load generator: `floor_vs_peer` is the highest
 * `ratio` a server with its crypto on the event loop can show here, `floor_cpu_to_crypto` the
 * lowest `clearance_cpu_to_crypto`, and `clearance_cpu_over_floor_us` what Clearance's checks,
 * storage, audit and framework cost on top of HTTP and the crypto.
 */
export async function peer(seconds: number): Promise<BenchLine> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const costs = es256Costs();
  const cryptoMs = costs.signMs + costs.verifyMs;
  const half = Math.max(1, seconds / 2);
  const run = (start: () => Promise<ServerProcess>) => async () => {
    const server = await start();
    try {
      return await loadM2m(server, privateKey, half, cryptoMs);
    } finally {
      await server.stop();
    }
  };
  const [ours, theirs, floor, floorAsync] = (await palindrome([
    run(() => startServerProcess(benchDocument(publicKey, { senderConstrained: false }))),
    run(() => startPeerProcess(publicKey)),
    run(() => startFloorProcess(publicKey, 'sync')),
    run(() => startFloorProcess(publicKey, 'async')),
  ])) as [Mean, Mean, Mean, Mean];
  return {
    scenario: 'peer',
    peer: `oidc-provider ${peerVersion()}`,
    clearance_rps: round(ours('rps')),
    peer_rps: round(theirs('rps')),
    ratio: round(ours('rps') / theirs('rps'), 2),
    clearance_cpu_us_per_req: round(ours('server_cpu_us_per_req'), 1),
    peer_cpu_us_per_req: round(theirs('server_cpu_us_per_req'), 1),
    crypto_us_per_req: round(cryptoMs * 1000, 1),
    clearance_cpu_to_crypto: round(ours('server_cpu_us_per_req') / (cryptoMs * 1000), 2),
    clearance_p99_ms: round(ours('p99_ms')),
    peer_p99_ms: round(theirs('p99_ms')),
    floor_rps: round(floor('rps')),
    floor_cpu_us_per_req: round(floor('server_cpu_us_per_req'), 1),
    floor_cpu_to_crypto: round(floor('server_cpu_us_per_req') / (cryptoMs * 1000), 2),
    floor_vs_peer: round(floor('rps') / theirs('rps'), 2),
    floor_async_rps: round(floorAsync('rps')),
    floor_async_cpu_us_per_req: round(floorAsync('server_cpu_us_per_req'), 1),
    floor_async_vs_peer: round(floorAsync('rps') / theirs('rps'), 2),
    clearance_vs_floor: round(ours('rps') / floor('rps'), 2),
    clearance_cpu_over_floor_us: round(ours('server_cpu_us_per_req') - floor('server_cpu_us_per_req'), 1),
  };
}

type Mean = (field: string) => number;

function peerVersion(): string {
  return (JSON.parse(readFileSync(new URL('../node_modules/oidc-provider/package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** node-oidc-provider in its own process (bench/peer-server.ts), with the bench client registered. */
function startPeerProcess(publicKey: KeyObject): Promise<ServerProcess> {
  return startChild(new URL('./peer-server.ts', import.meta.url), 'PEER', publicKey);
}

/** The floor in its own process (bench/floor-server.ts), its crypto on the event loop or the threadpool. */
export function startFloorProcess(publicKey: KeyObject, crypto: 'sync' | 'async'): Promise<ServerProcess> {
  return startChild(new URL('./floor-server.ts', import.meta.url), 'FLOOR', publicKey, { FLOOR_CRYPTO: crypto });
}

/** `script` in its own process, told its port, issuer and the bench client in `<prefix>_` variables; ready when it says so. */
async function startChild(script: URL, prefix: string, publicKey: KeyObject, extra: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: `${clientId}-1`, alg: 'ES256' };
  const client = JSON.stringify({ client_id: clientId, jwk, resource, scope: 'order:create order:cancel', ttl: 300 });
  const env = { ...process.env, ...extra, [`${prefix}_PORT`]: String(port), [`${prefix}_ISSUER`]: issuer, [`${prefix}_CLIENT`]: client };
  const child = spawn(process.execPath, [fileURLToPath(script)], { env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`${fileURLToPath(script)} exited with ${code}`)));
  });
  return {
    issuer,
    serverCpuMs: () => processTreeCpuMs(child.pid!),
    dataDir: '',
    env,
    child,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
