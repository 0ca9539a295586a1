import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import { isSecretName } from '../audit/guard.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import { rowsOf, type Flight } from '../storage/flight.ts';
import { FixedQuery } from '../storage/fixed-query.ts';
import { join, type Validator } from '../validation.ts';
import { endPersonAccess, lifecycleEvent, rolesRemoved, type LifecycleAction } from './lifecycle.ts';
import { PasswordHashFormatError, hashPassword, maxPasswordLength, parsePasswordHash, verifyPassword } from './passwords.ts';
import { kycStatuses, readKycFields, type KycFields } from '../risk/kyc/record.ts';
import { credentialsHeld, heldCredentialsProblem } from '../lifecycle/credential-hold.ts';
import { guardedRolesAdded, guardedRolesHeld, roleConflict } from './roles.ts';
import { isPostgres } from '../audit/dialect.ts';
import { dateOfBirthPattern } from '../risk/screening/normalize.ts';

/** A person, as other components see them. The password hash never leaves this module's store. */
export interface User {
  /** Stable identifier (UUID): the `sub` of the person's tokens. */
  id: string;
  username: string;
  name: string | null;
  email: string | null;
  desks: string[];
  /** Roles the person holds (e.g. `trader`, `approver`): each may ask a minimum authentication level. */
  roles: string[];
  attributes: UserAttributes;
  status: UserStatus;
  /** Whether the account has a password (one without cannot log in with a password). */
  hasPassword: boolean;
  /** Epoch ms. */
  createdAt: number;
  updatedAt: number;
  lastLoginAt: number | null;
  /** When the account stopped being active (locked or disabled). */
  lockedAt: number | null;
  /** Why a locked account is locked: `failed_logins` (automatic) or `admin`; `admin` when disabled. */
  lockReason: 'failed_logins' | 'admin' | null;
  /**
   * Who last set the password, and when (`upsertUser`): `by` the subject of the admin-API token
   * that set it (an administrator's id, or a client's own id), `scim:<client>`, or null for the
   * operator (the CLI). Undefined when not known (nobody has set it since migration 0065).
   * Whoever set it can sign in as the person: they neither ask for nor approve a guarded role for
   * them (src/identity/role-grants.ts).
   */
  passwordSet?: PasswordSetter;
}

/** Who set a person's password, and when (epoch ms). */
export interface PasswordSetter {
  by: string | null;
  at: number;
}

/**
 * `active`; `locked`: cannot log in (after too many failed passwords, which leaves the person's
 * tokens working, or by an administrator, which ends them); `disabled`: cannot log in and holds no
 * working token, an administrator's decision (src/identity/lifecycle.ts).
 */
export type UserStatus = 'active' | 'locked' | 'disabled';
export const userStatuses = ['active', 'locked', 'disabled'] as const;

/**
 * Facts about the person that policy and consent may use: suitability (the product classes they
 * have been assessed suitable for), their date of birth (`date_of_birth`, YYYY-MM-DD: sanctions
 * screening tells namesakes apart by it, src/risk/screening), plus firm-specific facts as simple
 * values. Their KYC status is not an attribute: it is their KYC record (src/risk/kyc); an
 * `attributes.kyc_status` in a document is read as `kyc: { status }` (older documents keep working).
 */
export interface UserAttributes {
  suitability?: string[];
  [name: string]: string | number | boolean | string[] | undefined;
}

/** A validated `users[]` entry of an apply document (or a PUT /admin/users body). */
export interface UserEntry {
  username: string;
  /** A plain password, hashed when applied; never stored or echoed. */
  password?: string;
  /** A ready Argon2id PHC string (validated). */
  password_hash?: string;
  name?: string;
  email?: string;
  desks?: string[];
  roles?: string[];
  attributes?: UserAttributes;
  /**
   * Absent: keep the stored status (new users are active). `active` also clears a lockout;
   * `locked` (an administrator's lock) and `disabled` end the person's tokens.
   */
  status?: UserStatus;
  /**
   * The person's KYC record as the document declares it (src/risk/kyc/apply.ts; also from an
   * older document's `attributes.kyc_status`). Absent: the record stays as it is.
   */
  kyc?: KycFields;
}

export const userEntryFields = ['username', 'password', 'password_hash', 'name', 'email', 'desks', 'roles', 'attributes', 'status', 'kyc'] as const;

/** Shortest password accepted on apply (NIST SP 800-63B §3.1.1.2 allows no less than 8; we ask 12). */
export const minPasswordLength = 12;

export const usernamePattern = /^[a-z0-9][a-z0-9._@+-]{0,127}$/;
const deskPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const attributeNamePattern = /^[a-z][a-z0-9_]{0,63}$/;
const tokenPattern = /^[a-z][a-z0-9_:-]{0,63}$/;
export const rolePattern = /^[a-z][a-z0-9_-]{0,63}$/;
const emailPattern = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const controlCharacters = /[\u0000-\u001f\u007f]/;
const maxAttributesBytes = 4096;

/**
 * The form a username is stored and looked up in: trimmed and lowercased, so `Alice` and
 * `alice ` log in as `alice`. Usernames themselves are lowercase ASCII (see `readUserEntry`).
 */
export function normalizeUsername(input: string): string {
  return input.trim().toLowerCase();
}

/** Validates one `users[]` entry, recording every problem under `path`. */
export function readUserEntry(v: Validator, path: string, value: unknown): UserEntry | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, userEntryFields);
  const entry: UserEntry = {
    username: v.string(join(path, 'username'), o.username, {
      maxLength: 128,
      pattern: usernamePattern,
      patternMessage: 'must be lowercase letters, digits and . _ @ + - (starting with a letter or digit)',
    })!,
  };
  if (o.password !== undefined && o.password_hash !== undefined) {
    v.fail(join(path, 'password_hash'), 'give either password or password_hash, not both');
  } else if (o.password !== undefined) {
    if (typeof o.password !== 'string') v.fail(join(path, 'password'), 'must be a string');
    else if (o.password.length < minPasswordLength) v.fail(join(path, 'password'), `must be at least ${minPasswordLength} characters`);
    else if (o.password.length > maxPasswordLength) v.fail(join(path, 'password'), `must be at most ${maxPasswordLength} characters`);
    else if (normalizeUsername(o.password) === entry.username) v.fail(join(path, 'password'), 'must not be the username');
    else entry.password = o.password;
  } else if (o.password_hash !== undefined) {
    if (typeof o.password_hash !== 'string') v.fail(join(path, 'password_hash'), 'must be a string');
    else {
      try {
        parsePasswordHash(o.password_hash);
        entry.password_hash = o.password_hash;
      } catch (error) {
        if (!(error instanceof PasswordHashFormatError)) throw error;
        v.fail(join(path, 'password_hash'), error.message);
      }
    }
  }
  if (o.name !== undefined) entry.name = text(v, join(path, 'name'), o.name, 200);
  if (o.email !== undefined) {
    entry.email = v.string(join(path, 'email'), o.email, { maxLength: 254, pattern: emailPattern, patternMessage: 'must be an email address' });
  }
  if (o.desks !== undefined) {
    entry.desks = v.array(
      join(path, 'desks'),
      o.desks,
      (p, d) => v.string(p, d, { pattern: deskPattern, patternMessage: 'must be 1–64 letters, digits and . _ : - (a desk identifier)' }),
      { unique: true },
    );
  }
  if (o.roles !== undefined) {
    entry.roles = v.array(
      join(path, 'roles'),
      o.roles,
      (p, r) => v.string(p, r, { pattern: rolePattern, patternMessage: 'must be a lowercase role name such as trader or approver' }),
      { unique: true },
    );
    if (entry.roles && entry.roles.length > 32) v.fail(join(path, 'roles'), 'must have at most 32 roles');
    const conflict = entry.roles && roleConflict(entry.roles);
    if (conflict) v.fail(join(path, 'roles'), conflict);
  }
  if (o.attributes !== undefined) entry.attributes = readAttributes(v, join(path, 'attributes'), o.attributes);
  if (o.kyc !== undefined) entry.kyc = readKycFields(v, join(path, 'kyc'), o.kyc);
  // The KYC status moved from the attributes to the person's KYC record: an older document's
  // attribute declares the record's status.
  const legacyKyc = entry.attributes?.kyc_status;
  if (entry.attributes && legacyKyc !== undefined) {
    const { kyc_status: _moved, ...attributes } = entry.attributes;
    entry.attributes = attributes;
    if (o.kyc !== undefined) v.fail(join(path, 'attributes.kyc_status'), 'give kyc.status or attributes.kyc_status, not both');
    else entry.kyc = { status: legacyKyc as KycFields['status'] };
  }
  if (o.status !== undefined) entry.status = v.string(join(path, 'status'), o.status, { oneOf: userStatuses }) as UserStatus | undefined;
  return v.problems.length === before ? entry : undefined;
}

function text(v: Validator, path: string, value: unknown, maxLength: number): string | undefined {
  const s = v.string(path, value, { maxLength });
  if (s !== undefined && controlCharacters.test(s)) return v.fail(path, 'must not contain control characters');
  return s;
}

function readAttributes(v: Validator, path: string, value: unknown): UserAttributes | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  const attributes: UserAttributes = {};
  // Sorted, so the stored JSON (and "unchanged" on re-apply) does not depend on the document's key order.
  for (const name of Object.keys(o).sort()) {
    const at = join(path, name);
    const item = o[name];
    if (name === 'kyc_status') {
      attributes.kyc_status = v.string(at, item, { oneOf: kycStatuses });
    } else if (name === 'date_of_birth') {
      attributes.date_of_birth = v.string(at, item, { pattern: dateOfBirthPattern, patternMessage: 'must be a date of birth: YYYY-MM-DD (or YYYY-MM, YYYY)' });
    } else if (name === 'suitability') {
      attributes.suitability = v.array(at, item, (p, s) => v.string(p, s, { pattern: tokenPattern, patternMessage: 'must be a lowercase product class such as equities or crypto_derivatives' }), { unique: true });
    } else if (!attributeNamePattern.test(name)) {
      v.fail(at, 'attribute names are lowercase letters, digits and _, starting with a letter');
    } else if (isSecretName(name)) {
      v.fail(at, 'attributes are facts about a person, never secrets');
    } else if (typeof item === 'string') {
      attributes[name] = text(v, at, item, 256);
    } else if (typeof item === 'boolean' || (typeof item === 'number' && Number.isFinite(item))) {
      attributes[name] = item;
    } else if (Array.isArray(item)) {
      if (item.length > 64) v.fail(at, 'must have at most 64 items');
      else attributes[name] = v.array(at, item, (p, s) => text(v, p, s, 256));
    } else {
      v.fail(at, 'must be a string, a number, true or false, or an array of strings');
    }
  }
  if (v.problems.length !== before) return undefined;
  if (Object.keys(attributes).length > 32) return v.fail(path, 'must have at most 32 attributes');
  if (Buffer.byteLength(JSON.stringify(attributes)) > maxAttributesBytes) return v.fail(path, `must be at most ${maxAttributesBytes} bytes as JSON`);
  return attributes;
}

type UserRow = Database['users'];

/** @internal For the login flow: the User of a row it already holds. */
export function userFromRow(row: UserRow): User {
  return toUser(row);
}

function toUser(row: UserRow): User {
  return {
    id: row.id,
    username: row.username,
    name: row.name,
    email: row.email,
    desks: JSON.parse(row.desks) as string[],
    roles: JSON.parse(row.roles) as string[],
    attributes: JSON.parse(row.attributes) as UserAttributes,
    status: row.status,
    hasPassword: row.password_hash !== null,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    lastLoginAt: row.last_login_at === null ? null : Number(row.last_login_at),
    lockedAt: row.locked_at === null ? null : Number(row.locked_at),
    lockReason: row.status === 'active' ? null : (row.lock_reason ?? 'admin'),
    ...(row.password_set_at != null ? { passwordSet: { by: row.password_set_by ?? null, at: Number(row.password_set_at) } } : {}),
  };
}

type Storage = Pick<Context, 'storage'>;

/** The person with this id (the `sub` of their tokens), for ID token and userinfo claims. */
export async function findUser(ctx: Storage, userId: string): Promise<User | undefined> {
  if (userId.length > 64) return undefined;
  const row = await userById.first(ctx.storage.db, [userId]);
  return row && toUser(row);
}

// A text, not a built query: every person's decision, refresh and userinfo asks it.
const userById = new FixedQuery<UserRow>('select * from users where id = ?');

/** The person with this username (normalized as at login). */
export async function findUserByUsername(ctx: Storage, username: string): Promise<User | undefined> {
  const row = await userRowByUsername(ctx.storage.db, username);
  return row && toUser(row);
}

/** Every user, ordered by username. */
export async function listUsers(ctx: Storage): Promise<User[]> {
  const rows = await ctx.storage.db.selectFrom('users').selectAll().orderBy('username').execute();
  return rows.map(toUser);
}

/**
 * @internal For the login flow: the row with its password hash — read with the other statements
 * of `flight` when one is given (the login reads it with its interaction).
 */
export async function userRowByUsername(db: Kysely<Database>, username: string, flight?: Flight): Promise<UserRow | undefined> {
  const normalized = normalizeUsername(username);
  if (!usernamePattern.test(normalized)) return undefined;
  return (await rowsOf(db.selectFrom('users').selectAll().where('username', '=', normalized), flight))[0];
}

/** A user as the admin API shows it: everything but the password hash. */
export function userView(user: User): Record<string, unknown> {
  return {
    id: user.id,
    username: user.username,
    name: user.name,
    email: user.email,
    desks: user.desks,
    roles: user.roles,
    attributes: user.attributes,
    status: user.status,
    has_password: user.hasPassword,
    created_at: new Date(user.createdAt).toISOString(),
    updated_at: new Date(user.updatedAt).toISOString(),
    last_login_at: user.lastLoginAt === null ? null : new Date(user.lastLoginAt).toISOString(),
    locked_at: user.lockedAt === null ? null : new Date(user.lockedAt).toISOString(),
    lock_reason: user.lockReason,
  };
}

/**
 * The members of a user's representation that a PUT or PATCH writes (the rest of `userView` is
 * read-only, and a password is write-only: given to change it, never shown).
 */
export const writableUserMembers = ['name', 'email', 'desks', 'roles', 'attributes', 'status'] as const;

/** What to store as the password hash: keep the stored one, or write this one. */
export type PasswordDecision = { keep: true } | { keep: false; hash: string };

/**
 * Decides, before the apply transaction (hashing takes ~70 ms and should not hold a write lock),
 * what happens to an entry's password. A plain password that still verifies against the stored
 * hash counts as unchanged, so re-applying a document does not rewrite every hash.
 */
export async function decidePassword(db: Kysely<Database>, entry: UserEntry): Promise<PasswordDecision> {
  if (entry.password === undefined && entry.password_hash === undefined) return { keep: true };
  const stored = (await db.selectFrom('users').select('password_hash').where('username', '=', entry.username).executeTakeFirst())?.password_hash;
  if (entry.password_hash !== undefined) return entry.password_hash === stored ? { keep: true } : { keep: false, hash: entry.password_hash };
  const password = entry.password!;
  if (stored && (await verifyPassword(password, stored))) return { keep: true };
  return { keep: false, hash: await hashPassword(password) };
}

export interface UserUpsert {
  outcome: 'created' | 'updated' | 'unchanged';
  id: string;
  /** The lifecycle event of a change that ended the person's tokens, to record in the same transaction. */
  events: AuditEvent[];
  /**
   * The person's desks changed (a mover, src/lifecycle/mover.ts): before and after, for the caller
   * to re-evaluate their grants and mandates once the change has committed.
   */
  moved?: { userId: string; before: string[]; after: string[] };
}

/**
 * Creates or updates a user inside the caller's transaction, by username. The document describes
 * the whole person (an omitted name, email, desks or attributes is cleared), except the password
 * (kept unless given) and the status (kept unless given; `active` clears a lockout). A change
 * that leaves the person unable to hold tokens (an administrator's `locked`, also over an automatic
 * lockout; `disabled`) or a changed password ends the person's sessions, refresh tokens, codes and
 * access tokens (src/identity/lifecycle.ts) and returns its audit event, attributed to `by`. So
 * does a write that takes a role away from a person who may hold tokens (`roles_removed`, recorded
 * as `user.signed_out_everywhere` naming the roles): their tokens' scopes were decided for it.
 *
 * A password (or hash) for a person whose credentials are on hold — a leaver, re-activated or not,
 * who has not come back through an approved recovery (src/lifecycle/credential-hold.ts) — is
 * refused here, in the write's transaction, whatever checked it before: `ApplyRefusedError`
 * (src/apply/index.ts), so nothing of the write lands. Re-activating them is not refused: they
 * come back holding nothing.
 *
 * Through the admin API (`by.via` admin-api), nor through SCIM (an HR system's client: the same
 * takeover), no write names a password for a person who holds a
 * guarded role, or for whom a grant of one waits (src/identity/role-grants.ts): whoever set it
 * could sign in as them and enrol a passkey, so their credentials are reset through a recovery,
 * which two people carry out (docs/recovery.md). Refused in the write's transaction, judged on the
 * row it locks: `PasswordSetThroughApi` (src/apply/index.ts), nothing of the write lands. A plain
 * password is refused even when it is the one they have: "unchanged" against a refusal would
 * answer a guess. The operator (the CLI) sets it as before.
 *
 * A write that sets a password records who did (`password_set_by`, `password_set_at`:
 * `passwordSetBy`); a write that names none keeps the record.
 */
export async function upsertUser(
  trx: Transaction<Database>,
  now: number,
  entry: UserEntry,
  password: PasswordDecision,
  by: PersonWriter = { actor: 'clearance' },
): Promise<UserUpsert> {
  // Locked on PostgreSQL: the rules below compare the entry with this row, so nothing may change or
  // delete it before the write (a DELETE racing a PUT would otherwise make the PUT a creation).
  const read = trx.selectFrom('users').selectAll().where('username', '=', entry.username);
  const existing = await (isPostgres(trx) ? read.forUpdate() : read).executeTakeFirst();
  // Through the admin API no write gives a person a guarded role (a second administrator approves
  // it: src/identity/role-grants.ts), judged against the row this write changes, or creates.
  const added = by.via === 'admin-api' ? guardedRolesAdded(existing ? (JSON.parse(existing.roles) as string[]) : [], entry.roles ?? []) : [];
  if (added.length > 0) {
    const { RoleGrantThroughApi } = await import('../apply/index.ts');
    throw new RoleGrantThroughApi(entry.username, existing?.id, added[0]!);
  }
  if (existing && (by.via === 'admin-api' || by.via === 'scim') && (entry.password !== undefined || !password.keep)) {
    const refused = await passwordRefusal(trx, existing, now);
    if (refused) {
      const { PasswordSetThroughApi } = await import('../apply/index.ts');
      throw new PasswordSetThroughApi(existing.username, existing.id, refused.reason, refused.role);
    }
  }
  const setter = passwordSetBy(by);
  const conflict = roleConflict(entry.roles ?? []);
  // Checked again here, whatever read the entry: roles that would give one person both halves of
  // a recovery are never written (a person holding them from before keeps them until changed).
  if (conflict && (!existing || !roleConflict(JSON.parse(existing.roles) as string[]))) {
    const { ApplyRefusedError } = await import('../apply/index.ts');
    throw new ApplyRefusedError(`users: ${entry.username}: ${conflict}; nothing was applied`);
  }
  const fields = {
    name: entry.name ?? null,
    email: entry.email ?? null,
    desks: JSON.stringify(entry.desks ?? []),
    // Sorted: the stored JSON (and "unchanged" on re-apply) does not depend on the document's order.
    roles: JSON.stringify([...(entry.roles ?? [])].sort()),
    attributes: JSON.stringify(entry.attributes ?? {}),
  };
  if (!existing) {
    const id = randomUUID();
    const status = entry.status ?? 'active';
    await trx
      .insertInto('users')
      .values({
        id,
        username: entry.username,
        password_hash: password.keep ? null : password.hash,
        ...(password.keep ? {} : { password_set_by: setter, password_set_at: now }),
        ...fields,
        status,
        failed_logins: 0,
        locked_at: status === 'active' ? null : now,
        lock_reason: status === 'active' ? null : 'admin',
        tokens_valid_after: null,
        last_login_at: null,
        created_at: now,
        updated_at: now,
      })
      .execute();
    return { outcome: 'created', id, events: [] };
  }
  if (!password.keep && (await credentialsHeld(trx, existing.id))) {
    // Loaded when needed: src/apply/index.ts imports this module.
    const { ApplyRefusedError } = await import('../apply/index.ts');
    throw new ApplyRefusedError(`users: ${heldCredentialsProblem(existing.username)}; nothing was applied`);
  }
  const status = entry.status ?? existing.status;
  // A status the document states is the administrator's: `locked` over an automatic lockout becomes theirs.
  const lockReason = status === 'active' ? null : entry.status !== undefined ? 'admin' : existing.lock_reason;
  const passwordHash = password.keep ? existing.password_hash : password.hash;
  const same =
    existing.name === fields.name &&
    existing.email === fields.email &&
    existing.desks === fields.desks &&
    existing.roles === fields.roles &&
    existing.attributes === fields.attributes &&
    existing.status === status &&
    existing.lock_reason === lockReason &&
    existing.password_hash === passwordHash;
  if (same) return { outcome: 'unchanged', id: existing.id, events: [] };
  const couldHoldTokens = existing.status === 'active' || (existing.status === 'locked' && existing.lock_reason === 'failed_logins');
  const canHoldTokens = status === 'active' || (status === 'locked' && lockReason === 'failed_logins');
  // Roles taken away: the tokens the person holds carry scopes decided for them (RFC 9700
  // §4.14.2), so they end, as "sign out everywhere" ends them, unless another step here ends them
  // anyway. A person who could hold no token (locked by an administrator, disabled) holds none to end.
  const removed = rolesRemoved(JSON.parse(existing.roles) as string[], entry.roles ?? []);
  const action: LifecycleAction | undefined =
    couldHoldTokens && !canHoldTokens
      ? status === 'disabled' ? 'disabled' : 'locked'
      : canHoldTokens && passwordHash !== existing.password_hash
        ? 'password_reset'
        : couldHoldTokens && removed.length > 0
          ? 'roles_removed'
          : undefined;
  await trx
    .updateTable('users')
    .set({
      ...fields,
      password_hash: passwordHash,
      ...(passwordHash !== existing.password_hash ? { password_set_by: setter, password_set_at: now } : {}),
      status,
      lock_reason: lockReason,
      // Active again: also no longer offboarded (a joiner step, src/lifecycle/leaver.ts).
      ...(status === 'active' ? { failed_logins: 0, locked_at: null, offboarded_at: null } : existing.status === 'active' ? { locked_at: now } : {}),
      updated_at: now,
    })
    .where('id', '=', existing.id)
    .execute();
  const moved = existing.desks !== fields.desks ? { moved: { userId: existing.id, before: JSON.parse(existing.desks) as string[], after: entry.desks ?? [] } } : {};
  if (!action) return { outcome: 'updated', id: existing.id, events: [], ...moved };
  const { ended, events } = await endPersonAccess(trx, now, existing.id, action, by.actor);
  const event = lifecycleEvent(action, existing.id, by.actor, ended, { ...(by.via ? { via: by.via } : {}), rolesRemoved: removed });
  return { outcome: 'updated', id: existing.id, events: [...events, event], ...moved };
}

/**
 * Who writes a person (`upsertUser`): the actor its audit events name, the channel, and — through
 * the admin API with a token that is not the client's own — the token's subject (src/apply/index.ts
 * `ApplySource.person`).
 */
export interface PersonWriter {
  actor: string;
  via?: string;
  person?: string;
}

/**
 * Whom `password_set_by` names for a password this write sets: through the admin API, the token's
 * subject (the person behind it, else the client itself, whose own token's subject is its id);
 * `scim:<client>` for SCIM; null for the operator (the CLI, the trust root) — whose new password no
 * administrator knows.
 */
function passwordSetBy(by: PersonWriter): string | null {
  if (by.via === 'admin-api') return by.person ?? by.actor;
  if (by.via === 'scim') return `scim:${by.actor}`;
  return null;
}

/** Why no administrator sets this person's password (undefined: one may), with the role concerned. */
async function passwordRefusal(trx: Transaction<Database>, row: UserRow, now: number): Promise<{ reason: 'guarded_role' | 'role_grant_waiting'; role: string } | undefined> {
  const held = guardedRolesHeld(JSON.parse(row.roles) as string[]);
  if (held.length > 0) return { reason: 'guarded_role', role: held[0]! };
  // Loaded when needed, as src/apply/index.ts is: src/identity/role-grants.ts reaches this module back.
  const { roleGrantWaiting } = await import('./role-grants.ts');
  const waiting = await roleGrantWaiting(trx, row.id, now);
  return waiting === undefined ? undefined : { reason: 'role_grant_waiting', role: waiting };
}
