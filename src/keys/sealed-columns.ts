import { openCibaSealed } from '../ciba/store.ts';

/**
 * Every column that holds a value sealed with the master key (sealed-box.ts), with what binds a
 * row's value to it (the associated data its owner seals with): what `clearance keys rewrap`
 * re-seals (rewrap.ts). One list, so that a new sealed column is added in one place; the rewrap
 * test seals a value through each owner's own code and opens it there again after a rewrap, so a
 * binding here that drifted from its owner's fails it.
 *
 * Not here, because nothing in them is sealed with the master key: the derivation root
 * (`master_key_root`, re-sealed first by the rewrap itself), `master_key_wraps` (wrapped by the
 * PKCS#11 token), keys in a PKCS#11 token (`audit_keys.key_ref`, `custody_keys` of the token),
 * refresh tokens' retry seals (sealed under their parent token), audit personal fields (sealed
 * under per-subject keys, which are here), and values under purpose keys derived from the root
 * (console cookies in the browser, HMACs and digests: master-key.ts derivedKey), which a rotation
 * must not change.
 */
export interface SealedColumn {
  table: string;
  column: string;
  /** The columns that identify a row. */
  key: readonly string[];
  /** Further columns `binding` reads. */
  reads?: readonly string[];
  /** The associated data of the row's value; undefined when it cannot be known here (see `unbound`). */
  binding(row: Record<string, unknown>): string | undefined;
  /** The column that names the master key that sealed the value (keyring.ts masterKeyId), kept in step. */
  keyIdColumn?: string;
  /** Rows that hold no sealed value although the column is not null (a key kept in a token: ''). */
  skipEmpty?: boolean;
  /**
   * What the rewrap does with a row whose binding it cannot know: `delete` it (a pending TOTP
   * enrolment, bound to the browser session that began it: the person begins again).
   */
  unbound?: 'delete';
  /** How a value opens, when not with the master key alone (CIBA values sealed before under a purpose key). */
  open?: (masterKey: Buffer, sealed: string, associatedData: string) => Buffer;
}

const text = (row: Record<string, unknown>, column: string) => String(row[column]);

export const sealedColumns: readonly SealedColumn[] = [
  // src/keys/keystore.ts
  { table: 'signing_keys', column: 'private_key', key: ['kid'], binding: (row) => `signing_keys:${text(row, 'kid')}`, keyIdColumn: 'master_key_id' },
  // src/audit/audit-key.ts (a key in the token has an empty private_key)
  { table: 'audit_keys', column: 'private_key', key: ['key_id'], binding: (row) => `audit_keys:${text(row, 'key_id')}`, keyIdColumn: 'master_key_id', skipEmpty: true },
  // src/pki/custody/software.ts: CA, OCSP responder and TSA keys in software custody
  { table: 'custody_keys', column: 'private_key', key: ['ref'], binding: (row) => `custody_keys:${text(row, 'ref')}`, keyIdColumn: 'master_key_id' },
  // src/audit/subject-keys.ts (null once erased)
  { table: 'audit_subject_keys', column: 'sealed_key', key: ['kid'], binding: (row) => `audit_subject_keys:${text(row, 'kid')}`, keyIdColumn: 'master_key_id' },
  // src/identity/factors/totp.ts: a confirmed authenticator's secret; a pending one is bound to its session too
  {
    table: 'totp_factors',
    column: 'secret',
    key: ['id'],
    reads: ['user_id', 'confirmed_at'],
    binding: (row) => (row.confirmed_at === null ? undefined : `totp_factors:${text(row, 'id')}:${text(row, 'user_id')}`),
    keyIdColumn: 'master_key_id',
    unbound: 'delete',
  },
  // src/federation/upstream/providers.ts: an upstream's client secret, or the private JWK of private_key_jwt
  { table: 'identity_providers', column: 'secret_sealed', key: ['id'], binding: (row) => `identity_providers:${text(row, 'id')}` },
  // src/federation/upstream/saml.ts
  { table: 'saml_service_provider', column: 'private_key_sealed', key: ['id'], binding: (row) => `saml_service_provider:${text(row, 'id')}` },
  // src/signals/ssf/streams.ts
  { table: 'ssf_streams', column: 'authorization_header', key: ['stream_id'], binding: (row) => `ssf_streams:${text(row, 'stream_id')}:authorization_header` },
  // src/signals/webhooks.ts
  { table: 'alert_webhooks', column: 'secret_sealed', key: ['id'], binding: (row) => `alert_webhooks:${text(row, 'id')}` },
  // src/risk/kyc/providers.ts
  { table: 'kyc_providers', column: 'secret_sealed', key: ['id'], binding: (row) => `kyc_providers:${text(row, 'id')}` },
  // src/ciba/store.ts
  { table: 'ciba_requests', column: 'notification_token', key: ['id_hash'], reads: ['request_id'], binding: (row) => `ciba:${text(row, 'request_id')}`, open: openCibaSealed },
  { table: 'ciba_requests', column: 'sealed_auth_req_id', key: ['id_hash'], reads: ['request_id'], binding: (row) => `ciba-auth-req-id:${text(row, 'request_id')}`, open: openCibaSealed },
];

/** `<table>.<column>`: how progress and events name a column. */
export function columnName(column: SealedColumn): string {
  return `${column.table}.${column.column}`;
}
