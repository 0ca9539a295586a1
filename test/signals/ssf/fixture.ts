/**
 * What the Shared Signals tests start from: the protocol fixture, two receivers (clients allowed
 * `ssf:manage` for `<issuer>/ssf`), a helper to call the stream API with a receiver's token, and
 * one to seal the audit log and run the transmitter's steps.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createSealer } from '../../../src/audit/lifecycle.ts';
import { resolveMasterKey } from '../../../src/keys/master-key.ts';
import { ssfAudience } from '../../../src/resource-servers/builtins.ts';
import { StreamStore } from '../../../src/signals/ssf/streams.ts';
import { pushDue, tailSealedLog, type TransmitterOptions } from '../../../src/signals/ssf/transmitter.ts';
import type { TestDialect } from '../../helpers/storage.ts';
import { protocolFixture, secretClient, type ProtocolFixture } from '../../endpoints/fixture.ts';

export interface SsfFixture extends ProtocolFixture {
  /** A token of `receiver` for the SSF API (default scope ssf:manage). */
  ssfToken(receiver?: string, scope?: string): Promise<string>;
  call(method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', path: string, options?: { token?: string; body?: unknown; receiver?: string }): Promise<LightMyRequestResponse>;
  /** Creates a stream of `receiver` and returns its configuration. */
  stream(body: Record<string, unknown>, receiver?: string): Promise<Record<string, unknown>>;
  /** Seals what is recorded. */
  seal(): Promise<void>;
  /** Seals what is recorded and runs the tail (and push) once. */
  transmit(options?: TransmitterOptions & { push?: boolean }): Promise<void>;
  streams: StreamStore;
}

export async function ssfFixture(t: Pick<TestContext, 'after'>, options: { dialect?: TestDialect; env?: NodeJS.ProcessEnv } = {}): Promise<SsfFixture> {
  const f = await protocolFixture(t, { ...options, risk: 'off' });
  await f.apply({ clients: [secretClient('receiver-a', 'ssf:manage'), secretClient('receiver-b', 'ssf:manage'), secretClient('no-ssf', 'order:create'), secretClient('desk-2', 'order:create')] });
  const tokens = new Map<string, string>();
  const sealer = createSealer(f.ctx, resolveMasterKey(f.ctx.config).key);
  const streams = new StreamStore(f.ctx.storage.db, f.ctx.identity.factorKeys.master);
  const fixture: SsfFixture = {
    ...f,
    streams,
    async ssfToken(receiver = 'receiver-a', scope = 'ssf:manage') {
      return f.accessToken(receiver, { resource: ssfAudience(f.issuer), scope });
    },
    async call(method, path, options = {}) {
      const receiver = options.receiver ?? 'receiver-a';
      let token = options.token;
      if (token === undefined) {
        token = tokens.get(receiver) ?? (await fixture.ssfToken(receiver));
        tokens.set(receiver, token);
      }
      return f.inject({
        method,
        url: path,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(options.body !== undefined ? { payload: JSON.stringify(options.body) } : {}),
      });
    },
    async stream(body, receiver) {
      const response = await fixture.call('POST', '/ssf/streams', { body, ...(receiver ? { receiver } : {}) });
      assert.equal(response.statusCode, 201, response.body);
      return response.json() as Record<string, unknown>;
    },
    async seal() {
      await sealer.sealAll();
    },
    async transmit(options = {}) {
      await sealer.sealAll();
      for (let i = 0; i < 50; i++) {
        const tailed = await tailSealedLog(f.ctx, streams, options);
        if (!tailed?.more) break;
      }
      if (options.push) await pushDue(f.ctx, streams, options);
    },
  };
  // The first pass finds no stream and moves the cursor to the sealed horizon: tests start from the present.
  await fixture.transmit();
  return fixture;
}

export const pollStream = { delivery: { method: 'urn:ietf:rfc:8936' }, events_requested: ['https://schemas.openid.net/secevent/caep/event-type/session-revoked'] };
