import type { Context } from '../../context.ts';
import type { RiskSignal } from '../engine.ts';
import { networkOf } from '../network.ts';

/**
 * `concurrent_networks` at a token issuance: the token presented to get this one — a refresh
 * token's family, an exchanged subject token — was presented by its holder from two networks within
 * `concurrent_window` seconds: one token in two places at once, a copy.
 *
 * Where a token is seen presented by its holder (kept in memory per node: ../memory.ts
 * TokenPresentations):
 * - where its holder got it: every issuance notes the new access token (`jti:<jti>`) with the
 *   request's network;
 * - at the token endpoint: a refresh token's family (`refresh:<family>`) at each refresh, a subject
 *   token at an exchange by the client it was issued to — the request's network;
 * - at introspection: a resource server may say where the token it introspects was presented from
 *   (the optional `client_address` parameter, RFC 7662 §2.1: src/endpoints/introspect), noted
 *   against the token's jti (`notePresentation`).
 * An exchange by another client (a resource server exchanging the token it received) is not the
 * holder's presentation: its own address is not compared, but the holder's presentations are.
 * The guard (src/guard) verifies tokens locally and reports nothing; a resource server that wants
 * this signal introspects with `client_address`.
 */
export const concurrentNetworks: RiskSignal = {
  name: 'concurrent_networks',
  moments: ['issuance'],
  evaluate(ctx, facts, settings) {
    if (!facts.presented) return undefined;
    const networks = new Set(ctx.risk.presentations.networks(facts.presented.token, ctx.clock.now() - settings.concurrentWindowSeconds * 1000));
    if (facts.presented.byHolder && facts.address !== undefined) networks.add(networkOf(facts.address));
    if (networks.size < 2) return undefined;
    return { detail: `the presented token was used from ${networks.size} networks within ${settings.concurrentWindowSeconds} s` };
  },
  observe(ctx, facts) {
    if (facts.address === undefined) return;
    const network = networkOf(facts.address);
    const now = ctx.clock.now();
    if (facts.presented?.byHolder) ctx.risk.presentations.note(facts.presented.token, network, now);
    if (facts.issued !== undefined) ctx.risk.presentations.note(facts.issued, network, now);
  },
};

/** A resource server says where the holder presented the token `jti` from (introspection). */
export function notePresentation(ctx: Pick<Context, 'risk' | 'clock'>, jti: string, address: string): void {
  ctx.risk.presentations.note(tokenKey(jti), networkOf(address), ctx.clock.now());
}

/** How a token is named in the presentations: an access token by its jti. */
export const tokenKey = (jti: string): string => `jti:${jti}`;
/** A refresh token by its family (every rotation of one refresh token is the same token, moved on). */
export const refreshKey = (familyId: string): string => `refresh:${familyId}`;
