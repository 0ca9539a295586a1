import { maxClientIdLength } from '../../clients/authentication/client-secret.ts';
import { throttleKeyForAddress } from '../../clients/authentication/throttle.ts';
import type { Context } from '../../context.ts';
import type { RiskSignal } from '../engine.ts';
import { clientPrincipal } from './history.ts';

/**
 * `recent_failures` at a token issuance or an AuthZEN evaluation of a client: at least
 * `failure_threshold` failed client authentications within `failure_window` — naming this client
 * (from anywhere: someone is trying to be it), or from the token request's source address (the
 * caller itself failed, as whatever client). Counted in memory on each node as client
 * authentication fails (`noteClientAuthenticationFailure`, src/clients/authentication/
 * endpoint-authentication.ts): the failure throttle counts per client and address, not per client,
 * and its store is its own (src/clients/authentication/throttle.ts). A person's failed sign-ins
 * are the login's signal (moment `login`).
 */
export const recentFailures: RiskSignal = {
  name: 'recent_failures',
  moments: ['issuance', 'evaluation'],
  evaluate(ctx, facts, settings) {
    const since = ctx.clock.now() - settings.failureWindowSeconds * 1000;
    const client = clientPrincipal(facts);
    const ofClient = client ? ctx.risk.failures.count(clientKey(client.id), since) : 0;
    const fromAddress = facts.address !== undefined ? ctx.risk.failures.count(addressKey(facts.address), since) : 0;
    if (Math.max(ofClient, fromAddress) < settings.failureThreshold) return undefined;
    const parts = [...(ofClient >= settings.failureThreshold ? [`${ofClient} naming this client`] : []), ...(fromAddress >= settings.failureThreshold ? [`${fromAddress} from this address`] : [])];
    return { detail: `failed client authentications in the last ${settings.failureWindowSeconds} s: ${parts.join(', ')}` };
  },
};

/** Counts a failed client authentication (a 401 or a throttled 429), by the client it claimed and its source address. */
export function noteClientAuthenticationFailure(ctx: Pick<Context, 'risk' | 'clock'>, clientId: string | undefined, address: string): void {
  const now = ctx.clock.now();
  ctx.risk.failures.record(addressKey(address), now);
  // A claimed client_id is unverified: a longer one than any client can have is not kept.
  if (clientId !== undefined && clientId.length <= maxClientIdLength) ctx.risk.failures.record(clientKey(clientId), now);
}

const clientKey = (id: string) => `client:${id}`;
const addressKey = (address: string) => `address:${throttleKeyForAddress(address)}`;
