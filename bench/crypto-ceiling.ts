import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { performance } from 'node:perf_hooks';

/**
 * Per-core cost of one ES256 signature and one verification with node:crypto KeyObjects (DER
 * signatures, the fastest path on Node 24, DESIGN §9), measured now on this machine.
 */
export function es256Costs(iterations = 4000): { signMs: number; verifyMs: number } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const data = Buffer.from('eyJhbGciOiJFUzI1NiJ9.' + 'x'.repeat(300));
  for (let i = 0; i < 200; i++) verify('sha256', data, publicKey, sign('sha256', data, privateKey)); // warm up
  let t = performance.now();
  let signature = Buffer.alloc(0);
  for (let i = 0; i < iterations; i++) signature = sign('sha256', data, privateKey);
  const signMs = (performance.now() - t) / iterations;
  t = performance.now();
  for (let i = 0; i < iterations; i++) verify('sha256', data, publicKey, signature);
  const verifyMs = (performance.now() - t) / iterations;
  return { signMs, verifyMs };
}
