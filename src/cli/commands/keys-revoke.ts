import type { Context } from '../../context.ts';
import { reasonProblem, revokeCompromisedKey } from '../../keys/compromise.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { exit, type Output } from '../output.ts';

/** Said when `--compromised` is missing: what the command is for, and what it does. */
export const revokeNeedsCompromised = `clearance keys revoke is the emergency path for a signing key that is, or may be, compromised.
It takes the key out of the JWKS on every node at once (never to return), makes every token it
signed inactive at introspection and at Clearance's own APIs, revokes the refresh tokens issued
with them, and makes the next key sign now (a new one if none is staged). Relying parties that
cached the JWKS keep trusting the key until they fetch it again (docs/keys.md).
To go ahead: clearance keys revoke KID --compromised [--reason TEXT]
To remove an old key in the ordinary way, wait until it is retirable: clearance keys retire KID`;

/**
 * `clearance keys revoke KID --compromised [--reason TEXT]` (src/keys/compromise.ts, docs/keys.md
 * "Token-signing keys: compromise"). The operator at the command line holds the database and the
 * master key, so no second person is asked here (the admin API asks one); the `key.compromised`
 * event names them.
 */
export async function keysRevokeCommand(ctx: Context, args: { kid?: string; compromised?: boolean; reason?: string }, output: Output): Promise<number> {
  if (!args.kid) {
    output.err('usage: clearance keys revoke KID --compromised [--reason TEXT]');
    return exit.usage;
  }
  if (!args.compromised) {
    output.err(revokeNeedsCompromised);
    return exit.usage;
  }
  const reason = args.reason?.trim();
  // Checked before anything is written: the audit log refuses a pasted token or key, and that
  // refusal would otherwise roll the revocation back mid-emergency.
  const problem = reason === undefined ? undefined : reasonProblem(reason);
  if (problem) {
    output.err(`${problem} (--reason)`);
    return exit.usage;
  }
  const operator = cliAdmin();
  const report = await revokeCompromisedKey(ctx, { kid: args.kid, ...(reason !== undefined ? { reason } : {}), authority: { via: 'cli', operator } });
  await assessAdminAction(ctx, { admin: operator, action: 'keys.revoke' });
  output.out(`revoked ${report.kid} as compromised: out of the JWKS, every token it signed is inactive`);
  if (report.promoted) output.out(`${report.promoted.kid} signs from now on (${report.promoted.how === 'staged' ? 'the staged next key, promoted' : 'a new key'})`);
  output.out(`revoked ${report.refreshTokensRevoked} refresh tokens in ${report.refreshFamiliesRevoked} families; at most ${report.accessTokensEndedAtMost} access tokens it signed were still unexpired`);
  output.out('other nodes see it when the change notice arrives (PostgreSQL), else within a second; relying parties that cache the JWKS see it when they fetch it again');
  return exit.ok;
}
