import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { userInfo } from 'node:os';
import { executeApply, planApply } from '../../apply/index.ts';
import { parseDocument } from '../../apply/parse.ts';
import type { Context } from '../../context.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { formatProblem } from '../../validation.ts';
import { exit, type Output } from '../output.ts';

export const applyHelp = `Usage: clearance apply -f FILE [--dry-run]

Imports a declarative JSON or YAML document (sections: clients, resource_servers, users,
mandates, regions, venues, instrument_classes, legal_entities, policies, partners) in one transaction. Every entry is validated first; if any is invalid, every
problem is printed with its path (e.g. clients[2].redirect_uris[0]: must be https) and
nothing is applied (exit 1).
Applying the same file again changes nothing. Entries missing from the file are kept, not
deleted. Client secrets generated for new client_secret_* clients are printed once. User
passwords are hashed (Argon2id) and never printed or stored in clear. A mandate whose terms
changed gets a new version; the previous one is superseded at once (docs/mandates.md).

Options:
  -f, --file FILE   the document to apply (.json, .yaml or .yml)
  --dry-run         validate and show what would change, without writing`;

export async function applyCommand(ctx: Context, file: string, dryRun: boolean, output: Output): Promise<number> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    output.err(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return exit.failed;
  }
  const parsed = parseDocument(text, basename(file));
  const { plan, problems } = parsed.problems.length ? { plan: undefined, problems: parsed.problems } : await planApply(ctx, parsed.value);
  if (!plan) {
    output.err(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}; nothing was applied`);
    for (const problem of problems) output.err(`  ${formatProblem(problem)}`);
    return exit.failed;
  }
  if (dryRun) {
    output.out(`${file} is valid: ${plan.resourceServers.length} resource server(s), ${plan.clients.length} client(s), ${plan.users.length} user(s), ${plan.mandates.length} mandate(s); nothing was written (dry run)`);
    return exit.ok;
  }
  const activeBefore = plan.policies.some((p) => p.active) ? await activeVersion(ctx) : undefined;
  const result = await executeApply(ctx, plan, { actor: `cli:${userInfo().username}`, via: 'cli' });
  // Intrusion signals (src/risk/intrusion.ts): alerted when unusual; a policy set this apply made
  // active is assessed with the time it was stored (quick_activation).
  const activated = plan.policies.some((p) => p.active) ? await activatedBy(ctx, activeBefore) : undefined;
  await assessAdminAction(ctx, { admin: cliAdmin(), action: activated ? `apply (policy.activate ${activated.version})` : 'apply', ...(activated ? { createdAt: activated.createdAt } : {}) });
  for (const change of result.changes) output.out(`${change.outcome.padEnd(9)} ${change.kind} ${change.id}`);
  const changed = result.changes.filter((c) => c.outcome !== 'unchanged').length;
  output.out(changed === 0 ? 'no changes' : `${changed} change(s) applied`);
  for (const [clientId, secret] of Object.entries(result.secrets)) {
    output.out(`client_secret for ${clientId} (shown once, store it now): ${secret}`);
  }
  return exit.ok;
}

/** The active policy set version, if any. */
async function activeVersion(ctx: Context): Promise<string | undefined> {
  return (await ctx.policies.list()).find((p) => p.active)?.version;
}

/** The policy set version active now when another was before (this apply activated it), with when it was stored. */
async function activatedBy(ctx: Context, before: string | undefined): Promise<{ version: string; createdAt: number } | undefined> {
  const now = (await ctx.policies.list()).find((p) => p.active);
  return now && now.version !== before ? { version: now.version, createdAt: now.created_at } : undefined;
}
