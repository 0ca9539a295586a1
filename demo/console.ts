import { randomBytes } from 'node:crypto';
import { executeApply, planApply } from '../src/apply/index.ts';
import type { Context } from '../src/context.ts';
import { formatProblem } from '../src/validation.ts';

/** The compliance officer of `npm run demo -- --console`: a password to start with, a passkey added on first sign-in. */
export interface ConsoleUser {
  username: string;
  password: string;
}

/**
 * Adds the broker's compliance officer to the demo's Clearance (as `clearance apply` would), with a
 * fresh password: the console asks a phishing-resistant sign-in of compliance, so they add a
 * passkey on their account page after the first password sign-in (docs/console.md "Signing in").
 * Their desk is the broker's compliance desk: compliance reads its own legal entity's events, which
 * include every hop of a trade the broker took part in (src/audit/scope.ts).
 */
export async function addComplianceOfficer(ctx: Context, username = 'compliance'): Promise<ConsoleUser> {
  const password = randomBytes(12).toString('base64url');
  const { plan, problems } = await planApply(ctx, { users: [{ username, name: 'Demo Compliance Officer', password, roles: ['compliance'], desks: ['broker-compliance'] }] });
  if (!plan) throw new Error(problems.map(formatProblem).join('\n'));
  await executeApply(ctx, plan, { actor: 'demo', via: 'cli' });
  return { username, password };
}
