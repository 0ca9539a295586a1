import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import type { Context } from '../../src/context.ts';
import { destinationKey, type TransferDestination } from '../../src/transfers/detail.ts';
import { testContext, type TestContextOptions, type TestServerContext } from '../helpers/storage.ts';
import { applyDocument } from '../policy/fixture.ts';

/**
 * What the tests of transfer enforcement (src/transfers/enforce.ts) start from: a broker with a
 * treasury desk and a crypto desk, a custodian, a custody API, a treasury service, the controls,
 * and destinations put straight into the address book in the state a test needs.
 */

export const brokerLei = '5493001KJTIIGC8Y1R12';
export const custodianLei = '969500CUBANEXAMPLE21';
export const custodyApi = 'https://custody.example.com/api';
/** An IBAN and a BIC that ibantools accepts (the ISO 13616 example). */
export const iban = 'DE89370400440532013000';
export const ether = 'eip155:1/slip44:60';
export const etherAddress = 'eip155:1:0xab5801a7d398351b8be11c439e05c5b3259aec9b';

/** The broker with a treasury desk and three accounts, a crypto desk, and a custodian with its own account. */
export const transferEntities = {
  regions: [{ id: 'uk' }, { id: 'us' }],
  instrument_classes: [{ id: 'fx' }, { id: 'crypto' }],
  legal_entities: [
    {
      lei: brokerLei,
      name: 'Example Broker Ltd',
      jurisdiction: 'GB',
      home_region: 'uk',
      roles: ['broker'],
      desks: [
        { id: 'treasury', product_classes: ['fx'] },
        { id: 'crypto', product_classes: ['crypto'] },
      ],
      accounts: [
        { id: 'TRE-001', desk: 'treasury', region: 'uk' },
        { id: 'TRE-002', desk: 'treasury', region: 'uk' },
        { id: 'CRY-001', desk: 'crypto', region: 'uk' },
      ],
    },
    { lei: custodianLei, name: 'Example Custodian SA', jurisdiction: 'CU', home_region: 'us', roles: ['custodian'], accounts: [{ id: 'CU-CUST-001', region: 'us' }] },
  ],
};

/** The transfer actions are scopes of the custody API too (the Cedar schema knows them as actions). */
export const transferScopes = 'transfer:withdrawal transfer:internal transfer:collateral';

export const transferDocument = {
  ...transferEntities,
  resource_servers: [{ identifier: custodyApi, scopes: ['transfer:withdrawal', 'transfer:internal', 'transfer:collateral', 'position:view'] }],
  clients: [{ client_id: 'treasury-app', kind: 'service', owner_lei: brokerLei, grant_types: ['client_credentials'], scope: transferScopes }],
  users: [{ username: 'tina', desks: ['treasury', 'crypto'] }],
};

/** Thresholds and limits used by the tests: USD threshold 1M and daily limit 2.5M for the broker (none for TRE-002); no first-use hold. */
export const controls = {
  defaults: { first_use_hold: 0 },
  entities: {
    [brokerLei]: {
      assets: { USD: { approval_threshold: '1000000', daily_limit: '2500000' }, [ether]: { approval_threshold: '50', daily_limit: '100' } },
      accounts: { 'TRE-002': { USD: { daily_limit: 'off' } } },
    },
  },
};

/** A context with the transfer entity model, the custody API, a treasury client and the controls. */
export async function transferContext(t: Pick<TestContext, 'after'>, options: TestContextOptions & { transferControls?: unknown } = {}): Promise<TestServerContext & { secrets: Record<string, string> }> {
  const server = await testContext({ t, risk: 'off', ...options });
  const secrets = await applyDocument(server.ctx, transferDocument);
  await applyDocument(server.ctx, { transfer_controls: options.transferControls ?? controls });
  return { ...server, secrets };
}

/** A `transfer` authorization_details entry: a USD withdrawal from TRE-001 to the IBAN, unless overridden. */
export function transfer(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'transfer', transfer_type: 'withdrawal', asset: 'USD', amount: '2500.00', source_account: 'TRE-001', destination: { kind: 'iban', iban, bic: 'COBADEFFXXX' }, ...overrides };
}

export type BookState = 'usable' | 'cooling_down' | 'pending' | 'held_for_review' | 'removed';

/**
 * Puts a destination into the address book in a given state, directly in its tables (the change
 * control that gets it there is the address book's own, tested with it and end to end in
 * withdrawal-flow.test.ts). `usableFrom` for usable and cooling down; default: an hour ago / an hour ahead.
 */
export async function seedDestination(ctx: Context, options: { lei?: string; account?: string; destination: TransferDestination; state: BookState; usableFrom?: number }): Promise<string> {
  const now = ctx.clock.now();
  const id = `dst_${randomBytes(16).toString('base64url')}`;
  const approved = options.state === 'usable' || options.state === 'cooling_down';
  const usableFrom = options.usableFrom ?? (options.state === 'usable' ? now - 3600_000 : now + 3600_000);
  await ctx.storage.db
    .insertInto('transfer_destinations')
    .values({ id, lei: options.lei ?? brokerLei, account: options.account ?? 'TRE-001', destination_key: destinationKey(options.destination), kind: options.destination.kind, created_at: now - 2 * 86_400_000 })
    .execute();
  await ctx.storage.db
    .insertInto('transfer_destination_versions')
    .values({
      destination_id: id,
      version: 1,
      destination: JSON.stringify(options.destination),
      label: null,
      status: approved ? 'approved' : options.state,
      requested_by: 'someone',
      requester_type: 'user',
      requested_at: now - 2 * 86_400_000,
      via: 'admin-api',
      approval_request: null,
      request_expires_at: options.state === 'pending' || options.state === 'held_for_review' ? now + 86_400_000 : null,
      review_reason: options.state === 'held_for_review' ? 'new_device' : null,
      approved_by: approved ? JSON.stringify(['approver']) : null,
      approved_at: approved ? usableFrom - 86_400_000 : null,
      usable_from: approved ? usableFrom : null,
      cooldown_ms: approved ? 86_400_000 : null,
      decided_at: options.state === 'removed' ? now - 60_000 : null,
      removed_by: options.state === 'removed' ? 'someone' : null,
    })
    .execute();
  return id;
}

/** The audit events of some types, in order (their `details` are never encrypted: no personal fields). */
export async function events(ctx: Context, ...types: string[]): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'in', types).orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

export function only<T>(list: readonly T[], what = 'item'): T {
  assert.equal(list.length, 1, `exactly one ${what}: ${JSON.stringify(list)}`);
  return list[0]!;
}
