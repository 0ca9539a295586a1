import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { epochSeconds, withinSpan } from '../../clock.ts';
import type { Context } from '../../context.ts';
import { isPostgres } from '../../audit/dialect.ts';
import { parseStoredEvent } from '../../audit/event-format.ts';
import type { Resolver } from '../../federation/fetch.ts';
import type { Database } from '../../storage/schema.ts';
import { backoffMs } from '../delivery.ts';
import { postForStatus } from '../post.ts';
import { securityEventsOf, ssfEventTypes, type SecurityEvent, type SubjectId } from './event-types.ts';
import { subjectForClient, type PairwiseClient } from '../../identity/pairwise.ts';
import { ssfManageScope } from '../../resource-servers/builtins.ts';
import { authorizationOf, deliveredTypes, StreamStore, streamWants, type Stream } from './streams.ts';

/**
 * The Shared Signals transmitter (SSF 1.0, docs/signals.md). Its source is the SEALED audit log:
 * every SET stands for an event that is in the tamper-evident log, and a sealed prefix is complete
 * (no transaction still to commit below it), so reading it in order loses nothing, on any number
 * of nodes. One pass:
 * 1. tail: the events sealed after the cursor (`ssf_cursor`), at most `batch`, are mapped to
 *    security events (./event-types.ts); for each stream not disabled that asked for the type,
 *    existed when the event happened, whose client is still a receiver, and wants its subject
 *    (./streams.ts `streamWants`), a SET is signed (RFC 8417, typ `secevent+jwt`, the issuer's
 *    signing key) and put in the stream's outbox
 *    — all in one transaction that moves the cursor only from where this pass read it, so two
 *    nodes never queue an event twice;
 * 2. push (RFC 8935): each due SET of an enabled push stream is taken by one conditional update
 *    (a lease), POSTed as `application/secevent+jwt` with the receiver's Authorization header, and
 *    recorded: 2xx delivered; 400 (§2.3: the receiver refuses this SET) failed for good, its `err`
 *    kept; anything else retried with an exponential back-off until `ssfMaxDeliveryAgeSeconds`.
 *    A paused stream's SETs wait; a disabled stream gets none; a SET for a client that stopped
 *    being a receiver since it was queued (disabled, or no longer allowed ssf:manage) fails unsent.
 * Poll (RFC 8936) streams are served by the endpoint (./poll.ts) from the same outbox.
 * A pass runs every `ssfIntervalMs`, and at once when `kick` is called (after the sealer sealed).
 */
export interface TransmitterOptions {
  /** Events read per pass; default 500. */
  batch?: number;
  /** Retry back-off of push: first delay, default 1 s; longest, default 5 min. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Per push request; default 5 s. */
  timeoutMs?: number;
  /** Tests resolve names to chosen addresses. */
  resolve?: Resolver;
}

const cursorName = 'sealed';
const idleAdvanceMs = 10_000;
const leaseMs = 30_000;

/** The seq of the last sealed event, or undefined when nothing is sealed. */
async function sealedHorizon(db: Kysely<Database>): Promise<number | undefined> {
  const row = await db.selectFrom('audit_leaves').select('event_seq').orderBy('leaf_index', 'desc').limit(1).executeTakeFirst();
  return row ? Number(row.event_seq) : undefined;
}

/** Signs one SET for a stream. */
export async function signSet(ctx: Pick<Context, 'keys' | 'config' | 'clock'>, stream: Pick<Stream, 'clientId'>, event: { type: string; subject: SubjectId; payload: Record<string, unknown>; txn?: string }): Promise<{ jti: string; jwt: string }> {
  const jti = randomUUID();
  const claims = {
    iss: ctx.config.issuer,
    jti,
    iat: epochSeconds(ctx.clock),
    aud: stream.clientId,
    ...(event.txn !== undefined ? { txn: event.txn } : {}),
    sub_id: event.subject,
    events: { [event.type]: event.payload },
  };
  return { jti, jwt: await ctx.keys.signJwt({ typ: 'secevent+jwt' }, claims) };
}

/** Step 1. How many SETs were queued and whether sealed events remain past this batch; undefined when another node moved the cursor first. */
export async function tailSealedLog(ctx: Context, streams: StreamStore, options: TransmitterOptions = {}, idle?: { lastAdvance: number }): Promise<{ queued: number; more: boolean } | undefined> {
  const db = ctx.storage.db;
  let active = await streams.active();
  // No stream: nothing to send, so the cursor need only keep up now and then (`idle`: at most every
  // 10 s), not write on every pass while tokens are being issued.
  if (active.length === 0 && idle) {
    if (withinSpan(ctx.clock.now(), idle.lastAdvance, idleAdvanceMs)) return { queued: 0, more: false };
    idle.lastAdvance = ctx.clock.now();
  }
  const horizon = await sealedHorizon(db);
  if (horizon === undefined) return { queued: 0, more: false };
  let cursor = await db.selectFrom('ssf_cursor').select('last_seq').where('name', '=', cursorName).executeTakeFirst();
  if (!cursor) {
    // The very first pass reads from the start; with no stream yet it jumps to the horizon at once
    // (below), and a stream only ever gets events that happened after it was made.
    await db.insertInto('ssf_cursor').values({ name: cursorName, last_seq: 0 }).onConflict((oc) => oc.column('name').doNothing()).execute();
    cursor = { last_seq: 0 };
  }
  const from = Number(cursor.last_seq);
  if (horizon <= from) return { queued: 0, more: false };
  // Read after the horizon: a stream made since the first read gets the events sealed after it.
  if (active.length === 0) active = await streams.active();
  const rows = await db
    .selectFrom('audit_events')
    .select(['seq', 'event'])
    .where('seq', '>', from)
    .where('seq', '<=', horizon)
    .orderBy('seq')
    .limit(active.length === 0 ? 1 : (options.batch ?? 500))
    .execute();
  const to = active.length === 0 ? horizon : Number(rows.at(-1)?.seq ?? horizon);
  const queued: Database['ssf_outbox'][] = [];
  if (active.length > 0) {
    const rules = await streams.subjectRules(active.map((s) => s.streamId));
    const receivers = new Map<string, Promise<PairwiseClient | undefined>>();
    const receiverOf = (clientId: string) => receivers.get(clientId) ?? receivers.set(clientId, receiverInService(ctx, clientId)).get(clientId)!;
    const now = ctx.clock.now();
    for (const row of rows) {
      const stored = parseStoredEvent(row.event);
      for (const security of securityEventsOf(stored, ctx.config.issuer)) {
        for (const stream of active) {
          if (stream.createdAt > stored.time || !deliveredTypes(stream).includes(security.type)) continue;
          // The subject as this receiver knows it (a pairwise client's pseudonym), matched against
          // the subjects it added or removed in that same form.
          const event = forReceiver(ctx, await receiverOf(stream.clientId), security);
          if (event === undefined) continue;
          if (!streamWants(stream, rules.get(stream.streamId), event.subject)) continue;
          queued.push(await outboxRow(ctx, stream, event, now));
        }
      }
    }
  }
  return db.transaction().execute(async (trx) => {
    const moved = await trx.updateTable('ssf_cursor').set({ last_seq: to }).where('name', '=', cursorName).where('last_seq', '=', from).executeTakeFirst();
    if (Number(moved.numUpdatedRows) !== 1) return undefined;
    for (let i = 0; i < queued.length; i += 200) await trx.insertInto('ssf_outbox').values(queued.slice(i, i + 200)).execute();
    return { queued: queued.length, more: to < horizon };
  });
}

/**
 * The receiver's registration while it is one — a client in service allowed `ssf:manage`
 * (docs/signals.md "Receivers and streams") — else undefined, and so no SET (forReceiver). A client
 * apply's prune disabled (docs/lifecycle.md) has its tokens ended at once, and one whose scope no
 * longer allows ssf:manage could not make its streams today: neither is told anything more about anyone.
 */
async function receiverInService(ctx: Pick<Context, 'clients'>, clientId: string): Promise<PairwiseClient | undefined> {
  const client = await ctx.clients.get(clientId);
  if (!client || client.disabledAt !== null) return undefined;
  return (client.metadata.scope?.split(' ') ?? []).includes(ssfManageScope) ? client.metadata : undefined;
}

/** Event types whose subject and payload name local persons as opaque ids (an emergency account, who asked for it). */
const localIdEvents: ReadonlySet<string> = new Set([ssfEventTypes.breakGlassActivated, ssfEventTypes.breakGlassEnded]);

/**
 * A security event as `receiver` may see it (OIDC Core §8.1; docs/privacy.md "Regions"). A public
 * client's stream gets it as it is. A pairwise client is never told a local id: every person
 * (`iss_sub` of this issuer, alone or in a complex subject) becomes the pairwise subject that
 * client's ID tokens carry; a mandate's `grantee` (a local id when a person) is left out; and an
 * event that names persons only by local id (break-glass) is not sent to it at all — nor is any
 * event when the receiver is no longer registered or its pseudonym cannot be computed (fail closed).
 */
export function forReceiver<E extends { type: string; subject: SubjectId; payload: Record<string, unknown> }>(ctx: Pick<Context, 'identity' | 'config'>, receiver: PairwiseClient | undefined, event: E): E | undefined {
  if (receiver === undefined) return undefined;
  if (receiver.subject_type !== 'pairwise') return event;
  if (localIdEvents.has(event.type)) return undefined;
  const map = (subject: SubjectId): SubjectId => {
    switch (subject.format) {
      case 'iss_sub':
        return subject.iss === ctx.config.issuer ? { ...subject, sub: subjectForClient(ctx, receiver, subject.sub) } : subject;
      case 'complex': {
        const members = (['user', 'session', 'application', 'tenant'] as const).flatMap((k) => (subject[k] ? [[k, map(subject[k])] as const] : []));
        return { format: 'complex', ...Object.fromEntries(members) };
      }
      default:
        return subject;
    }
  };
  try {
    const { grantee: _grantee, ...payload } = event.payload;
    return { ...event, subject: map(event.subject), payload };
  } catch {
    return undefined;
  }
}

async function outboxRow(ctx: Context, stream: Stream, event: SecurityEvent | { type: string; subject: SubjectId; payload: Record<string, unknown> }, now: number): Promise<Database['ssf_outbox']> {
  const { jti, jwt } = await signSet(ctx, stream, event);
  return { jti, stream_id: stream.streamId, event_type: event.type, set_jwt: jwt, status: 'pending', attempts: 0, next_attempt_at: now, lease_until: null, last_status: null, last_error: null, created_at: now, settled_at: null };
}

/**
 * How many verification events a stream may ask for (SSF 1.0 §8.1.4.2: the transmitter MAY limit
 * them): `quota` in any `windowSeconds`. Each is a signed SET and an outbox row (kept a day after it
 * settles), so an unlimited receiver could fill the outbox; a receiver checking its stream needs a
 * few a minute at most.
 */
export const verificationLimit = { quota: 5, windowSeconds: 60 } as const;

/** A queued verification's jti, or the refusal of one over `verificationLimit`. */
export type VerificationQueued = { queued: true; jti: string } | { queued: false; retryAfterSeconds: number };

/**
 * SSF 1.0 §8.1.4.2: the verification event a receiver asked for, queued at once (whatever it
 * requested) — unless the stream already asked for `verificationLimit.quota` in the window. The
 * count is of the stream's verification SETs in the outbox, so it holds across nodes; the check and
 * the insert are one transaction, the stream's row locked on PostgreSQL (SQLite writes one at a
 * time), so concurrent requests cannot all pass.
 */
export async function queueVerification(ctx: Context, stream: Stream, state: string | undefined): Promise<VerificationQueued> {
  return ctx.storage.db.transaction().execute(async (trx) => {
    if (isPostgres(trx)) await trx.selectFrom('ssf_streams').select('stream_id').where('stream_id', '=', stream.streamId).forUpdate().execute();
    const now = ctx.clock.now();
    const windowMs = verificationLimit.windowSeconds * 1000;
    const recent = await trx
      .selectFrom('ssf_outbox')
      .select('created_at')
      .where('stream_id', '=', stream.streamId)
      .where('event_type', '=', ssfEventTypes.verification)
      .where('created_at', '>', now - windowMs)
      .orderBy('created_at', 'desc')
      .limit(verificationLimit.quota)
      .execute();
    if (recent.length >= verificationLimit.quota) {
      // The window has room again when the oldest of the last `quota` leaves it.
      const oldest = Number(recent[recent.length - 1]!.created_at);
      return { queued: false, retryAfterSeconds: Math.max(1, Math.ceil((oldest + windowMs - now) / 1000)) };
    }
    const row = await outboxRow(ctx, stream, { type: ssfEventTypes.verification, subject: { format: 'opaque', id: stream.streamId }, payload: state !== undefined ? { state } : {} }, now);
    await trx.insertInto('ssf_outbox').values(row).execute();
    return { queued: true, jti: row.jti };
  });
}

export interface PushOutcome {
  jti: string;
  status: 'delivered' | 'pending' | 'failed';
  httpStatus?: number;
  error?: string;
}

/** Step 2: one pass of push delivery; the outcomes this node recorded. */
export async function pushDue(ctx: Context, streams: StreamStore, options: TransmitterOptions = {}): Promise<PushOutcome[]> {
  const db = ctx.storage.db;
  const now = ctx.clock.now();
  const due = await db
    .selectFrom('ssf_outbox as o')
    .innerJoin('ssf_streams as s', 's.stream_id', 'o.stream_id')
    .select(['o.jti', 'o.stream_id', 'o.set_jwt', 'o.attempts', 'o.created_at', 's.client_id'])
    .where('o.status', '=', 'pending')
    .where('o.next_attempt_at', '<=', now)
    .where((eb) => eb.or([eb('o.lease_until', 'is', null), eb('o.lease_until', '<=', now)]))
    .where('s.delivery_method', '=', 'push')
    .where('s.status', '=', 'enabled')
    .orderBy('o.created_at')
    .limit(50)
    .execute();
  const outcomes = await Promise.all(
    due.map(async (row) => {
      const lease = now + leaseMs;
      const won = await db
        .updateTable('ssf_outbox')
        .set({ lease_until: lease })
        .where('jti', '=', row.jti)
        .where('status', '=', 'pending')
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now)]))
        .executeTakeFirst();
      if (Number(won.numUpdatedRows) !== 1) return undefined;
      const stream = await streams.get(row.client_id, row.stream_id);
      if (!stream) return undefined;
      const set = { jti: row.jti, jwt: row.set_jwt, attempts: Number(row.attempts), createdAt: Number(row.created_at), lease };
      // A SET that waited for a client that has since stopped being a receiver is never sent.
      if ((await receiverInService(ctx, row.client_id)) === undefined) return settleUnsent(ctx, stream, set, 'the receiver is no longer a client in service allowed ssf:manage');
      return push(ctx, stream, set, options);
    }),
  );
  return outcomes.filter((o): o is PushOutcome => o !== undefined);
}

async function push(ctx: Context, stream: Stream, set: { jti: string; jwt: string; attempts: number; createdAt: number; lease: number }, options: TransmitterOptions): Promise<PushOutcome | undefined> {
  let outcome: { status?: number; error?: string; permanent?: boolean };
  try {
    const authorization = authorizationOf(ctx.identity.factorKeys.master, stream);
    const answer = await postForStatus(stream.endpointUrl!, set.jwt, { 'content-type': 'application/secevent+jwt', accept: 'application/json', ...(authorization !== undefined ? { authorization } : {}) }, {
      allowPrivateNetwork: ctx.config.ssfAllowPrivateNetwork,
      timeoutMs: options.timeoutMs ?? 5000,
      ...(options.resolve ? { resolve: options.resolve } : {}),
    });
    if (answer.status >= 200 && answer.status < 300) outcome = { status: answer.status };
    // RFC 8935 §2.3: 400 with {err, description} — the receiver will never accept this SET.
    else if (answer.status === 400) outcome = { status: 400, error: receiverError(answer.body), permanent: true };
    else outcome = { status: answer.status, error: `HTTP ${answer.status}` };
  } catch (error) {
    outcome = { error: (error as Error).message.slice(0, 500) };
  }
  const now = ctx.clock.now();
  const attempts = set.attempts + 1;
  const delivered = outcome.error === undefined;
  const tooOld = now - set.createdAt >= ctx.config.ssfMaxDeliveryAgeSeconds * 1000;
  const status: PushOutcome['status'] = delivered ? 'delivered' : outcome.permanent || tooOld ? 'failed' : 'pending';
  const result = await ctx.storage.db
    .updateTable('ssf_outbox')
    .set({
      status,
      attempts,
      next_attempt_at: status === 'pending' ? now + backoffMs(attempts, { baseDelayMs: options.baseDelayMs ?? 1000, maxDelayMs: options.maxDelayMs ?? 300_000 }) : now,
      lease_until: null,
      last_status: outcome.status ?? null,
      last_error: outcome.error ?? null,
      settled_at: status === 'pending' ? null : now,
    })
    .where('jti', '=', set.jti)
    .where('lease_until', '=', set.lease)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) !== 1) return undefined;
  if (!delivered) ctx.log.warn({ stream: stream.streamId, jti: set.jti, attempts, status, error: outcome.error }, 'SET push delivery failed');
  return { jti: set.jti, status, ...(outcome.status !== undefined ? { httpStatus: outcome.status } : {}), ...(outcome.error !== undefined ? { error: outcome.error } : {}) };
}

/** A leased SET failed for good without being sent. */
async function settleUnsent(ctx: Context, stream: Stream, set: { jti: string; lease: number }, error: string): Promise<PushOutcome | undefined> {
  const now = ctx.clock.now();
  const result = await ctx.storage.db
    .updateTable('ssf_outbox')
    .set({ status: 'failed', lease_until: null, last_status: null, last_error: error, settled_at: now })
    .where('jti', '=', set.jti)
    .where('lease_until', '=', set.lease)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) !== 1) return undefined;
  ctx.log.warn({ stream: stream.streamId, jti: set.jti, error }, 'SET not pushed');
  return { jti: set.jti, status: 'failed', error };
}

/** RFC 8935 §2.3's `err` (and description) from a 400 body, short and printable. */
function receiverError(body: string): string {
  try {
    const parsed = JSON.parse(body) as { err?: unknown; description?: unknown };
    if (typeof parsed.err === 'string') return `${parsed.err}${typeof parsed.description === 'string' ? `: ${parsed.description}` : ''}`.replace(/\p{Cc}/gu, ' ').slice(0, 500);
  } catch {
    // not JSON: the status says it
  }
  return 'HTTP 400';
}

/** Settled SETs are kept a day (for the stream's status and tests), then removed. */
export async function pruneSettled(db: Kysely<Database>, now: number): Promise<void> {
  await db.deleteFrom('ssf_outbox').where('status', '!=', 'pending').where('settled_at', '<', now - 86_400_000).execute();
}

export interface Transmitter {
  /** Runs a pass soon (after the one running): new events were sealed, or a verification queued. */
  kick(): void;
  /** Runs one pass now (after the one running, if any). */
  runOnce(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the transmitter's passes (the primary process of each node, src/server.ts). */
export function startTransmitter(ctx: Context, options: TransmitterOptions = {}): Transmitter {
  const streams = new StreamStore(ctx.storage.db, ctx.identity.factorKeys.master);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let queued = false;
  let lastPrune = 0;
  const idle = { lastAdvance: 0 };
  const pass = async () => {
    queued = false;
    try {
      // Until the tail is caught up (a burst larger than a batch), read on.
      for (let i = 0; i < 20 && !stopped; i++) {
        const tailed = await tailSealedLog(ctx, streams, options, idle);
        if (!tailed?.more) break;
      }
      await pushDue(ctx, streams, options);
      const now = ctx.clock.now();
      if (now - lastPrune > 3_600_000) {
        lastPrune = now;
        await pruneSettled(ctx.storage.db, now);
      }
    } catch (error) {
      ctx.log.error({ err: error }, 'the Shared Signals transmitter pass failed; retrying next pass');
    }
  };
  const runOnce = () => (running = running.then(pass));
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => void runOnce().finally(schedule), ctx.config.ssfIntervalMs);
    timer.unref();
  };
  schedule();
  return {
    kick() {
      if (stopped || queued) return;
      queued = true;
      void runOnce();
    },
    runOnce,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
