/**
 * Certificate sign-in's test setup: apply's `person_certificates` section through its own plan and
 * execute functions (what `clearance apply` runs for the section), and the walk of a person's
 * browser through the sign-in page's "Sign in with your smart card" over fastify inject, the
 * certificate passed by the TLS-terminating proxy's header (RFC 9440).
 */
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import type { Context } from '../../../src/context.ts';
import { executePersonCertificates, forgetPersonCertificates, planPersonCertificates } from '../../../src/identity/certificates/settings.ts';
import { forgetCrls } from '../../../src/identity/certificates/revocation.ts';
import { formatProblem, Validator } from '../../../src/validation.ts';
import type { CodeFlowFixture } from '../../authorization/fixture.ts';
import { csrfOf, get, Jar, post, startAuthorization } from '../../endpoints/people-browser.ts';
import type { StoredAuditEvent } from '../../../src/audit/events.ts';
import { decryptEventsUnaudited } from '../../../src/audit/subject-keys.ts';
import { resolveMasterKey } from '../../../src/keys/master-key.ts';

/** Validates and stores a `person_certificates` section, as apply does; throws with the problems. */
export async function applyPersonCertificates(ctx: Context, section: unknown): Promise<void> {
  const v = new Validator();
  const planned = await planPersonCertificates(ctx, v, 'person_certificates', section);
  if (!planned) throw new Error(v.problems.map(formatProblem).join('\n'));
  await ctx.storage.db.transaction().execute((trx) => executePersonCertificates(trx, ctx.clock.now(), planned));
  forgetPersonCertificates(ctx.storage.db);
  forgetCrls();
}

/** The problems apply finds in a `person_certificates` section (none: it is valid). */
export async function problemsOf(ctx: Context, section: unknown): Promise<string[]> {
  const v = new Validator();
  await planPersonCertificates(ctx, v, 'person_certificates', section);
  return v.problems.map(formatProblem);
}

/** The header name the fixtures' TLS-terminating proxy passes the client certificate in. */
export const certificateHeader = 'x-client-cert';

/**
 * A person's browser on an authorization request of web-app: the sign-in page, then "Sign in with
 * your smart card" with the proxy passing `header` (none: no certificate). The interaction, the
 * verifier, the page before and the response to the POST.
 */
export async function certificateSignIn(f: CodeFlowFixture, header: string | undefined, jar = new Jar()): Promise<{ id: string; verifier: string; jar: Jar; page: LightMyRequestResponse; response: LightMyRequestResponse }> {
  const { id, verifier } = await startAuthorization(f, jar);
  const page = await get(f, `/interaction/${id}`, jar);
  assert.equal(page.statusCode, 200, page.body);
  const response = await post(f, `/interaction/${id}/certificate`, { csrf_token: csrfOf(page.body) }, jar, header ? { [certificateHeader]: header } : {});
  return { id, verifier, jar, page, response };
}

/** The newest audit event of a type, parsed. */
export async function lastEvent(ctx: Context, type: string): Promise<{ subject?: string; decision?: { allow: boolean; reasons: string[] }; details: Record<string, unknown> }> {
  const row = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq', 'desc').executeTakeFirstOrThrow();
  // Personal fields are stored encrypted (docs/privacy.md): read through the decrypting reader.
  const [event] = await decryptEventsUnaudited(ctx.storage.db, resolveMasterKey(ctx.config).key, [JSON.parse(row.event) as StoredAuditEvent]);
  return event as { subject?: string; decision?: { allow: boolean; reasons: string[] }; details: Record<string, unknown> };
}

/** How many audit events of a type there are. */
export async function countEvents(ctx: Context, type: string): Promise<number> {
  const row = await ctx.storage.db.selectFrom('audit_events').select((eb) => eb.fn.countAll().as('n')).where('type', '=', type).executeTakeFirstOrThrow();
  return Number(row.n);
}
