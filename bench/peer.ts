import { spawn } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { es256Costs } from './crypto-ceiling.ts';
import { alternate, processTreeCpuMs, round, startServerProcess, type BenchLine, type ServerProcess } from './harness.ts';
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
  const { a: ours, b: theirs } = await alternate(
    run(() => startServerProcess(benchDocument(publicKey, { senderConstrained: false }))),
    run(() => startPeerProcess(publicKey)),
  );
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
  };
}

function peerVersion(): string {
  return (JSON.parse(readFileSync(new URL('../node_modules/oidc-provider/package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** node-oidc-provider in its own process (bench/peer-server.ts), with the bench client registered. */
async function startPeerProcess(publicKey: KeyObject): Promise<ServerProcess> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: `${clientId}-1`, alg: 'ES256' };
  const env = { ...process.env, PEER_PORT: String(port), PEER_ISSUER: issuer, PEER_CLIENT: JSON.stringify({ client_id: clientId, jwk, resource, scope: 'order:create order:cancel', ttl: 300 }) };
  const child = spawn(process.execPath, ['bench/peer-server.ts'], { env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`oidc-provider exited with ${code}`)));
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
