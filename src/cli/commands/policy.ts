import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { executeApply, planApply } from '../../apply/index.ts';
import { epochSeconds, systemClock } from '../../clock.ts';
import type { Context } from '../../context.ts';
import { activationEvent } from '../../policy/apply-section.ts';
import { compilePolicySet, formatPolicyProblem, type PolicySource } from '../../policy/engine.ts';
import { simulate } from '../../policy/simulate.ts';
import { PolicyActivationError } from '../../policy/store.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { readPolicySources, testPolicyDirectory } from '../../policy/testing.ts';
import { formatProblem } from '../../validation.ts';
import { exit, type Output } from '../output.ts';
import { UsageError, wholeNumber, type WholeNumberOption } from '../numbers.ts';
import type { Rule } from '../usage.ts';

export const policyHelp = `Usage: clearance policy test DIR
       clearance policy simulate --candidate FILE|DIR [--candidate FILE|DIR ...] [--last N]
       clearance policy list
       clearance policy add FILE|DIR --version V --change-ref REF --author NAME
       clearance policy activate VERSION --approver NAME

test      evaluates the policy files of DIR (*.cedar) against the cases in DIR/tests
          (*.yaml, *.yml, *.json: a request and the decision it must get). Needs no database:
          run it in a policy repository's CI. Exit 1 lists every mismatch.
simulate  replays the last N recorded decisions (default 1000) from the audit log against a
          candidate policy set and prints every decision that would flip (exit 0; 1 when the
          candidate is invalid). Decisions are the policy.allowed / policy.denied events and
          those a token.issued / token.exchanged event carries (a successful issuance's).
          Several --candidate paths make one set: a policy in a later
          one replaces the policy with the same @id in an earlier one, e.g.
          --candidate examples/policies --candidate examples/policies/candidates/lower-limit.cedar
list      every stored policy set version; * marks the active one.
add       stores a new version (not active) from a .cedar file or a directory of them,
          validated against the policy schema (the same as a policies entry of clearance apply).
activate  makes VERSION the active policy set; the approver must not be its author (four
          eyes). Running servers use it within a second. An activation soon after the version
          was stored (15 minutes by default) is alerted as risk.admin_unusual, as are other
          unusual changes (docs/risk.md "Intrusion signals").

See docs/policy.md.`;

/** `policy simulate --last`: how many recorded decisions to replay. */
export const lastOption: WholeNumberOption = { flag: '--last', min: 1, max: 1_000_000 };

/** What each action takes (src/cli/usage.ts); the usage lines above say the same. */
export const policyUsage = {
  actions: {
    test: { options: [], args: ['DIR'] },
    simulate: { options: ['candidate', 'last'], args: [], numbers: [lastOption] },
    list: { options: [], args: [] },
    add: { options: ['version', 'change-ref', 'author'], args: ['FILE|DIR'] },
    activate: { options: ['approver'], args: ['VERSION'] },
  },
} as const satisfies Rule;

export interface PolicyArgs {
  action: string | undefined;
  target: string | undefined;
  /** One or more policy files or directories; later ones overlay earlier ones by policy id. */
  candidate?: string[] | undefined;
  last?: string | undefined;
  approver?: string | undefined;
  version?: string | undefined;
  changeRef?: string | undefined;
  author?: string | undefined;
}

export function policyTestCommand(dir: string | undefined, output: Output): number {
  if (!dir) {
    output.err(policyHelp);
    return exit.usage;
  }
  if (!existsSync(dir)) {
    output.err(`${dir}: no such directory`);
    return exit.usage;
  }
  const result = testPolicyDirectory(dir, epochSeconds(systemClock));
  for (const line of result.lines) (result.ok ? output.out : output.err)(line);
  return result.ok ? exit.ok : exit.failed;
}

export async function policyCommand(ctx: Context, args: PolicyArgs, output: Output): Promise<number> {
  const actor = cliAdmin();
  switch (args.action) {
    case 'list': {
      const versions = await ctx.policies.list();
      if (versions.length === 0) output.out('no policy set versions (add one with clearance apply or clearance policy add)');
      for (const p of versions) {
        output.out(
          `${p.active ? '*' : ' '} ${p.version}  author ${p.author}  approver ${p.approver ?? '-'}  ${p.change_ref}  created ${new Date(p.created_at).toISOString()}${p.activated_at ? `  activated ${new Date(p.activated_at).toISOString()}` : ''}`,
        );
      }
      return exit.ok;
    }
    case 'activate': {
      if (!args.target || !args.approver) {
        output.err(policyHelp);
        return exit.usage;
      }
      const version = args.target;
      const approver = args.approver;
      try {
        const { previous } = await ctx.audit.recordWith(async (trx) => {
          const done = await ctx.policies.activate(trx, version, approver, actor);
          const events = done.previous === version ? [] : [activationEvent(actor, version, done.author, approver, done.changeRef, done.previous)];
          return { value: done, events };
        });
        ctx.policies.invalidate();
        // Intrusion signals (src/risk/intrusion.ts): a version activated soon after it was stored is quick_activation.
        if (previous !== version) {
          const stored = await ctx.policies.get(version);
          await assessAdminAction(ctx, { admin: actor, action: `policy.activate ${version}`, ...(stored ? { createdAt: stored.created_at } : {}) });
        }
        output.out(previous === version ? `policy set ${version} is already active` : `activated policy set ${version} (approved by ${approver}${previous ? `; was ${previous}` : ''})`);
        return exit.ok;
      } catch (error) {
        if (!(error instanceof PolicyActivationError)) throw error;
        output.err(`cannot activate ${version}: ${error.message}`);
        return exit.failed;
      }
    }
    case 'add': {
      if (!args.target || !args.version || !args.changeRef || !args.author) {
        output.err(policyHelp);
        return exit.usage;
      }
      const text = readSourceText(args.target, output);
      if (text === undefined) return exit.failed;
      const { plan, problems } = await planApply(ctx, { policies: [{ version: args.version, text, change_ref: args.changeRef, author: args.author }] });
      if (!plan) {
        output.err(`${args.target}: ${problems.length} problem${problems.length === 1 ? '' : 's'}; nothing was stored`);
        for (const problem of problems) output.err(`  ${formatProblem(problem)}`);
        return exit.failed;
      }
      const result = await executeApply(ctx, plan, { actor, via: 'cli' });
      await assessAdminAction(ctx, { admin: actor, action: `policy.add ${args.version}` });
      output.out(`${result.changes[0]!.outcome.padEnd(9)} policy set ${args.version} (not active; activate with: clearance policy activate ${args.version} --approver NAME)`);
      return exit.ok;
    }
    case 'simulate': {
      if (!args.candidate?.length) {
        output.err(policyHelp);
        return exit.usage;
      }
      let last: number;
      try {
        last = wholeNumber(lastOption, args.last) ?? 1000;
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        output.err(error.message);
        return exit.usage;
      }
      const candidate = args.candidate.join(' + ');
      const sources: PolicySource[] = [];
      for (const [layer, path] of args.candidate.entries()) {
        const read = readPolicyFiles(path, output);
        if (read === undefined) return exit.failed;
        sources.push(...read.map((s) => ({ ...s, layer })));
      }
      const compiled = compilePolicySet(`candidate:${args.candidate.map((p) => basename(p)).join('+')}`, sources);
      if (!compiled.set) {
        output.err(`${candidate}: the candidate policy set is invalid:`);
        for (const problem of compiled.problems) output.err(`  ${formatPolicyProblem(problem)}`);
        return exit.failed;
      }
      const result = await simulate(ctx.storage.db, compiled.set, last);
      for (const flip of result.flips) {
        const e = flip.event;
        const was = `${flip.was.allow ? 'allow' : 'deny'} (${flip.was.reasons.join(', ') || '-'} @ ${flip.was.policyVersion})`;
        const now = `${flip.now.allow ? 'allow' : 'deny'} (${[...flip.now.reasons, ...flip.now.errors].join(', ') || 'no policy permits'})`;
        const { principal, action, resource } = flip.request;
        // A decision folded into a token event is named by that event: its type says which.
        const where = e.type === 'policy.allowed' || e.type === 'policy.denied' ? `event ${e.id}` : `event ${e.id} (${e.type})`;
        output.out(`${was} -> ${now}  ${new Date(e.time).toISOString()}  ${String(principal)} ${String(action)} ${String(resource)}  ${where}`);
      }
      const toDeny = result.flips.filter((f) => f.was.allow).length;
      const skipped = result.read - result.replayed;
      output.out(
        `replayed ${result.replayed} of the last ${result.read} decisions against ${candidate}: ${result.flips.length} would flip (${toDeny} allow -> deny, ${result.flips.length - toDeny} deny -> allow)${skipped ? `; ${skipped} recorded without their request were not replayed` : ''}`,
      );
      return exit.ok;
    }
    default:
      output.err(policyHelp);
      return exit.usage;
  }
}

/** The policy text of a file, or of a directory's .cedar files joined (each headed by its name). */
function readSourceText(path: string, output: Output): string | undefined {
  const sources = readPolicyFiles(path, output);
  if (sources === undefined) return undefined;
  return sources.length === 1 ? sources[0]!.text : sources.map((s) => `// ---- ${basename(s.name)} ----\n${s.text.endsWith('\n') ? s.text : `${s.text}\n`}`).join('\n');
}

/**
 * The policies of a file or a directory's .cedar files, for policy add and simulate alike; undefined
 * (said on stderr) when it cannot be read or holds none — a folder without policies is a mistake,
 * not a set that permits nothing.
 */
function readPolicyFiles(path: string, output: Output): PolicySource[] | undefined {
  try {
    const sources = readPolicySources(path);
    if (sources.length === 0) {
      output.err(`${path}: no .cedar policy files`);
      return undefined;
    }
    return sources;
  } catch (error) {
    output.err(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return undefined;
  }
}
