import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Config } from '../../config.ts';
import { checkUrl, FetchError } from '../../federation/fetch.ts';
import { open, seal } from '../../keys/sealed-box.ts';
import type { Database } from '../../storage/schema.ts';
import { readSubjectId, subjectKeys, supportedEventTypes, type SubjectId } from './event-types.ts';

/**
 * Event streams (SSF 1.0 §8.1): each belongs to the client that made it — the receiver, and the
 * `aud` of its SETs — and nobody else sees it. The rules of a stream's configuration:
 * - `delivery.method` is `urn:ietf:rfc:8935` (push: `endpoint_url` required, https — or http to
 *   loopback where private networks are allowed —, `authorization_header` optional, kept sealed)
 *   or `urn:ietf:rfc:8936` (poll: Clearance gives the `endpoint_url`);
 * - `events_requested`: event type URIs; `events_delivered` is what Clearance supports of them;
 * - `description`: at most 256 printable characters;
 * - a client holds at most `maxStreamsPerClient` streams.
 * A problem is a StreamError naming the member (400 `invalid_request` at the API).
 */
export const pushMethod = 'urn:ietf:rfc:8935';
export const pollMethod = 'urn:ietf:rfc:8936';
export const maxStreamsPerClient = 10;
export type StreamStatus = 'enabled' | 'paused' | 'disabled';
export const streamStatuses: readonly StreamStatus[] = ['enabled', 'paused', 'disabled'];

export interface Stream {
  streamId: string;
  clientId: string;
  method: 'push' | 'poll';
  endpointUrl?: string;
  /** Sealed; opened only to send. */
  authorizationSealed?: string;
  eventsRequested: string[];
  description?: string;
  status: StreamStatus;
  statusReason?: string;
  defaultSubjects: 'ALL' | 'NONE';
  createdAt: number;
}

export class StreamError extends Error {
  override name = 'StreamError';
  readonly status: number;
  constructor(message: string, status = 400) {
    super(message);
    this.status = status;
  }
}

/** The poll endpoint of a stream (RFC 8936 §2). */
export function pollUrl(issuer: string, streamId: string): string {
  return `${issuer}/ssf/poll/${streamId}`;
}

/** The stream configuration as the API shows it (SSF 1.0 §8.1.1). The authorization header is never shown. */
export function streamView(stream: Stream, issuer: string): Record<string, unknown> {
  return {
    stream_id: stream.streamId,
    iss: issuer,
    aud: stream.clientId,
    delivery: { method: stream.method === 'push' ? pushMethod : pollMethod, endpoint_url: stream.method === 'push' ? stream.endpointUrl : pollUrl(issuer, stream.streamId) },
    events_supported: supportedEventTypes,
    events_requested: stream.eventsRequested,
    events_delivered: deliveredTypes(stream),
    ...(stream.description !== undefined ? { description: stream.description } : {}),
  };
}

/** The requested types Clearance sends. */
export function deliveredTypes(stream: Pick<Stream, 'eventsRequested'>): string[] {
  return stream.eventsRequested.filter((t) => supportedEventTypes.includes(t));
}

const sealBinding = (streamId: string) => `ssf_streams:${streamId}:authorization_header`;
const printable = /^[^\p{Cc}]*$/u;

/** The writable members of a configuration (create, replace, update), checked. */
export function readStreamConfig(body: unknown, config: Pick<Config, 'ssfAllowPrivateNetwork'>, partial: boolean): Partial<Pick<Stream, 'method' | 'endpointUrl' | 'eventsRequested' | 'description'>> & { authorization?: string | null } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new StreamError('the body is a JSON object');
  const o = body as Record<string, unknown>;
  const known = ['stream_id', 'iss', 'aud', 'delivery', 'events_requested', 'events_supported', 'events_delivered', 'description', 'min_verification_interval', 'inactivity_timeout'];
  const unknown = Object.keys(o).find((k) => !known.includes(k));
  if (unknown !== undefined) throw new StreamError(`unknown member ${unknown}`);
  const out: ReturnType<typeof readStreamConfig> = {};
  if (o.delivery !== undefined || !partial) {
    const delivery = o.delivery;
    if (typeof delivery !== 'object' || delivery === null || Array.isArray(delivery)) throw new StreamError('delivery is required: an object with method (urn:ietf:rfc:8935 push or urn:ietf:rfc:8936 poll)');
    const d = delivery as Record<string, unknown>;
    if (d.method === pushMethod) {
      if (typeof d.endpoint_url !== 'string') throw new StreamError('delivery.endpoint_url is required for push delivery');
      try {
        checkUrl(d.endpoint_url, { allowPrivateNetwork: config.ssfAllowPrivateNetwork });
      } catch (error) {
        throw new StreamError(`delivery.endpoint_url: ${(error as FetchError).message}`);
      }
      if (d.endpoint_url.length > 2048) throw new StreamError('delivery.endpoint_url is longer than 2048 characters');
      out.method = 'push';
      out.endpointUrl = d.endpoint_url;
      if (d.authorization_header !== undefined) {
        if (typeof d.authorization_header !== 'string' || d.authorization_header.length === 0 || d.authorization_header.length > 4096 || !printable.test(d.authorization_header)) {
          throw new StreamError('delivery.authorization_header is a header value of 1 to 4096 printable characters');
        }
        out.authorization = d.authorization_header;
      } else out.authorization = null;
    } else if (d.method === pollMethod) {
      if (d.endpoint_url !== undefined) throw new StreamError('delivery.endpoint_url of a poll stream is given by Clearance; leave it out');
      out.method = 'poll';
      out.authorization = null;
    } else {
      throw new StreamError('delivery.method must be urn:ietf:rfc:8935 (push) or urn:ietf:rfc:8936 (poll)');
    }
  }
  if (o.events_requested !== undefined || !partial) {
    const events = o.events_requested ?? [];
    if (!Array.isArray(events) || events.length > 50 || events.some((e) => typeof e !== 'string' || e.length === 0 || e.length > 256)) {
      throw new StreamError('events_requested is an array of at most 50 event type URIs');
    }
    out.eventsRequested = [...new Set(events as string[])];
  }
  if (o.description !== undefined) {
    if (typeof o.description !== 'string' || o.description.length > 256 || !printable.test(o.description)) throw new StreamError('description is at most 256 printable characters');
    out.description = o.description;
  }
  return out;
}

function streamFromRow(row: Database['ssf_streams']): Stream {
  return {
    streamId: row.stream_id,
    clientId: row.client_id,
    method: row.delivery_method as Stream['method'],
    ...(row.endpoint_url !== null ? { endpointUrl: row.endpoint_url } : {}),
    ...(row.authorization_header !== null ? { authorizationSealed: row.authorization_header } : {}),
    eventsRequested: JSON.parse(row.events_requested) as string[],
    ...(row.description !== null ? { description: row.description } : {}),
    status: row.status as StreamStatus,
    ...(row.status_reason !== null ? { statusReason: row.status_reason } : {}),
    defaultSubjects: row.default_subjects as Stream['defaultSubjects'],
    createdAt: Number(row.created_at),
  };
}

/** The Authorization header value a push stream's receiver asked for, or undefined. */
export function authorizationOf(masterKey: Buffer, stream: Stream): string | undefined {
  return stream.authorizationSealed === undefined ? undefined : open(masterKey, stream.authorizationSealed, sealBinding(stream.streamId)).toString('utf8');
}

export class StreamStore {
  readonly #db: Kysely<Database>;
  readonly #masterKey: Buffer;
  constructor(db: Kysely<Database>, masterKey: Buffer) {
    this.#db = db;
    this.#masterKey = masterKey;
  }

  async create(clientId: string, input: ReturnType<typeof readStreamConfig>, defaults: { defaultSubjects: 'ALL' | 'NONE'; now: number }): Promise<Stream> {
    const count = await this.#db.selectFrom('ssf_streams').select(({ fn }) => fn.countAll().as('n')).where('client_id', '=', clientId).executeTakeFirst();
    if (Number(count?.n ?? 0) >= maxStreamsPerClient) throw new StreamError(`a receiver holds at most ${maxStreamsPerClient} streams; delete one first`, 409);
    const streamId = randomUUID();
    await this.#db
      .insertInto('ssf_streams')
      .values({
        stream_id: streamId,
        client_id: clientId,
        delivery_method: input.method!,
        endpoint_url: input.endpointUrl ?? null,
        authorization_header: input.authorization ? seal(this.#masterKey, Buffer.from(input.authorization, 'utf8'), sealBinding(streamId)) : null,
        events_requested: JSON.stringify(input.eventsRequested ?? []),
        description: input.description ?? null,
        status: 'enabled',
        status_reason: null,
        default_subjects: defaults.defaultSubjects,
        created_at: defaults.now,
        updated_at: defaults.now,
      })
      .execute();
    return (await this.get(clientId, streamId))!;
  }

  /** The client's stream, or undefined — another client's stream is undefined too. */
  async get(clientId: string, streamId: string): Promise<Stream | undefined> {
    const row = await this.#db.selectFrom('ssf_streams').selectAll().where('stream_id', '=', streamId).where('client_id', '=', clientId).executeTakeFirst();
    return row ? streamFromRow(row) : undefined;
  }

  async list(clientId: string): Promise<Stream[]> {
    const rows = await this.#db.selectFrom('ssf_streams').selectAll().where('client_id', '=', clientId).orderBy('created_at').orderBy('stream_id').execute();
    return rows.map(streamFromRow);
  }

  /** Every stream that is not disabled: the transmitter's fan-out. */
  async active(): Promise<Stream[]> {
    const rows = await this.#db.selectFrom('ssf_streams').selectAll().where('status', '!=', 'disabled').execute();
    return rows.map(streamFromRow);
  }

  /** Changes what `input` names (PATCH), or everything writable (PUT: `replace`). */
  async update(clientId: string, streamId: string, input: ReturnType<typeof readStreamConfig>, now: number): Promise<Stream> {
    const current = await this.get(clientId, streamId);
    if (!current) throw new StreamError('no such stream', 404);
    const changes: Partial<Database['ssf_streams']> = { updated_at: now };
    if (input.method !== undefined) {
      changes.delivery_method = input.method;
      changes.endpoint_url = input.endpointUrl ?? null;
      changes.authorization_header = input.authorization ? seal(this.#masterKey, Buffer.from(input.authorization, 'utf8'), sealBinding(streamId)) : null;
    }
    if (input.eventsRequested !== undefined) changes.events_requested = JSON.stringify(input.eventsRequested);
    if (input.description !== undefined) changes.description = input.description;
    await this.#db.updateTable('ssf_streams').set(changes).where('stream_id', '=', streamId).where('client_id', '=', clientId).execute();
    return (await this.get(clientId, streamId))!;
  }

  /** Deletes the stream, its subjects and its undelivered SETs. */
  async delete(clientId: string, streamId: string): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      const deleted = await trx.deleteFrom('ssf_streams').where('stream_id', '=', streamId).where('client_id', '=', clientId).executeTakeFirst();
      if (Number(deleted.numDeletedRows) !== 1) return false;
      await trx.deleteFrom('ssf_subjects').where('stream_id', '=', streamId).execute();
      await trx.deleteFrom('ssf_outbox').where('stream_id', '=', streamId).execute();
      return true;
    });
  }

  /** SSF 1.0 §8.1.2.2: `disabled` drops what waits (the transmitter holds nothing for a disabled stream). */
  async setStatus(clientId: string, streamId: string, status: StreamStatus, reason: string | undefined, now: number): Promise<Stream> {
    const updated = await this.#db.transaction().execute(async (trx) => {
      const result = await trx.updateTable('ssf_streams').set({ status, status_reason: reason ?? null, updated_at: now }).where('stream_id', '=', streamId).where('client_id', '=', clientId).executeTakeFirst();
      if (Number(result.numUpdatedRows) !== 1) return false;
      if (status === 'disabled') await trx.deleteFrom('ssf_outbox').where('stream_id', '=', streamId).where('status', '=', 'pending').execute();
      return true;
    });
    if (!updated) throw new StreamError('no such stream', 404);
    return (await this.get(clientId, streamId))!;
  }

  /** SSF 1.0 §8.1.3: a subject added (`included`) or removed. */
  async setSubject(clientId: string, streamId: string, subject: unknown, included: boolean, now: number): Promise<void> {
    if (!(await this.get(clientId, streamId))) throw new StreamError('no such stream', 404);
    const id = readSubjectId(subject);
    if (!id) throw new StreamError('subject is a subject identifier of format iss_sub, opaque or email');
    const [key] = subjectKeys(id);
    await this.#db
      .insertInto('ssf_subjects')
      .values({ stream_id: streamId, subject_key: key!, subject: JSON.stringify(id), included: included ? 1 : 0, updated_at: now })
      .onConflict((oc) => oc.columns(['stream_id', 'subject_key']).doUpdateSet({ included: included ? 1 : 0, updated_at: now, subject: JSON.stringify(id) }))
      .execute();
  }

  /** The subject keys each stream added or removed (only streams that have any). */
  async subjectRules(streamIds: readonly string[]): Promise<Map<string, Map<string, boolean>>> {
    const rules = new Map<string, Map<string, boolean>>();
    if (streamIds.length === 0) return rules;
    const rows = await this.#db.selectFrom('ssf_subjects').select(['stream_id', 'subject_key', 'included']).where('stream_id', 'in', [...streamIds]).execute();
    for (const row of rows) {
      if (!rules.has(row.stream_id)) rules.set(row.stream_id, new Map());
      rules.get(row.stream_id)!.set(row.subject_key, Number(row.included) === 1);
    }
    return rules;
  }
}

/** Whether a stream receives an event about `subject`: an explicit add or remove wins, else its default. */
export function streamWants(stream: Pick<Stream, 'defaultSubjects'>, rules: Map<string, boolean> | undefined, subject: SubjectId): boolean {
  let verdict: boolean | undefined;
  for (const key of subjectKeys(subject)) {
    const rule = rules?.get(key);
    if (rule === false) return false; // a removed subject is never sent, whatever else matches
    if (rule === true) verdict = true;
  }
  return verdict ?? stream.defaultSubjects === 'ALL';
}
