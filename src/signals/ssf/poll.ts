import type { Context } from '../../context.ts';
import type { Stream } from './streams.ts';
import { StreamError } from './streams.ts';

/**
 * Poll delivery (RFC 8936 §2): the receiver acknowledges the SETs it processed (`ack`), reports
 * those it refused (`setErrs`, kept as the SET's error), and gets the next ones (`sets`, at most
 * `maxEvents`, oldest first) with `moreAvailable`. What it does not acknowledge is sent again at
 * its next poll, so nothing is lost between a response and its processing. A paused stream keeps
 * its SETs and returns none; acknowledgements are always taken. Clearance answers at once
 * (`returnImmediately` false is allowed to return at once, §2.2), so a receiver polls again after
 * an empty answer.
 */
export interface PollRequest {
  ack: string[];
  setErrs: Record<string, { err: string; description?: string }>;
  maxEvents: number;
}

export const maxPollEvents = 1000;
const defaultPollEvents = 100;

export function readPollRequest(body: unknown): PollRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new StreamError('the body is a JSON object (RFC 8936 §2.4)');
  const o = body as Record<string, unknown>;
  const unknown = Object.keys(o).find((k) => !['ack', 'setErrs', 'maxEvents', 'returnImmediately'].includes(k));
  if (unknown !== undefined) throw new StreamError(`unknown member ${unknown}`);
  const ack = o.ack ?? [];
  if (!Array.isArray(ack) || ack.length > maxPollEvents || ack.some((j) => typeof j !== 'string' || j.length > 128)) throw new StreamError(`ack is an array of at most ${maxPollEvents} jti values`);
  const errs = o.setErrs ?? {};
  if (typeof errs !== 'object' || errs === null || Array.isArray(errs) || Object.keys(errs).length > maxPollEvents) throw new StreamError('setErrs is an object of jti to {err, description}');
  const setErrs: PollRequest['setErrs'] = {};
  for (const [jti, value] of Object.entries(errs as Record<string, unknown>)) {
    const e = value as Record<string, unknown> | null;
    if (jti.length > 128 || typeof e !== 'object' || e === null || typeof e.err !== 'string' || (e.description !== undefined && typeof e.description !== 'string')) throw new StreamError('each setErrs entry is {err, description}');
    setErrs[jti] = { err: e.err.slice(0, 64), ...(typeof e.description === 'string' ? { description: e.description.slice(0, 400) } : {}) };
  }
  if (o.returnImmediately !== undefined && typeof o.returnImmediately !== 'boolean') throw new StreamError('returnImmediately is a boolean');
  const max = o.maxEvents ?? defaultPollEvents;
  if (!Number.isInteger(max) || (max as number) < 0 || (max as number) > maxPollEvents) throw new StreamError(`maxEvents is an integer from 0 to ${maxPollEvents}`);
  return { ack: ack as string[], setErrs, maxEvents: max as number };
}

export async function poll(ctx: Pick<Context, 'storage' | 'clock'>, stream: Stream, request: PollRequest): Promise<{ sets: Record<string, string>; moreAvailable: boolean }> {
  const now = ctx.clock.now();
  return ctx.storage.db.transaction().execute(async (trx) => {
    if (request.ack.length > 0) {
      await trx.updateTable('ssf_outbox').set({ status: 'acknowledged', settled_at: now }).where('stream_id', '=', stream.streamId).where('jti', 'in', request.ack).where('status', '=', 'pending').execute();
    }
    for (const [jti, error] of Object.entries(request.setErrs)) {
      await trx
        .updateTable('ssf_outbox')
        .set({ status: 'failed', settled_at: now, last_error: `${error.err}${error.description ? `: ${error.description}` : ''}`.replace(/\p{Cc}/gu, ' ') })
        .where('stream_id', '=', stream.streamId)
        .where('jti', '=', jti)
        .where('status', '=', 'pending')
        .execute();
    }
    if (stream.status !== 'enabled' || request.maxEvents === 0) return { sets: {}, moreAvailable: false };
    const rows = await trx
      .selectFrom('ssf_outbox')
      .select(['jti', 'set_jwt'])
      .where('stream_id', '=', stream.streamId)
      .where('status', '=', 'pending')
      .orderBy('created_at')
      .orderBy('jti')
      .limit(request.maxEvents + 1)
      .execute();
    const page = rows.slice(0, request.maxEvents);
    return { sets: Object.fromEntries(page.map((r) => [r.jti, r.set_jwt])), moreAvailable: rows.length > request.maxEvents };
  });
}
