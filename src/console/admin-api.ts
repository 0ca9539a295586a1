import type { FastifyInstance } from 'fastify';
import type { ConsoleSession } from './session.ts';

/** An admin API answer as the console sees it. */
export interface AdminAnswer {
  status: number;
  /** The JSON body (an OAuth error's `error` and `error_description` on a refusal). */
  json: Record<string, unknown>;
  text: string;
  headers: Record<string, string | string[] | number | undefined>;
}

/**
 * Calls Clearance's own admin API with the signed-in person's token, through the same HTTP
 * pipeline as any other caller (fastify's inject: routing, hooks, the token check, the audit of
 * changes): the console has no other way in, so it can do nothing the person's token may not.
 */
export async function callAdmin(app: FastifyInstance, session: ConsoleSession, request: { method: 'GET' | 'POST'; url: string; body?: Record<string, unknown> }): Promise<AdminAnswer> {
  const response = await app.inject({
    method: request.method,
    url: request.url,
    headers: {
      authorization: `Bearer ${session.accessToken}`,
      ...(request.body ? { 'content-type': 'application/json' } : {}),
    },
    ...(request.body ? { payload: JSON.stringify(request.body) } : {}),
  });
  let json: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(response.body);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
  } catch {
    // not JSON (a bundle is, an empty 204 is not): `text` has it
  }
  return { status: response.statusCode, json, text: response.body, headers: response.headers };
}
