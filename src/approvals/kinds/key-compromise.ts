import { epochSeconds } from '../../clock.ts';
import { acr } from '../../identity/acr.ts';
import { findUser } from '../../identity/users.ts';
import { keyCompromiseRole, settleKeyRevocation, type KeyCompromiseContent } from '../../keys/compromise-request.ts';
import { grantProblem, signerProblem } from '../../keys/compromise-signer.ts';
import type { ApprovalKind } from '../kinds.ts';
import { maxProofAgeSeconds } from './break-glass.ts';

/**
 * The revocation of a compromised token-signing key through the admin API (src/keys/compromise-request.ts,
 * docs/keys.md "Token-signing keys: compromise"): approved by an active person holding `admin`,
 * read from their record now, at the phishing-resistant level and freshly (a token proof at most
 * five minutes after its sign-in) — never the requester (the one rule of src/approvals/requests.ts).
 * An admin token counts only when no key in doubt signed it — never a compromised key, nor one
 * whose revocation waits for another request; the key this request is about may have signed a
 * token that approves (whoever forged it can only end the key they stole), never one that denies —
 * and its consent grant is its person's (src/keys/compromise-signer.ts): the stolen key makes
 * tokens for anyone.
 * One approval after a person asked, two after a client's own token did. The approval that
 * completes it revokes the key in the decision's transaction (`key.compromised`); every node's key
 * cache follows the change notice, and this one at once (`afterSettled`).
 */
export const keyCompromiseKind: ApprovalKind = {
  name: 'key_compromise',
  approverAcr: acr.phishingResistant,
  // Nobody approves as the subject (the subject is the key, not a person).
  subjectAcr: acr.phishingResistantHardware,
  async eligible(ctx, request, approver, proof, options) {
    const person = await findUser(ctx, approver.userId);
    if (!person || person.status !== 'active') return 'not an active person';
    if (!person.roles.includes(keyCompromiseRole)) return `not a holder of ${keyCompromiseRole}`;
    if (proof.method === 'token') {
      if (epochSeconds(ctx.clock) - proof.authTime > maxProofAgeSeconds) return 'authentication not fresh (more than 5 minutes old)';
      // A token vouches for nobody when a key in doubt signed it: whoever stole the key could deny
      // its revocation with a token made for any admin (src/keys/compromise-signer.ts). Approving
      // with the key in question is the safe direction (and every admin's token is signed by the
      // key that signs now, the one most likely to have leaked); a passkey needs no signing key.
      const signer = await signerProblem(ctx, proof.kid, (request.content as unknown as KeyCompromiseContent).kid, { sameKeyAllowed: options?.decision !== 'deny' });
      if (signer) return signer;
      const grant = await grantProblem(ctx, proof.grantId, approver.userId);
      if (grant) return grant;
    }
    return undefined;
  },
  describe(request) {
    const content = request.content as unknown as KeyCompromiseContent;
    return {
      title: `Revocation of compromised signing key ${content.kid}`,
      lines: [
        { label: 'Key', value: `${content.kid} (${content.alg}, ${content.state})` },
        { label: 'Asked by', value: content.requested_by },
        { label: 'Reason', value: content.reason },
        {
          label: 'Approving',
          value: 'removes the key from the JWKS on every node at once, ends every token it signed and the refresh tokens issued with them, and makes the next key sign now',
        },
      ],
    };
  },
  onSettled: (ctx, trx, request, outcome) => settleKeyRevocation(ctx, trx, request, outcome),
  afterSettled(ctx, _request, outcome) {
    if (outcome === 'approved') ctx.keys.invalidate();
  },
};
