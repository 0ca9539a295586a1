import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { parseDocument } from '../../src/apply/parse.ts';
import type { Context } from '../../src/context.ts';
import type { Evaluation } from '../../src/policy/engine.ts';
import { readPolicySources } from '../../src/policy/testing.ts';
import { formatProblem } from '../../src/validation.ts';
import { metricsRegistry } from '../../src/metrics.ts';
import { testContext, type TestContextOptions, type TestServerContext } from '../helpers/storage.ts';

export const examplePoliciesDir = fileURLToPath(new URL('../../examples/policies', import.meta.url));
export const exampleEntitiesFile = fileURLToPath(new URL('../../examples/entities.yaml', import.meta.url));

/**
 * The example policy files as one policy set text — without step-up.cedar unless `stepUp`,
 * without approval.cedar unless `approval`, without four-eyes.cedar unless `fourEyes`: the tests
 * and benchmarks of the decision point's mechanics decide people's orders as before (a large
 * notional or a first order in a class would otherwise ask them to step up, to approve the order
 * with a passkey or to have it approved by a second person, and the first-use history would be
 * read for every order); the step-up, approval and four-eyes tests ask for them.
 */
export function examplePolicyText(options: { stepUp?: boolean; approval?: boolean; fourEyes?: boolean } = {}): string {
  return readPolicySources(examplePoliciesDir)
    .filter((s) => options.stepUp || !s.name.endsWith('step-up.cedar'))
    .filter((s) => options.approval || !s.name.endsWith('approval.cedar'))
    .filter((s) => options.fourEyes || !s.name.endsWith('four-eyes.cedar'))
    .map((s) => s.text)
    .join('\n');
}

/**
 * A policy set that permits everything except a person's order above 1 million, which needs their
 * passkey approval of exactly the order (`@approval`, what-you-see-is-what-you-sign).
 */
export const approvalPolicySet = `
@id("all") permit (principal, action, resource);

@id("approve-large-orders")
@approval("passkey")
forbid (principal is User, action == Action::"order:create", resource is Instrument)
when { context has notional && context.notional > 1000000 }
unless { context has approved && context.approved };
`;

/** The example entity model (examples/entities.yaml) as an apply document. */
export function exampleEntities(): Record<string, unknown> {
  const parsed = parseDocument(readFileSync(exampleEntitiesFile, 'utf8'), 'entities.yaml');
  assert.deepEqual(parsed.problems, []);
  return parsed.value as Record<string, unknown>;
}

export const ordersApi = 'https://orders.example.com/api';

/** An fx order entry of `authorization_details` (RFC 9396) buying EURUSD up to `amount` USD on `account`. */
export function fxOrder(amount: string, account: string) {
  return { type: 'order', instrument: { class: 'fx', symbol: 'EURUSD' }, side: 'buy', max_notional: { amount, currency: 'USD' }, venue: 'XLON', account };
}

/** People, clients and a resource server that match the example entities. */
export const peopleAndClients = {
  resource_servers: [{ identifier: ordersApi, scopes: ['order:create', 'order:cancel', 'order:amend', 'rfq:send', 'position:view', 'report:export'] }],
  clients: [
    { client_id: 'risk-engine', kind: 'service', owner_lei: '5493001KJTIIGC8Y1R12', grant_types: ['client_credentials'], scope: 'position:view' },
    { client_id: 'algo-fx-1', kind: 'agent', owner_lei: '5493001KJTIIGC8Y1R12', grant_types: ['client_credentials'], scope: 'order:create' },
    { client_id: 'order-gateway', kind: 'service', grant_types: ['client_credentials'], scope: 'access:evaluate' },
    { client_id: 'no-pdp-access', kind: 'service', grant_types: ['client_credentials'], scope: 'order:create' },
  ],
  users: [
    { username: 'alice', desks: ['fx-spot', 'rates'], attributes: { kyc_status: 'verified', suitability: ['fx', 'rates', 'rates_derivatives'] } },
    { username: 'bob', desks: ['crypto'], attributes: { kyc_status: 'pending', suitability: ['crypto'] } },
    { username: 'carol', desks: ['crypto'], attributes: { kyc_status: 'verified', suitability: ['crypto'] } },
  ],
};

/** Applies a document, failing the test on problems; returns generated secrets. */
export async function applyDocument(ctx: Context, document: Record<string, unknown>, actor = 'test'): Promise<Record<string, string>> {
  const { plan, problems } = await planApply(ctx, document);
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  return (await executeApply(ctx, plan, { actor, via: 'cli' })).secrets;
}

/** A user's id (the `sub`), by username. */
export async function userId(ctx: Context, username: string): Promise<string> {
  const row = await ctx.storage.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirstOrThrow();
  return row.id;
}

/**
 * A context with the example entity model, people and clients, and the example policies stored
 * as version `v1` and activated (author alice.author, approver bob.approver).
 */
export async function policyContext(t: Pick<TestContext, 'after'>, options: TestContextOptions = {}): Promise<TestServerContext & { secrets: Record<string, string> }> {
  const server = await testContext({ t, ...options });
  const secrets = await applyDocument(server.ctx, { ...exampleEntities(), ...peopleAndClients });
  await applyDocument(server.ctx, {
    policies: [{ version: 'v1', text: examplePolicyText(), change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  return { ...server, secrets };
}

/** The policy engine's evaluations so far, by how each was answered (src/policy/engine.ts `clearance_policy_engine_answers_total`). */
export async function answerSources(): Promise<Record<string, number>> {
  const metric = await metricsRegistry.getSingleMetric('clearance_policy_engine_answers_total')!.get();
  return Object.fromEntries(metric.values.map((v) => [v.labels.source, v.value]));
}

/**
 * A decision to compare: allow, reasons and each policy's error exactly; a request Cedar refuses
 * as one "refused" (with several entities wrong, which one Cedar names first varies from call to
 * call, and the request it quotes is the one it was sent, sliced or whole).
 */
export function outcome(evaluation: Evaluation) {
  return { ...evaluation, errors: [...new Set(evaluation.errors.map((e) => (e.startsWith('policy "') ? e : 'refused')))] };
}
