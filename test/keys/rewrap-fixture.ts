/**
 * A database with a value in every sealed column (src/keys/sealed-columns.ts), each sealed through
 * its owner's own code, and a check that opens each through its owner's code again: run with a
 * context holding the new master key alone after a rewrap, it proves every value was re-sealed
 * under the binding its owner uses. Nodes are further contexts on the same database, each with its
 * own storage handle (and so its own caches), as further processes would be.
 */
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes, randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { SubjectKeys } from '../../src/audit/subject-keys.ts';
import { insertCibaRequest, notificationKey, openAuthReqId, openNotificationToken, sealAuthReqId, sealNotificationToken } from '../../src/ciba/store.ts';
import { ManualClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { executeIdentityProviders, findProvider, providerSecret } from '../../src/federation/upstream/providers.ts';
import { serviceProviderKey } from '../../src/federation/upstream/saml.ts';
import { beginTotpEnrolment, openTotpSecret } from '../../src/identity/factors/totp.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { KeyStore } from '../../src/keys/keystore.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { sealedColumns } from '../../src/keys/sealed-columns.ts';
import { createLogger } from '../../src/log.ts';
import { SoftwareCustody } from '../../src/pki/custody/software.ts';
import { findKycProvider, providerHmacKey } from '../../src/risk/kyc/providers.ts';
import { openContext } from '../../src/server.ts';
import { authorizationOf, StreamStore } from '../../src/signals/ssf/streams.ts';
import { hmacKey, listWebhooks } from '../../src/signals/webhooks.ts';
import { secretKeyBytes } from '../../src/signals/webhook-secret.ts';
import { formatProblem } from '../../src/validation.ts';
import { enrolTotp } from '../identity/factors/fixture.ts';
import { people } from '../identity/fixture.ts';
import { resourceServers, secretClient } from '../endpoints/fixture.ts';
import { testContext, type TestDialect } from '../helpers/storage.ts';

export const oldKey = randomBytes(32).toString('hex');
export const newKey = randomBytes(32).toString('hex');

export interface RewrapFixture {
  /** The first node, started with the old key alone. */
  ctx: Context;
  clock: ManualClock;
  dataDir: string;
  /** Client secrets apply generated. */
  secrets: Record<string, string>;
  /** Another node on the same database (its own storage handle), with this master key configuration; closed after the test. */
  node(env: NodeJS.ProcessEnv): Promise<Context>;
  /** The master key Buffer a context's components were handed (its keyring is attached to it). */
  masterOf(ctx: Context): Buffer;
}

export async function rewrapFixture(t: Pick<TestContext, 'after'>, dialect: TestDialect): Promise<RewrapFixture> {
  const nodes: Context[] = [];
  // Registered before testContext's cleanup, so it runs first (after hooks run in order): the
  // nodes' write queues are drained while the database is still open.
  t.after(async () => {
    for (const node of nodes) {
      await node.risk.activity.close();
      await (node.audit as { close?: () => Promise<void> }).close?.();
    }
  });
  const { ctx, clock, dataDir, database } = await testContext({ t, dialect, env: { CLEARANCE_MASTER_KEY: oldKey }, risk: 'off' });
  const secrets: Record<string, string> = {};
  const { plan, problems } = await planApply(ctx, {
    resource_servers: resourceServers,
    clients: [secretClient('broker-1', 'order:create')],
    users: people,
  });
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  Object.assign(secrets, (await executeApply(ctx, plan, { actor: 'test', via: 'cli' })).secrets);
  return {
    ctx,
    clock,
    dataDir,
    secrets,
    async node(env) {
      const node = await openContext(loadConfig({ CLEARANCE_DATA_DIR: dataDir, ...env }), { clock, log: createLogger('silent'), storage: database.connect() });
      nodes.push(node);
      return node;
    },
    masterOf: (node) => resolveMasterKey(node.config).key,
  };
}

/** What `sealEverything` sealed, to check against. */
export interface SealedValues {
  signingKids: string[];
  auditKeyIds: string[];
  custodyRef: string;
  subjectKeys: Map<string, Buffer>;
  totp: { factorId: string; secret: string };
  pendingTotpId: string;
  webhookSecret: string;
  kycSecret: string;
  providerSecret: string;
  samlPrivateKey: string;
  stream: { clientId: string; streamId: string; authorization: string };
  ciba: { idHash: string; requestId: string; token: string; authReqId: string }[];
}

/** Seals a value in every sealed column through its owner's code (and a few as a database older than key ids holds them). */
export async function sealEverything(f: RewrapFixture, ctx: Context = f.ctx): Promise<SealedValues> {
  const master = f.masterOf(ctx);
  const db = ctx.storage.db;
  // signing_keys: the first one exists; a second, rotated in.
  await ctx.keys.rotate('ES256', 600);
  const signingKids = (await ctx.keys.list()).map((k) => k.kid);
  // audit_keys: the first and a rotated one.
  const auditKeys = new AuditKeys(db, master, ctx.clock);
  const first = await auditKeys.signingKey(auditOrigin(ctx.config.issuer));
  const rotated = await auditKeys.rotate({ expected: first.keyId });
  // custody_keys
  const custodyRef = (await new SoftwareCustody(db, master, ctx.clock).generate(`rewrap-ca-${randomUUID()}`, 'EC-P256')).ref;
  // audit_subject_keys
  const resolved = await new SubjectKeys(db, master, ctx.clock).resolve(['subject-a', 'subject-b']);
  const subjectKeys = new Map([...resolved.keys].map(([subject, key]) => [subject, Buffer.from(key.key)]));
  // totp_factors: alice's confirmed authenticator; bob's pending enrolment
  const enrolled = await enrolTotp({ ctx, clock: f.clock }, 'alice');
  const bob = (await findUserByUsername(ctx, 'bob'))!;
  const pending = await beginTotpEnrolment(ctx, bob.id, 'session-of-bob');
  assert.ok(pending.ok);
  // alert_webhooks and kyc_providers, through apply
  const webhookSecret = `whsec_${randomBytes(32).toString('base64')}`;
  const kycSecret = randomBytes(24).toString('hex');
  const { plan, problems } = await planApply(ctx, {
    alerts: { webhooks: [{ id: 'siem', url: 'https://siem.example/hook', types: ['*'], signing: 'hmac', secret: webhookSecret }] },
    kyc: { providers: [{ id: 'idv-example', signing: 'hmac', secret: kycSecret }] },
  });
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  await executeApply(ctx, plan, { actor: 'test', via: 'cli' });
  // identity_providers: a client secret, and the private JWK of a private_key_jwt provider
  const clientSecret = randomBytes(20).toString('hex');
  const provider = (id: string, method: string) => ({ id, kind: 'oidc', issuer: `https://${id}.example`, token_endpoint_auth_method: method, enabled: true, domains: [], desks: [] }) as never;
  await db.transaction().execute((trx) =>
    executeIdentityProviders(trx, ctx.clock.now(), master, [{ provider: provider('fund-a', 'client_secret_basic'), clientSecret }, { provider: provider('fund-b', 'private_key_jwt') }], [], 'test'),
  );
  // saml_service_provider
  const samlPrivateKey = (await serviceProviderKey(ctx)).privateKey;
  // ssf_streams
  const authorization = `Bearer ${randomBytes(16).toString('hex')}`;
  const stream = await new StreamStore(db, master).create('broker-1', { method: 'push', endpointUrl: 'https://receiver.example/ssf', eventsRequested: [], authorization }, { defaultSubjects: 'ALL', now: ctx.clock.now() });
  // ciba_requests: one sealed now, one as sealed before the master key sealed them (v1, under the purpose key)
  const ciba = [cibaValues(), cibaValues()];
  await db.transaction().execute(async (trx) => {
    for (const [i, c] of ciba.entries()) {
      const legacy = i === 1;
      await insertCibaRequest(trx, {
        idHash: c.idHash,
        requestId: c.requestId,
        clientId: 'broker-1',
        mode: 'ping',
        notificationEndpoint: 'https://broker.example/cb',
        sealedNotificationToken: legacy ? sealV1(notificationKey(master), c.token, `ciba:${c.requestId}`) : sealNotificationToken(master, c.token, c.requestId),
        sealedAuthReqId: legacy ? sealV1(notificationKey(master), c.authReqId, `ciba-auth-req-id:${c.requestId}`) : sealAuthReqId(master, c.authReqId, c.requestId),
        interval: 5,
        payload: { scope: [], oidcScopes: [], authorizationDetails: [], acrValues: [] } as never,
        createdAt: ctx.clock.now(),
        expiresAt: ctx.clock.now() + 600_000,
      });
    }
  });
  return {
    signingKids,
    auditKeyIds: [first.keyId, rotated!.current.keyId],
    custodyRef,
    subjectKeys,
    totp: { factorId: enrolled.factorId, secret: enrolled.secret },
    pendingTotpId: pending.id,
    webhookSecret,
    kycSecret,
    providerSecret: clientSecret,
    samlPrivateKey,
    stream: { clientId: 'broker-1', streamId: stream.streamId, authorization },
    ciba,
  };
}

function cibaValues() {
  return { idHash: randomBytes(32).toString('base64url'), requestId: randomUUID(), token: randomBytes(16).toString('hex'), authReqId: randomBytes(32).toString('base64url') };
}

/** What sealed-box.ts wrote before key ids (v1): values in a database older than master key rotation. */
export function sealV1(key: Buffer, plaintext: string, associatedData: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(associatedData, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(Buffer.from(plaintext, 'utf8')), cipher.final()]);
  return ['v1', iv, cipher.getAuthTag(), ciphertext].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
}

/** Opens every sealed value through its owner's code, with `ctx`'s master key(s), and compares it with what was sealed. */
export async function openEverything(f: RewrapFixture, ctx: Context, sealed: SealedValues): Promise<void> {
  const master = f.masterOf(ctx);
  const db = ctx.storage.db;
  assert.deepEqual((await new KeyStore(db, master, ctx.clock).list()).map((k) => k.kid), sealed.signingKids);
  const auditKeys = new AuditKeys(db, master, ctx.clock);
  assert.deepEqual(await auditKeys.checkStoredKeys(), [], 'every audit key opens and matches its public key');
  for (const keyId of sealed.auditKeyIds) await auditKeys.signingKeyFor(keyId);
  await new SoftwareCustody(db, master, ctx.clock).load(sealed.custodyRef);
  const subjects = await new SubjectKeys(db, master, ctx.clock).resolve(sealed.subjectKeys.keys());
  for (const [subject, key] of sealed.subjectKeys) assert.ok(subjects.keys.get(subject)!.key.equals(key), `the subject key of ${subject}`);
  const totp = await db.selectFrom('totp_factors').selectAll().where('id', '=', sealed.totp.factorId).executeTakeFirstOrThrow();
  assert.equal(openTotpSecret(ctx.identity.factorKeys, totp), sealed.totp.secret);
  assert.ok(hmacKey(master, (await listWebhooks(db)).find((w) => w.id === 'siem')!).equals(secretKeyBytes(sealed.webhookSecret)));
  assert.ok(providerHmacKey(master, (await findKycProvider(db, 'idv-example'))!).equals(secretKeyBytes(sealed.kycSecret)));
  assert.equal(providerSecret(master, (await findProvider(db, 'fund-a')) as never), sealed.providerSecret);
  assert.match(providerSecret(master, (await findProvider(db, 'fund-b')) as never), /^\{/, 'the private JWK of private_key_jwt');
  assert.equal((await serviceProviderKey(ctx)).privateKey, sealed.samlPrivateKey);
  assert.equal(authorizationOf(master, (await new StreamStore(db, master).get(sealed.stream.clientId, sealed.stream.streamId))!), sealed.stream.authorization);
  for (const c of sealed.ciba) {
    const row = await db.selectFrom('ciba_requests').selectAll().where('id_hash', '=', c.idHash).executeTakeFirstOrThrow();
    const request = { requestId: row.request_id, sealedNotificationToken: row.notification_token!, sealedAuthReqId: row.sealed_auth_req_id! };
    assert.equal(openNotificationToken(master, request), c.token);
    assert.equal(openAuthReqId(master, request), c.authReqId);
  }
}

/** Every sealed value in the database, by `<table>.<column>`, with the master key id its box names (`v1` for none). */
export async function sealedValues(ctx: Context): Promise<{ column: string; keyId: string }[]> {
  const db = ctx.storage.db as unknown as import('kysely').Kysely<Record<string, Record<string, unknown>>>;
  const values: { column: string; keyId: string }[] = [];
  for (const column of sealedColumns) {
    const rows = await db.selectFrom(column.table).select(column.column).where(column.column, 'is not', null).execute();
    for (const row of rows) {
      const value = String(row[column.column]);
      if (value === '') continue;
      values.push({ column: `${column.table}.${column.column}`, keyId: value.startsWith('v2.') ? value.split('.')[1]! : 'v1' });
    }
  }
  return values;
}
