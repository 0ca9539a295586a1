import { userInfo } from 'node:os';
import type { Context } from '../../context.ts';
import { linkIdentity, linksOf } from '../../federation/upstream/linking.ts';
import { findProvider } from '../../federation/upstream/providers.ts';
import { findUserByUsername } from '../../identity/users.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { exit, type Output } from '../output.ts';

export const usersHelp = `Usage: clearance users link USERNAME --provider ID --subject SUB
       clearance users links USERNAME

link     links an upstream identity (identity provider ID, its subject SUB) to the existing person
         USERNAME, so that signing in through that provider is signing in as them
         (docs/identity-brokering.md "Linking"). This is how a person whose email address a
         first upstream sign-in found already taken here is joined to their organisation's
         sign-in; an identity already linked to someone is refused. Audited as user.linked.
links    lists the upstream identities linked to USERNAME.`;

export async function usersCommand(ctx: Context, action: string | undefined, args: { username?: string; provider?: string; subject?: string }, output: Output): Promise<number> {
  if ((action !== 'link' && action !== 'links') || !args.username) {
    output.err(usersHelp);
    return exit.usage;
  }
  const user = await findUserByUsername(ctx, args.username);
  if (!user) {
    output.err(`no user ${args.username}`);
    return exit.failed;
  }
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
  const actor = `cli:${userInfo().username}`;
  const linked = await linkIdentity(ctx, { userId: user.id, provider: stored.provider, subject: args.subject, actor });
  if (!linked.ok) {
    output.err(linked.reason === 'already_linked' ? `${args.provider} subject ${args.subject} is already linked to a person` : `no user ${args.username}`);
    return exit.failed;
  }
  await assessAdminAction(ctx, { admin: cliAdmin(), action: 'users.link' });
  output.out(`linked ${args.provider} subject ${args.subject} to ${user.username}`);
  return exit.ok;
}
