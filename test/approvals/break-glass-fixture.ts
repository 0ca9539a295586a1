/**
 * Shared setup of the break-glass tests: the protocol fixture (resource servers and clients over
 * HTTP), people (a requester, three custodians, someone without a role, a compliance officer), two
 * emergency accounts, person tokens for the admin API, and the two approvals an activation needs.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { requestActivation } from '../../src/approvals/break-glass/activations.ts';
import { breakGlassKind } from '../../src/approvals/kinds/break-glass.ts';
import { decideApprovalRequest, type ApproverProof, type DecisionOutcome } from '../../src/approvals/requests.ts';
import type { Approver } from '../../src/approvals/independence.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import type { TestDialect } from '../helpers/storage.ts';

const password = 'a-long-enough-password-1';
const person = (username: string, roles: string[] = []) => ({ username, password, name: username, roles });

export interface BreakGlassFixture extends ProtocolFixture {
  userId(username: string): Promise<string>;
  approver(username: string): Promise<Approver>;
  /** A fresh admin-API token proof at this level (default phishing-resistant). */
  proof(level?: string, authTimeSeconds?: number): ApproverProof;
  decide(requestId: string, username: string, options?: { proof?: ApproverProof; decision?: 'approve' | 'deny'; reason?: string }): Promise<DecisionOutcome>;
  /** Requested by `eng`, approved by cust-1 and cust-2: the activation's id. */
  activate(account: string): Promise<string>;
  /** A person's admin-API token (under a consent grant of theirs), at this level. */
  personToken(username: string, scope: string, level?: string, extra?: { act?: { sub: string } }): Promise<string>;
  /** A client_credentials token of an emergency account (its secret), or the refusal. */
  emergencyToken(account: string, form?: Record<string, string>): ReturnType<ProtocolFixture['token']>;
}

export async function breakGlassFixture(t: Pick<TestContext, 'after'>, options: { dialect?: TestDialect } = {}): Promise<BreakGlassFixture> {
  const f = await protocolFixture(t, options.dialect ? { dialect: options.dialect } : {});
  const admin = adminAudience(f.issuer);
  await f.apply({
    users: [person('eng'), person('cust-1', ['break-glass-custodian']), person('cust-2', ['break-glass-custodian']), person('cust-3', ['break-glass-custodian']), person('mallory'), person('comp', ['compliance'])],
    clients: [
      { client_id: 'bg-orders', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:cancel' },
      { client_id: 'bg-admin', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:read' },
    ],
    break_glass: [
      { name: 'bg-orders', scopes: ['order:cancel'], audience: ordersApi, activation_seconds: 600 },
      { name: 'bg-admin', scopes: ['admin:read'], audience: admin, activation_seconds: 300, custodians: ['cust-1', 'cust-2'] },
    ],
  });
  const userId = async (username: string) => (await findUserByUsername(f.ctx, username))!.id;
  const approver = async (username: string): Promise<Approver> => {
    const user = (await findUserByUsername(f.ctx, username))!;
    return { userId: user.id, username: user.username, roles: user.roles, desks: user.desks ?? [] };
  };
  const proof = (level: string = acr.phishingResistant, authTimeSeconds?: number): ApproverProof => ({
    method: 'token',
    acr: level,
    amr: ['hwk', 'user'],
    authTime: authTimeSeconds ?? Math.floor(f.clock.now() / 1000),
    jti: randomUUID(),
    clientId: 'approvals-app',
  });
  const fixture: BreakGlassFixture = {
    ...f,
    userId,
    approver,
    proof,
    async decide(requestId, username, o = {}) {
      return decideApprovalRequest(f.ctx, breakGlassKind, {
        requestId,
        approver: await approver(username),
        proof: o.proof ?? proof(),
        decision: o.decision ?? 'approve',
        ...(o.reason !== undefined ? { reason: o.reason } : {}),
      });
    },
    async activate(account) {
      const opened = await requestActivation(f.ctx, { account, requester: await userId('eng'), reason: 'database failover at 02:10' });
      assert.ok(opened.ok, JSON.stringify(opened));
      assert.ok((await fixture.decide(opened.request.id, 'cust-1')).ok);
      const second = await fixture.decide(opened.request.id, 'cust-2');
      assert.ok(second.ok && second.settled === 'approved', JSON.stringify(second));
      return opened.request.id;
    },
    async personToken(username, scope, level = acr.phishingResistant, extra = {}) {
      const sub = await userId(username);
      const now = f.clock.now();
      const existing = await f.ctx.storage.db.selectFrom('grants').select('id').where('user_id', '=', sub).where('client_id', '=', 'trading-ui').executeTakeFirst();
      const grantId = existing?.id ?? randomUUID();
      if (!existing) await f.ctx.storage.db
        .insertInto('grants')
        .values({ id: grantId, user_id: sub, client_id: 'trading-ui', resources: JSON.stringify({ [admin]: scope.split(' ') }), oidc_scopes: '[]', authorization_details: '[]', created_at: now, updated_at: now, revoked_at: null, revoked_by: null, revoke_reason: null })
        .execute();
      const iat = Math.floor(now / 1000);
      return mintAccessToken(f.ctx.keys, { iss: f.issuer, aud: admin, iat, exp: iat + 300, jti: newJti(), client_id: 'trading-ui', scope, sub, grant_id: grantId, acr: level, auth_time: iat, amr: ['hwk', 'user'], ...extra });
    },
    emergencyToken(account, form = {}) {
      const resource = account === 'bg-admin' ? admin : ordersApi;
      return f.token({ auth: f.basic(account), form: { grant_type: 'client_credentials', resource, ...form } });
    },
  };
  return fixture;
}
