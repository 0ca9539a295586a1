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
 * Adds a person with the `compliance` role to the demo's Clearance (as `clearance apply` would),
 * with a fresh password: the console asks a phishing-resistant sign-in of compliance, so they add a
 * passkey on their account page after the first password sign-in (docs/console.md "Signing in").
 */
export async function addComplianceOfficer(ctx: Context, username = 'compliance'): Promise<ConsoleUser> {
  const password = randomBytes(12).toString('base64url');
  const { plan, problems } = await planApply(ctx, { users: [{ username, name: 'Demo Compliance Officer', password, roles: ['compliance'] }] });
  if (!plan) throw new Error(problems.map(formatProblem).join('\n'));
  await executeApply(ctx, plan, { actor: 'demo', via: 'cli' });
  return { username, password };
}
