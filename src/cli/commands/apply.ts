import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { ApplyRefusedError, executeApply, planApply, previewApply } from '../../apply/index.ts';
import { documentDigest, formatPlan } from '../../lifecycle/plan.ts';
import { parseDocument } from '../../apply/parse.ts';
import type { Context } from '../../context.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { formatProblem } from '../../validation.ts';
import { exit, type Output } from '../output.ts';
import type { Rule } from '../usage.ts';

export const applyHelp = `Usage: clearance apply -f FILE [--plan | --dry-run] [--prune [--force]]
       clearance apply --plan FILE
       clearance apply --prune FILE [--force]

Imports a declarative JSON or YAML document (sections: clients, resource_servers, users,
mandates, regions, venues, instrument_classes, legal_entities, policies, partners, agents and
the rest in docs/apply.md) in one transaction. Every entry is validated first; if any is
invalid, every problem is printed with its path (e.g. clients[2].redirect_uris[0]: must be
https) and nothing is applied (exit 1; exit 2 with --plan).
Applying the same file again changes nothing. Client secrets generated for new client_secret_*
clients are printed once. User passwords are hashed (Argon2id) and never printed or stored in
clear. A mandate whose terms changed gets a new version; the previous one is superseded at once.
Every change is its own config.changed audit event carrying the document's SHA-256 digest.

Without --prune, entries missing from the file are kept. With --prune the file is authoritative
for the kinds it declares (clients, resource_servers, partners, users, agents, mandates): an
entry of such a kind that is in service but absent from the file is disabled, never deleted —
its tokens end at once (a person goes through the leaver operation). Clearance's console client,
dynamically registered clients and people provisioned by an identity provider or SCIM are
never pruned. Safety rule: prune refuses to disable more than CLEARANCE_PRUNE_MAX_PERCENT
(default 25) percent of a kind in service (one is always allowed) unless --force, and never
disables the last clients that can administer Clearance (admin:write, such as the one
clearance init made), even with --force: declare that client in the document.

Options:
  -f, --file FILE   the document to apply (.json, .yaml or .yml)
  --plan            show what the file would add, change (field by field; secrets never shown)
                    and, with --prune, disable; write nothing. Exit 0 when the file is valid,
                    2 when it is not. For pull requests in a GitOps pipeline (docs/lifecycle.md)
  --dry-run         validate and summarise, without writing (exit 1 when invalid)
  --prune           disable what the file no longer declares (the plan is printed first)
  --force           with --prune: go past the safety rule`;

/** What `apply` takes (src/cli/usage.ts): the file as -f FILE or as its one argument. */
export const applyUsage = { options: ['file', 'plan', 'dry-run', 'prune', 'force'], args: ['FILE'] } as const satisfies Rule;

/** What the command was asked to do. */
export interface ApplyMode {
  plan: boolean;
  dryRun: boolean;
  prune: boolean;
  force: boolean;
}

export async function applyCommand(ctx: Context, file: string, mode: ApplyMode, output: Output): Promise<number> {
  // --plan is for machines (CI): an invalid document is a usage error there, exit 2.
  const invalid = mode.plan ? exit.usage : exit.failed;
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    output.err(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return invalid;
  }
  const digest = documentDigest(bytes);
  const parsed = parseDocument(bytes.toString('utf8'), basename(file));
  const { plan, problems } = parsed.problems.length ? { plan: undefined, problems: parsed.problems } : await planApply(ctx, parsed.value);
  if (!plan) {
    output.err(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}; nothing was applied`);
    for (const problem of problems) output.err(`  ${formatProblem(problem)}`);
    return invalid;
  }
  if (mode.dryRun) {
    output.out(`${file} is valid: ${plan.resourceServers.length} resource server(s), ${plan.clients.length} client(s), ${plan.users.length} user(s), ${plan.mandates.length} mandate(s); nothing was written (dry run)`);
    return exit.ok;
  }
  const source = { actor: cliAdmin(), via: 'cli' as const };
  if (mode.plan || mode.prune) {
    // The plan first: with --prune it is what is about to happen.
    const preview = await previewApply(ctx, plan, source, { prune: mode.prune });
    output.out(`plan for ${file} (${digest})${mode.prune ? ', authoritative for: ' + Object.keys(plan.declared).join(', ') : ''}`);
    for (const line of formatPlan(preview.changes, preview.unchanged)) output.out(line);
    for (const refusal of preview.refusals) {
      output.out(
        refusal.lastAdministrators
          ? `! prune would disable every client that can administer Clearance (admin:write: ${refusal.lastAdministrators.join(', ')}); declare one in the document (--force does not override this)`
          : `! prune would disable ${refusal.pruned} of ${refusal.inService} ${refusal.kind}(s) in service; the safety rule allows ${refusal.allowed}${mode.force ? ' (--force given)' : ' without --force'}`,
      );
    }
    if (mode.plan) {
      output.out('nothing was written (plan)');
      return exit.ok;
    }
  }
  const activeBefore = plan.policies.some((p) => p.active) ? await activeVersion(ctx) : undefined;
  let result;
  try {
    result = await executeApply(ctx, plan, source, { digest, prune: mode.prune, force: mode.force });
  } catch (error) {
    if (!(error instanceof ApplyRefusedError)) throw error;
    output.err(error.message);
    return exit.failed;
  }
  // Intrusion signals (src/risk/intrusion.ts): alerted when unusual; a policy set this apply made
  // active is assessed with the time it was stored (quick_activation).
  const activated = plan.policies.some((p) => p.active) ? await activatedBy(ctx, activeBefore) : undefined;
  await assessAdminAction(ctx, { admin: cliAdmin(), action: activated ? `apply (policy.activate ${activated.version})` : mode.prune ? 'apply --prune' : 'apply', ...(activated ? { createdAt: activated.createdAt } : {}) });
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
