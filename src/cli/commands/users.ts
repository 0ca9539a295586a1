import type { Context } from '../../context.ts';
import { linkIdentity, linksOf } from '../../federation/upstream/linking.ts';
import { findProvider } from '../../federation/upstream/providers.ts';
import { findUserByUsername } from '../../identity/users.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { exit, type Output } from '../output.ts';
import type { Rule } from '../usage.ts';
import { offboardPerson } from '../../lifecycle/leaver.ts';
import { readInstant } from '../../mandates/instant.ts';
import { Validator, formatProblem } from '../../validation.ts';

export const usersHelp = `Usage: clearance users link USERNAME --provider ID --subject SUB
       clearance users links USERNAME
       clearance users offboard USERNAME [--deadline ISO-8601] [--reason TEXT]

link     links an upstream identity (identity provider ID, its subject SUB) to the existing person
         USERNAME (SUB at most 255 characters), so that signing in through that provider is
         signing in as them
         (docs/identity-brokering.md "Linking"). This is how a person whose email address a
         first upstream sign-in found already taken here is joined to their organisation's
         sign-in; an identity already linked to someone is refused. Audited as user.linked.
links    lists the upstream identities linked to USERNAME.
offboard offboards a leaver in one transaction (docs/lifecycle.md "Joiners, movers, leavers"):
         USERNAME is disabled; their sessions, refresh and access tokens, codes, consent grants
         and factors (TOTP, recovery codes, passkeys) end; mandates granted to them are revoked;
         mandates they granted (granted_by) stay in force only until --deadline (an RFC 3339
         time with an offset; default now + CLEARANCE_OFFBOARD_REASSIGNMENT_DAYS, 14 days) and
         an alert asks for their reassignment; agents whose model they own are flagged. Prints
         what was ended; audited as one user.offboarded event (--reason, at most 200 characters,
         is recorded in it). Fails for an unknown or already offboarded person.`;

/** What each action takes (src/cli/usage.ts); the usage lines above say the same. */
export const usersUsage = {
  actions: {
    link: { options: ['provider', 'subject'], args: ['USERNAME'] },
    links: { options: [], args: ['USERNAME'] },
    offboard: { options: ['deadline', 'reason'], args: ['USERNAME'] },
  },
} as const satisfies Rule;

export async function usersCommand(
  ctx: Context,
  action: string | undefined,
  args: { username?: string; provider?: string; subject?: string; reason?: string; deadline?: string },
  output: Output,
): Promise<number> {
  if ((action !== 'link' && action !== 'links' && action !== 'offboard') || !args.username) {
    output.err(usersHelp);
    return exit.usage;
  }
  const user = await findUserByUsername(ctx, args.username);
  if (!user) {
    output.err(`no user ${args.username}`);
    return exit.failed;
  }
  if (action === 'offboard') return offboard(ctx, user.username, args, output);
  if (action === 'links') {
    for (const link of await linksOf(ctx, user.id)) output.out(`${link.provider_id}  ${link.issuer}  ${link.subject}  ${link.linked_by}`);
    return exit.ok;
  }
  if (!args.provider || !args.subject || args.subject.length > 255) {
    output.err(usersHelp);
    return exit.usage;
  }
  const stored = await findProvider(ctx.storage.db, args.provider);
  if (!stored) {
    output.err(`no identity provider ${args.provider} (declare it under identity_providers in apply)`);
    return exit.failed;
  }
  const actor = cliAdmin();
  const linked = await linkIdentity(ctx, { userId: user.id, provider: stored.provider, subject: args.subject, actor });
  if (!linked.ok) {
    output.err(linked.reason === 'already_linked' ? `${args.provider} subject ${args.subject} is already linked to a person` : `no user ${args.username}`);
    return exit.failed;
  }
  await assessAdminAction(ctx, { admin: cliAdmin(), action: 'users.link' });
  output.out(`linked ${args.provider} subject ${args.subject} to ${user.username}`);
  return exit.ok;
}

async function offboard(ctx: Context, username: string, args: { reason?: string; deadline?: string }, output: Output): Promise<number> {
  let deadline: number | undefined;
  if (args.deadline !== undefined) {
    const v = new Validator();
    deadline = readInstant(v, '--deadline', args.deadline);
    if (deadline === undefined || deadline <= ctx.clock.now()) {
      output.err(deadline === undefined ? v.problems.map(formatProblem).join('; ') : '--deadline must be in the future');
      return exit.usage;
    }
  }
  if (args.reason !== undefined && (args.reason.length > 200 || /[\u0000-\u001f\u007f]/.test(args.reason))) {
    output.err('--reason must be at most 200 characters, without control characters');
    return exit.usage;
  }
  const done = await offboardPerson(ctx, username, {
    actor: cliAdmin(),
    via: 'cli',
    ...(args.reason !== undefined ? { reason: args.reason } : {}),
    ...(deadline !== undefined ? { reassignmentDeadline: deadline } : {}),
  });
  if (!done) {
    output.err(`${username} is already offboarded`);
    return exit.failed;
  }
  await assessAdminAction(ctx, { admin: cliAdmin(), action: 'users.offboard' });
  const e = done.ended;
  output.out(`offboarded ${done.username} (${done.userId}): disabled`);
  output.out(`  sessions ended: ${e.sessions}, refresh tokens revoked: ${e.refreshTokens}, codes discarded: ${e.codes}`);
  output.out(`  consent grants revoked: ${e.consentGrants.length}${e.consentGrants.length ? ` (${e.consentGrants.join(', ')})` : ''}`);
  output.out(`  factors removed: totp ${e.factors.totp}, recovery codes ${e.factors.recoveryCodes}, passkeys ${e.factors.passkeys}`);
  output.out(`  mandates granted to them, revoked: ${e.mandatesRevoked.length ? e.mandatesRevoked.join(', ') : 'none'}`);
  output.out(
    `  mandates they granted, in force until ${new Date(e.mandatesForReassignment.deadline).toISOString()}: ${e.mandatesForReassignment.mandates.length ? e.mandatesForReassignment.mandates.map((m) => `${m.id} v${m.v}`).join(', ') : 'none'}`,
  );
  output.out(`  agents flagged: ${e.agentsFlagged.length ? e.agentsFlagged.join(', ') : 'none'}`);
  return exit.ok;
}
