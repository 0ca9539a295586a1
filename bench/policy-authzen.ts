/**
 * policy-authzen: the AuthZEN access evaluation API over HTTP with the example policy set active
 * (examples/policies over examples/entities.yaml, the people and clients of test/policy/fixture.ts),
 * in its own server process. A policy enforcement point (`order-gateway`, client_secret_basic)
 * asks about orders, positions and reports of people, services and an algorithm; each order's
 * notional is drawn afresh, as order-by-order checks are (orders whose notionals fall in one band
 * of the policies' limits within the same second are answered from the engine's memory,
 * src/policy/bands.ts; the rest are Cedar calls). Every
 * decision is resolved against Clearance's records, evaluated and made durable as its audit event
 * before the answer leaves. Three loads, each for `seconds` after a warm-up (harness.ts `warmUp`): one
 * decision per request (`POST /access/v1/evaluation`), batches of 10 (`POST /access/v1/evaluations`)
 * of every kind of request in turn, and batches of 10 orders of one trader (AuthZEN §7.1's default
 * subject at the top, each item an instrument and a notional: a PEP checking a basket of orders).
 */
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { examplePolicyText, exampleEntities, peopleAndClients } from '../test/policy/fixture.ts';
import { load, round, startServerProcess, warmUp, type BenchLine } from './harness.ts';

const batchSize = 10;

export async function policyAuthzen(seconds: number, connections = 16): Promise<BenchLine> {
  const server = await startServerProcess({
    ...exampleEntities(),
    ...peopleAndClients,
    policies: [{ version: 'bench', text: examplePolicyText(), change_ref: 'BENCH-1', author: 'bench.author', approver: 'bench.approver', active: true }],
    // The algorithm's mandate: its orders name it by id and version, and Clearance loads the terms.
    mandates: [
      {
        id: 'mandate-1',
        grantor: { lei: '5493001KJTIIGC8Y1R12' },
        grantee: { client_id: 'algo-fx-1' },
        scopes: ['order:create'],
        constraints: { instrument_classes: ['fx'], max_notional: { amount: '10000000', currency: 'USD' } },
        legal_basis: { reference: 'BENCH-MANDATE-1' },
        effective_from: '2020-01-01T00:00:00Z',
        accepted_by: 'bench.desk.head',
        accepted_at: '2020-01-01T00:00:00Z',
      },
    ],
  });
  try {
    const secret = (server.applied ?? []).map((l) => /^client_secret for order-gateway [^:]*: (\S+)$/.exec(l)?.[1]).find(Boolean);
    if (!secret) throw new Error(`no secret for order-gateway in:\n${(server.applied ?? []).join('\n')}`);
    const authorization = `Basic ${Buffer.from(`order-gateway:${secret}`).toString('base64')}`;
    const users = userIds(server.dataDir);
    const evaluations = requestMakers(users);
    let n = 0;
    const next = () => evaluations[n++ % evaluations.length]!();
    const headers = { 'content-type': 'application/json', authorization };

    const expected = await fetch(`${server.issuer}/access/v1/evaluation`, { method: 'POST', headers, body: JSON.stringify(next()) });
    if (expected.status !== 200) throw new Error(`evaluation: ${expected.status} ${await expected.text()}`);

    const single = { origin: server.issuer, path: '/access/v1/evaluation', connections, request: () => ({ headers, body: JSON.stringify(next()) }) };
    const batched = {
      origin: server.issuer,
      path: '/access/v1/evaluations',
      connections,
      request: () => ({ headers, body: JSON.stringify({ evaluations: Array.from({ length: batchSize }, next) }) }),
    };
    await warmUp(single);
    const cpu0 = server.serverCpuMs();
    const singleRun = await load({ ...single, seconds });
    const cpu1 = server.serverCpuMs();
    await warmUp(batched);
    const cpu1b = server.serverCpuMs();
    const batchRun = await load({ ...batched, seconds });
    const cpu2 = server.serverCpuMs();
    const basket = { ...batched, request: () => ({ headers, body: JSON.stringify(basketOf(users, batchSize)) }) };
    await warmUp(basket);
    const cpu2b = server.serverCpuMs();
    const basketRun = await load({ ...basket, seconds });
    const cpu3 = server.serverCpuMs();
    if (singleRun.failures || batchRun.failures || basketRun.failures) throw new Error(`policy-authzen: ${singleRun.failures} + ${batchRun.failures} + ${basketRun.failures} requests failed`);
    return {
      scenario: 'policy-authzen',
      decisions_per_s: singleRun.rps,
      p50_ms: singleRun.p50_ms,
      p99_ms: singleRun.p99_ms,
      server_cpu_us_per_decision: round(((cpu1 - cpu0) * 1000) / singleRun.requests, 1),
      [`batch${batchSize}_decisions_per_s`]: round(batchRun.rps * batchSize),
      [`batch${batchSize}_p50_ms`]: batchRun.p50_ms,
      [`batch${batchSize}_server_cpu_us_per_decision`]: round(((cpu2 - cpu1b) * 1000) / (batchRun.requests * batchSize), 1),
      [`one_subject_batch${batchSize}_decisions_per_s`]: round(basketRun.rps * batchSize),
      [`one_subject_batch${batchSize}_server_cpu_us_per_decision`]: round(((cpu3 - cpu2b) * 1000) / (basketRun.requests * batchSize), 1),
    };
  } finally {
    await server.stop();
  }
}

/** The users' ids (the `sub` a PEP names them by), by username, read from the server's database. */
function userIds(dataDir: string): Record<string, string> {
  const db = new DatabaseSync(join(dataDir, 'clearance.db'), { readOnly: true });
  try {
    const rows = db.prepare('select id, username from users').all() as { id: string; username: string }[];
    return Object.fromEntries(rows.map((r) => [r.username, r.id]));
  } finally {
    db.close();
  }
}

const between = (low: number, high: number) => low + Math.floor(Math.random() * (high - low));
const instrument = (id: string, instrument_class: string) => ({ type: 'instrument', id, properties: { instrument_class } });

/** A basket of `size` orders of one trader (alice): FX and rates instruments, notionals drawn afresh, her the request's default subject. */
function basketOf(users: Record<string, string>, size: number): Record<string, unknown> {
  const instruments = [instrument('EURUSD', 'fx'), instrument('GBPUSD', 'fx'), instrument('SOFR-2Y', 'rates_derivatives')];
  return {
    subject: { type: 'user', id: users.alice! },
    action: { name: 'order:create' },
    evaluations: Array.from({ length: size }, (_, i) => ({ resource: instruments[i % instruments.length], context: { notional: between(1, 60_000_000), currency: 'USD' } })),
  };
}

/** Makers of AuthZEN evaluation requests, allows and denies of several policies, in turn. */
function requestMakers(users: Record<string, string>): (() => Record<string, unknown>)[] {
  const user = (name: string) => ({ type: 'user', id: users[name]! });
  const order = (subject: unknown, resource: unknown, maxNotional: number, extra: Record<string, unknown> = {}) => () => ({
    subject,
    action: { name: 'order:create' },
    resource,
    context: { notional: between(1, maxNotional), currency: 'USD', ...extra },
  });
  return [
    // The FX desk limit (50m): mostly allowed, some denied.
    order(user('alice'), instrument('EURUSD', 'fx'), 60_000_000),
    // The rates desk limit on a complex product alice is suitable for.
    order(user('alice'), instrument('SOFR-2Y', 'rates_derivatives'), 30_000_000),
    // KYC pending: denied.
    order(user('bob'), instrument('BTC-USD', 'crypto'), 1_000_000),
    // A class none of carol's desks trades... crypto derivatives she is not suitable for.
    order(user('carol'), instrument('BTC-PERP', 'crypto_derivatives'), 3_000_000),
    // An algorithm under its mandate for FX (named by id and version; Clearance loads its 10m ceiling).
    order({ type: 'agent', id: 'algo-fx-1' }, instrument('GBPUSD', 'fx'), 12_000_000, { mandate: { id: 'mandate-1', version: 1 } }),
    // A firm's risk engine reads its own account in its region, and an embargoed custodian's.
    () => ({ subject: { type: 'client', id: 'risk-engine' }, action: { name: 'position:view' }, resource: { type: 'account', id: 'GB-FX-001' }, context: { region: 'uk' } }),
    () => ({ subject: { type: 'client', id: 'risk-engine' }, action: { name: 'position:view' }, resource: { type: 'account', id: 'CU-CUST-001' }, context: { region: 'us' } }),
    // A trader's desk account.
    () => ({ subject: user('alice'), action: { name: 'report:view' }, resource: { type: 'account', id: 'GB-FX-001' }, context: { region: 'uk' } }),
  ];
}
