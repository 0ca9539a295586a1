/**
 * Personal data in the immutable log (issue 24 item 4; docs/privacy.md "Erasure"). The personal
 * fields of an event's details are encrypted when it is recorded, under a key of the person they
 * are about (./subject-keys.ts), so the event as stored and hashed — the Merkle leaf — carries only
 * their ciphertext: `details.personal = { ct, fields, iv, kid }`. Destroying the person's key
 * (./erase.ts) erases the fields from every event at once, and the log still verifies, because
 * verification hashes the stored bytes and never needs the key.
 *
 * This file is the pure part: which fields, whose they are, sealing and opening with node:crypto.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { isIP, isIPv4, SocketAddress } from 'node:net';
import { canonicalize } from '../jose/canonical-json.ts';
import type { AuditEvent, StoredAuditEvent } from './events.ts';

/**
 * The members of an event's `details` that hold personal data, and why. Each is encrypted at
 * record time; every other member stays in the clear (the facts of a decision are not personal:
 * ids, reasons, factors, scores). Add a field here when a component starts recording one.
 */
export const personalFields = {
  /** The network address a request came from (every sign-in, factor, refusal): an online identifier (GDPR Recital 30). */
  source_address: 'the request’s network address',
  /** A browser's User-Agent string: with the address, enough to single a person out. */
  user_agent: 'the browser’s User-Agent',
  /** An email address (upstream sign-in, provisioning). */
  email: 'an email address',
  /** A typed or stored username (none is recorded today for an unknown user: login.ts failureEvent). */
  username: 'a username',
  /** A person-chosen label (a passkey's name: "Anna's phone"), or a person's name. */
  name: 'a person’s name or a label they chose',
  /** A person's display, given and family names (upstream claims, SCIM). */
  display_name: 'a display name',
  given_name: 'a given name',
  family_name: 'a family name',
  /** A phone number (upstream claims, SCIM). */
  phone_number: 'a phone number',
  /** The person's identifier at their upstream identity provider: it links them across systems. */
  upstream_subject: 'the person’s identifier at an upstream identity provider',
} as const;

export type PersonalField = keyof typeof personalFields;

/** The member of `details` that holds the sealed fields; reserved: a component cannot record it. */
export const sealedMember = 'personal';

const personalFieldSet: ReadonlySet<string> = new Set(Object.keys(personalFields));
const fieldSet: ReadonlySet<string> = new Set([...personalFieldSet, sealedMember]);

/** What `details.personal` holds: the key's id, the nonce, ciphertext‖tag, and the names sealed (never their values). */
export interface SealedFields {
  kid: string;
  /** 96-bit GCM nonce, standard base64. */
  iv: string;
  /** AES-256-GCM ciphertext of the fields' canonical JSON, then the 128-bit tag, standard base64. */
  ct: string;
  /** The names of the sealed fields, sorted: a reader sees which facts were erased. */
  fields: string[];
}

/** A subject's key for writing: its id and its 32 bytes. */
export interface SubjectKey {
  kid: string;
  key: Buffer;
}

/**
 * True when `details` names a personal field (or the reserved member): one scan of its own
 * property names — all an event without personal data costs.
 */
export function hasPersonalFields(event: Pick<AuditEvent, 'details'>): boolean {
  const details = event.details;
  if (details === undefined) return false;
  for (const key in details) if (fieldSet.has(key) && details[key] !== undefined) return true;
  return false;
}

/**
 * The data subject whose key seals an event's personal fields: the event's `subject` when it is a
 * person, else its `actor`, else a pseudonym of the most identifying personal value it holds (a
 * failed sign-in of an unknown user names no one: its source address is still personal data). An
 * id equal to the event's `client` is the client's own, not a person's: it is skipped.
 */
export function dataSubjectOf(event: AuditEvent, pseudonymKey: Buffer): string {
  if (event.subject !== undefined && event.subject !== event.client) return event.subject;
  if (event.actor !== undefined && event.actor !== event.client) return event.actor;
  const details = event.details ?? {};
  for (const field of pseudonymOrder) {
    const value = details[field];
    if (typeof value === 'string' && value !== '') return pseudonymOf(pseudonymKey, field, value);
  }
  return pseudonymOf(pseudonymKey, 'unattributed', '');
}

/** Most identifying first: what names one person before what many may share. */
const pseudonymOrder: readonly PersonalField[] = ['email', 'username', 'upstream_subject', 'phone_number', 'source_address', 'user_agent', 'display_name', 'given_name', 'family_name', 'name'];

/**
 * The pseudonymous subject id of a value (`anon:` and a keyed hash): the same value always maps
 * to the same id, and the id says nothing without the master key. `clearance audit erase-subject
 * --address 203.0.113.7` computes it to erase what was recorded about an address nobody is named for.
 * A source address is hashed in its canonical form (canonicalAddress): the address as recorded
 * and as typed at erasure may be spelled differently and still name one subject.
 */
export function pseudonymOf(pseudonymKey: Buffer, field: string, value: string): string {
  const canonical = field === 'source_address' ? canonicalAddress(value) : value;
  // Hex, like the key ids and the standard base64 of the ciphertext: no run of random characters can
  // spell something the audit guard refuses (a reference token's `clr_at_` prefix needs an underscore).
  return `anon:${createHmac('sha256', pseudonymKey).update(`${field}\n${canonical}`).digest('hex').slice(0, 32)}`;
}

/**
 * One spelling per network address: an IPv4-mapped IPv6 address (`::ffff:203.0.113.7`, what a
 * dual-stack socket reports for an IPv4 peer) as its IPv4 address; any other IPv6 address in the
 * RFC 5952 §4 form — lower case, leading zeros dropped, the longest run of zero groups compressed
 * (node:net parses and prints it); a zone (`%eth0`) kept after it. Anything that is not an IP
 * address (a test's placeholder, a proxy's `unknown`) is kept as it is.
 */
export function canonicalAddress(address: string): string {
  const value = address.trim();
  const zoneAt = value.indexOf('%');
  const ip = zoneAt === -1 ? value : value.slice(0, zoneAt);
  const zone = zoneAt === -1 ? '' : value.slice(zoneAt);
  const family = isIP(ip);
  if (family === 0) return address;
  if (family === 4) return ip + zone;
  let canonical: string;
  try {
    canonical = new SocketAddress({ address: ip, family: 'ipv6' }).address;
  } catch {
    return address;
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(canonical);
  if (mapped && isIPv4(mapped[1]!)) return mapped[1]!;
  return canonical + zone;
}

/** The fields' associated data: the event id binds a ciphertext to its event, the names to its list. */
function associatedData(eventId: string, kid: string, fields: readonly string[]): Buffer {
  return Buffer.from(JSON.stringify(['clearance audit personal v1', eventId, kid, fields]), 'utf8');
}

/**
 * Replaces the personal fields of a stored event's details by their AES-256-GCM ciphertext under
 * `key` (a fresh 96-bit nonce each time), bound to the event id. Returns a new event; `stored` is
 * not changed. Throws TypeError when the details already hold the reserved member.
 */
export function sealPersonalFields(stored: StoredAuditEvent, key: SubjectKey): StoredAuditEvent {
  const details = stored.details!;
  if (details[sealedMember] !== undefined) throw new TypeError(`audit event details.${sealedMember} is reserved for sealed personal data`);
  const clear: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(details)) {
    if (value === undefined) continue;
    if (personalFieldSet.has(name)) clear[name] = value;
    else rest[name] = value;
  }
  const fields = Object.keys(clear).sort();
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key.key, iv);
  cipher.setAAD(associatedData(stored.id, key.kid, fields));
  const ct = Buffer.concat([cipher.update(canonicalize(clear), 'utf8'), cipher.final(), cipher.getAuthTag()]);
  const sealed: SealedFields = { kid: key.kid, iv: iv.toString('base64'), ct: ct.toString('base64'), fields };
  return { ...stored, details: { ...rest, [sealedMember]: sealed } };
}

/** The sealed fields of a stored event, or undefined when it has none (or a malformed member). */
export function sealedFieldsOf(event: Pick<StoredAuditEvent, 'details'>): SealedFields | undefined {
  const value = event.details?.[sealedMember] as Partial<SealedFields> | undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  if (typeof value.kid !== 'string' || typeof value.iv !== 'string' || typeof value.ct !== 'string' || !Array.isArray(value.fields)) return undefined;
  return value as SealedFields;
}

export class PersonalDataError extends Error {
  override name = 'PersonalDataError';
}

/** Opens an event's sealed fields with its subject's key; throws PersonalDataError when they do not open (wrong key, another event's ciphertext). */
export function openPersonalFields(event: Pick<StoredAuditEvent, 'id' | 'details'>, key: Buffer): Record<string, unknown> {
  const sealed = sealedFieldsOf(event);
  if (!sealed) throw new PersonalDataError('the event has no sealed personal fields');
  try {
    const bytes = Buffer.from(sealed.ct, 'base64');
    if (bytes.length < 16) throw new Error('short');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'));
    decipher.setAAD(associatedData(event.id, sealed.kid, sealed.fields));
    decipher.setAuthTag(bytes.subarray(bytes.length - 16));
    const clear = Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - 16)), decipher.final()]);
    return JSON.parse(clear.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new PersonalDataError(`the personal fields of event ${event.id} do not open with their key`);
  }
}

/**
 * What a reader is shown of an event's personal fields:
 * - `revealed`: the fields, for a reader whose role needs them, of an event of their own legal
 *   entities (docs/privacy.md "Who reads");
 * - `withheld`: their names only (this reader's role does not read them, or did not ask); with
 *   `reason: 'outside_scope'` when they asked but the event is not of their legal entities;
 * - `erased`: their names only: the subject's key was destroyed (`clearance audit erase-subject`).
 */
export type PersonalView =
  | { status: 'revealed'; subject: string; fields: Record<string, unknown> }
  | { status: 'withheld'; fields: string[]; reason?: 'outside_scope' }
  | { status: 'erased'; fields: string[]; erased_at: number };

/**
 * The event as it was recorded, for a reader allowed to see it: the revealed fields put back into
 * details in place of the sealed member. Any other view leaves the event as stored.
 */
export function withPersonalFields<E extends Pick<StoredAuditEvent, 'details'>>(event: E, view: PersonalView | undefined): E {
  if (view?.status !== 'revealed') return event;
  const { [sealedMember]: _sealed, ...rest } = event.details ?? {};
  return { ...event, details: { ...rest, ...view.fields } };
}
