import { browserDigest } from '../../authorization/interactions.ts';
import { authenticationKey } from '../../keys/master-key.ts';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Context } from '../../context.ts';
import { safeEqual } from '../../jose/dpop.ts';
import { strictest, type UpstreamAsk } from './freshness.ts';

/**
 * Sign-ins sent to an upstream identity provider and not yet back (OIDC Core §3.1.2.1 `state` and
 * `nonce`, RFC 7636 PKCE). The `state` is 256 random bits; the database keeps only its SHA-256,
 * with the interaction, the provider and the browser it belongs to. The nonce and the PKCE
 * verifier are HMACs of the state under a key derived from the master key: nothing secret is
 * stored, and a copy of the table cannot finish anyone's sign-in. Each record is used at most once
 * (a conditional update), and lives 10 minutes.
 */

/** How long the person has at the upstream, in milliseconds. */
export const upstreamLoginTtlMs = 10 * 60_000;

export interface UpstreamLoginSecrets {
  state: string;
  nonce: string;
  codeVerifier: string;
}

/** Authenticates: it rotates with the master key (src/keys/master-key.ts authenticationKey); a sign-in under way across a rewrap's begin starts again. */
function derivationKey(masterKey: Buffer): Buffer {
  return authenticationKey(masterKey, 'clearance upstream-login v1');
}

/** The nonce and PKCE verifier a state stands for (43 base64url characters each: RFC 7636 §4.1 allows 43–128). */
export function secretsOf(masterKey: Buffer, state: string): UpstreamLoginSecrets {
  const key = derivationKey(masterKey);
  const derive = (label: string) => createHmac('sha256', key).update(`${label}\n${state}`).digest('base64url');
  return { state, nonce: derive('nonce'), codeVerifier: derive('pkce') };
}

function stateHash(state: string): string {
  return createHash('sha256').update(state, 'utf8').digest('base64url');
}

type LoginContext = Pick<Context, 'storage' | 'clock' | 'identity'>;

/**
 * Opens a sign-in at an upstream for this interaction and browser: its state, nonce and verifier.
 * `result`: what is already known (a verified identity waiting for the person's own sign-in,
 * src/federation/upstream/local-link.ts), taken with the state by the same single use. `asked`:
 * the freshness the upstream is asked for (./freshness.ts), kept so its answer is checked against it.
 */
export async function openUpstreamLogin(ctx: LoginContext, login: { interactionId: string; providerId: string; browserId: string; result?: string; asked?: UpstreamAsk }): Promise<UpstreamLoginSecrets> {
  const state = randomBytes(32).toString('base64url');
  const now = ctx.clock.now();
  await ctx.storage.db
    .insertInto('upstream_logins')
    .values({
      state_hash: stateHash(state),
      interaction_id: login.interactionId,
      provider_id: login.providerId,
      browser_hash: browserDigest(login.browserId),
      created_at: now,
      expires_at: now + upstreamLoginTtlMs,
      consumed_at: null,
      result: login.result ?? null,
      asked: login.asked !== undefined ? JSON.stringify(login.asked) : null,
    })
    .execute();
  // Expired records go with a later sign-in's write (at most one in a hundred pays for it).
  if (Math.random() < 0.01) await ctx.storage.db.deleteFrom('upstream_logins').where('expires_at', '<', now - upstreamLoginTtlMs).execute();
  return secretsOf(ctx.identity.factorKeys.master, state);
}

export type ConsumedLogin =
  | {
      ok: true;
      interactionId: string;
      providerId: string;
      secrets: UpstreamLoginSecrets;
      /** When the sign-in was opened, just before the browser was sent to the upstream (ms): a prompt=login answer must be later (./freshness.ts). */
      sentAt: number;
      /** A SAML IdP's verified answer, kept by the ACS. */
      result?: string;
      /** What the upstream was asked when the person was sent there (./freshness.ts UpstreamAsk). */
      asked?: UpstreamAsk;
    }
  | { ok: false; reason: 'unknown_state' | 'expired' | 'replayed' | 'other_browser' };

/**
 * Takes the sign-in a callback's `state` names, once: the first callback with it wins (a
 * conditional update), every later one is `replayed`. Another browser's callback (a state sent to
 * someone else to finish) and a late one are refused and use it up all the same.
 */
export async function consumeUpstreamLogin(ctx: LoginContext, state: string, browserId: string | undefined): Promise<ConsumedLogin> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(state)) return { ok: false, reason: 'unknown_state' };
  const hash = stateHash(state);
  const row = await ctx.storage.db.selectFrom('upstream_logins').selectAll().where('state_hash', '=', hash).executeTakeFirst();
  if (!row) return { ok: false, reason: 'unknown_state' };
  const now = ctx.clock.now();
  const taken = await ctx.storage.db.updateTable('upstream_logins').set({ consumed_at: now }).where('state_hash', '=', hash).where('consumed_at', 'is', null).executeTakeFirst();
  if (Number(taken.numUpdatedRows) !== 1) return { ok: false, reason: 'replayed' };
  if (Number(row.expires_at) <= now) return { ok: false, reason: 'expired' };
  if (browserId === undefined || !safeEqual(browserDigest(browserId), row.browser_hash)) return { ok: false, reason: 'other_browser' };
  return {
    ok: true,
    interactionId: row.interaction_id,
    providerId: row.provider_id,
    secrets: secretsOf(ctx.identity.factorKeys.master, state),
    sentAt: Number(row.created_at),
    ...(row.result !== null ? { result: row.result } : {}),
    ...askOf(row.asked),
  };
}

/** The kept ask, read back through `strictest` (only its known members, only sound values). */
function askOf(stored: string | null | undefined): { asked?: UpstreamAsk } {
  if (stored === null || stored === undefined) return {};
  const parsed = JSON.parse(stored) as UpstreamAsk;
  const because = parsed.because === 'step_up' || parsed.because === 'risk_step_up' ? { because: parsed.because } : {};
  const asked = strictest({ ...(typeof parsed.maxAge === 'number' ? { maxAge: parsed.maxAge } : {}), ...(parsed.login === true ? { login: true } : {}), ...because });
  return asked ? { asked } : {};
}

/**
 * A SAML IdP's answer arrives by a cross-site POST, which carries no SameSite=Lax cookie: the ACS
 * cannot tell the browser, so it only reads the open sign-in the RelayState names (not taken, not
 * expired) and keeps the verified answer on it (`keepUpstreamResult`), or spoils it
 * (`spoilUpstreamLogin`) when the answer fails; the browser then brings the state back by a GET,
 * which carries its cookies, and `consumeUpstreamLogin` checks it as for OpenID Connect.
 */
export async function openUpstreamLoginOf(ctx: LoginContext, state: string): Promise<{ providerId: string; interactionId: string; secrets: UpstreamLoginSecrets } | undefined> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(state)) return undefined;
  const row = await ctx.storage.db.selectFrom('upstream_logins').selectAll().where('state_hash', '=', stateHash(state)).executeTakeFirst();
  if (!row || row.consumed_at !== null || row.result !== null || Number(row.expires_at) <= ctx.clock.now()) return undefined;
  return { providerId: row.provider_id, interactionId: row.interaction_id, secrets: secretsOf(ctx.identity.factorKeys.master, state) };
}

/** Keeps a verified answer on an open sign-in, once (a second answer for the same state is refused: false). */
export async function keepUpstreamResult(ctx: LoginContext, state: string, result: string): Promise<boolean> {
  const kept = await ctx.storage.db
    .updateTable('upstream_logins')
    .set({ result })
    .where('state_hash', '=', stateHash(state))
    .where('consumed_at', 'is', null)
    .where('result', 'is', null)
    .executeTakeFirst();
  return Number(kept.numUpdatedRows) === 1;
}

/** Uses up an open sign-in whose answer failed: it cannot be tried again. */
export async function spoilUpstreamLogin(ctx: LoginContext, state: string): Promise<void> {
  await ctx.storage.db.updateTable('upstream_logins').set({ consumed_at: ctx.clock.now() }).where('state_hash', '=', stateHash(state)).where('consumed_at', 'is', null).execute();
}
