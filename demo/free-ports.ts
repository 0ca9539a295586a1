import { createServer, type Server } from 'node:net';

/**
 * Loopback ports that were free a moment ago (the system picks them), for the demo's servers and
 * the tests'. Used by the demo, the tests (test/helpers/server.ts) and the benchmarks.
 */

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/**
 * `count` distinct loopback ports that were free a moment ago. They are held together before any
 * is let go: probed one after the other, the system can hand out a port it has just taken back, and
 * two of the demo's APIs once got the same one.
 */
export async function freePorts(count: number): Promise<number[]> {
  const listening = () =>
    new Promise<Server>((resolve, reject) => {
      const probe = createServer();
      probe.once('error', reject);
      probe.listen(0, '127.0.0.1', () => resolve(probe));
    });
  const probes = await Promise.all(Array.from({ length: count }, listening));
  const ports = probes.map((probe) => (probe.address() as { port: number }).port);
  await Promise.all(probes.map((probe) => new Promise((resolve) => probe.close(resolve))));
  return ports;
}
