/**
 * Who may speak in a compromised key's revocation through the admin API (issue 26 item 1 review,
 * docs/keys.md "Token-signing keys: compromise"). An admin token is a JWT our signing key signed:
 * whoever holds a stolen key can make one for any person, phishing-resistant and fresh, and deny
 * the revocation of that very key (or ask for and approve the revocation of good keys). So a token
 * neither asks for, approves nor denies a `key_compromise` request when it was signed by
 * - a key revoked as compromised (verification already refuses these: this holds even against a
 *   key cache a moment behind), or
 * - another key whose own revocation waits for approval (someone said it leaked: it vouches for no one);
 * and a token signed by the key the request is about may ask for and approve its revocation —
 * the safe direction: a forger can only end the key they stole, and every admin's token is signed
 * by the key that signs now, the one most likely to have leaked — but never deny it;
 * and a person's token counts only when its consent grant is that person's (`grant_id` names a live
 * grant whose user is the token's `sub`): a forger who guessed or saw one grant id of anybody must
 * not speak for every admin. What a token is taken from is its header's `kid`, read again from the
 * presented token (the verified claims do not carry it).
 */
import type { Context } from '../context.ts';
import { listPendingApprovalRequests } from '../approvals/requests.ts';
import { decodeCompactJws } from '../jose/index.ts';
import { referenceTokenPrefix } from '../tokens/reference-tokens.ts';

/** The Authorization header's credentials (as src/tokens/resource-access.ts reads them). */
const credentialsPattern = /^(?:Bearer|DPoP) ([A-Za-z0-9\-._~+/]+=*)$/i;

/**
 * The `kid` of the access token presented in `authorization`: a string for a JWT of ours, null for
 * a reference token's handle (stored by us, signed by no key), undefined when it cannot be read —
 * which a caller refuses (fail closed). Call only after the token was verified (requireAdmin).
 */
export function presentedTokenKid(authorization: string | undefined): string | null | undefined {
  const token = authorization?.match(credentialsPattern)?.[1];
  if (token === undefined) return undefined;
  if (token.startsWith(referenceTokenPrefix)) return null;
  const decoded = decodeCompactJws(token, { maxBytes: 16 * 1024 });
  if (!decoded.ok) return undefined;
  const kid = decoded.jws.header.kid;
  return typeof kid === 'string' ? kid : undefined;
}

/**
 * Why a token signed with `tokenKid` (null: a reference token) cannot ask for, approve or deny the
 * revocation of `revokedKid`, or undefined when it can. `sameKeyAllowed`: to ask for or approve the
 * revocation of the key that signed it (never to deny it); never another key while its own key is in doubt.
 */
export async function signerProblem(
  ctx: Pick<Context, 'storage' | 'clock'>,
  tokenKid: string | null | undefined,
  revokedKid: string,
  options: { sameKeyAllowed?: boolean } = {},
): Promise<string | undefined> {
  if (tokenKid === null) return undefined;
  if (tokenKid === undefined) return 'which key signed the token could not be read';
  if (tokenKid === revokedKid) {
    if (options.sameKeyAllowed) return undefined;
    return 'the token was signed by the key being revoked: whoever holds that key could have made it';
  }
  // Read from the database, not a node's key cache: a revocation of a moment ago counts.
  const row = await ctx.storage.db.selectFrom('signing_keys').select(['compromised_at']).where('kid', '=', tokenKid).executeTakeFirst();
  if (!row) return 'the token was signed by no key of ours';
  if (row.compromised_at !== null) return 'the token was signed by a key revoked as compromised';
  const [pending] = await listPendingApprovalRequests(ctx, { kinds: ['key_compromise'], subject: tokenKid, limit: 1 });
  if (pending) return `the token was signed by a key whose revocation as compromised waits for approval (request ${pending.id})`;
  return undefined;
}

/**
 * Why a person's token does not stand for `sub`, or undefined when it does: its consent grant
 * (`grant_id`) must be live and that person's. (src/tokens/liveness.ts asks only that the grant
 * is live: a general tie of grant and `sub` is a follow-up; here it is checked.)
 */
export async function grantProblem(ctx: Pick<Context, 'storage'>, grantId: string | undefined, sub: string): Promise<string | undefined> {
  if (grantId === undefined || grantId.length > 64) return "the token names no person's consent grant";
  const grant = await ctx.storage.db.selectFrom('grants').select(['user_id']).where('id', '=', grantId).where('revoked_at', 'is', null).executeTakeFirst();
  if (!grant) return "the token's consent grant is not in force";
  if (grant.user_id !== sub) return "the token's consent grant is not its person's";
  return undefined;
}
