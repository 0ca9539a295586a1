import { maxClientIdLength } from '../../clients/authentication/client-secret.ts';
import { throttleKeyForAddress } from '../../clients/authentication/throttle.ts';
import type { Context } from '../../context.ts';
import type { RiskSignal } from '../engine.ts';
import { clientPrincipal } from './history.ts';

/**
 * `recent_failures` at a token issuance: at least `failure_threshold` failed client
 * authentications within `failure_window` from the token request's own source address (as this
 * client or any other). Failures naming the client from elsewhere do not count: a client_id is
 * public and a failure is unauthenticated, so anyone could otherwise add the signal to every token
 * a genuine client gets, from wherever they are (review M3). Counted from the issuance's address,
 * the failures weigh only on the tokens of whoever shares that address — the attacker's own, once
 * a guess succeeds. How many of them named this client is said in the detail. An AuthZEN
 * evaluation has no source address to count by: the signal is not assessed there.
 *
 * Counted in memory on each node as client authentication fails (`noteClientAuthenticationFailure`,
 * src/clients/authentication/endpoint-authentication.ts); the failure throttle counts per client
 * and address and its store is its own (src/clients/authentication/throttle.ts). A person's failed
 * sign-ins are the login's signal (moment `login`).
 */
export const recentFailures: RiskSignal = {
  name: 'recent_failures',
  moments: ['issuance'],
  evaluate(ctx, facts, settings) {
    if (facts.address === undefined) return undefined;
    const since = ctx.clock.now() - settings.failureWindowSeconds * 1000;
    const fromAddress = ctx.risk.failures.count(addressKey(facts.address), since);
    if (fromAddress < settings.failureThreshold) return undefined;
    const client = clientPrincipal(facts);
    const asClient = client ? ctx.risk.failures.count(clientAtAddressKey(client.id, facts.address), since) : 0;
    return { detail: `failed client authentications in the last ${settings.failureWindowSeconds} s from this address: ${fromAddress}, ${asClient} naming this client` };
  },
};

/** Counts a failed client authentication (a 401 or a throttled 429), by its source address and by the client it claimed from there. */
export function noteClientAuthenticationFailure(ctx: Pick<Context, 'risk' | 'clock'>, clientId: string | undefined, address: string): void {
  const now = ctx.clock.now();
  ctx.risk.failures.record(addressKey(address), now);
  // A claimed client_id is unverified: a longer one than any client can have is not kept.
  if (clientId !== undefined && clientId.length <= maxClientIdLength) ctx.risk.failures.record(clientAtAddressKey(clientId, address), now);
}

const addressKey = (address: string) => `address:${throttleKeyForAddress(address)}`;
// JSON: a client_id may hold any character, a colon too.
const clientAtAddressKey = (id: string, address: string) => `client-at:${JSON.stringify([throttleKeyForAddress(address), id])}`;
