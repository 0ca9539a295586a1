import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { readAttestationPolicy, type PasskeyAttestationPolicy } from './identity/passkeys/attestation.ts';

export type Mode = 'development' | 'production';

/** Everything the server and the CLI read from the environment, validated once. */
export interface Config {
  mode: Mode;
  host: string;
  port: number;
  /** The issuer identifier (RFC 8414 §2): no trailing slash, no query, no fragment. */
  issuer: string;
  dataDir: string;
  /** PostgreSQL connection string; when set, SQLite is not used. */
  databaseUrl: string | undefined;
  /** 32-byte key that encrypts private keys at rest, when given in the environment. */
  masterKey: Buffer | undefined;
  /**
   * During a master key rotation (docs/keys.md "The master key"): the key being replaced,
   * CLEARANCE_PREVIOUS_MASTER_KEY (or _FILE), accepted for opening only.
   */
  previousMasterKey: Buffer | undefined;
  /** CLEARANCE_MASTER_KEY_PKCS11_LABEL: the master key is a data key wrapped by this AES key of the PKCS#11 token. */
  masterKeyPkcs11Label: string | undefined;
  /** CLEARANCE_PREVIOUS_MASTER_KEY_PKCS11_LABEL: the key being replaced, wrapped by this AES key of the token. */
  previousMasterKeyPkcs11Label: string | undefined;
  logLevel: string;
  /** Largest request body accepted, in bytes (larger → 413). */
  bodyLimit: number;
  /** Algorithm of signing keys the server creates (first start, `keys rotate`). */
  signingAlg: SigningAlg;
  /** Seconds a rotated-in key is published in JWKS before it starts signing. */
  keyOverlapSeconds: number;
  /**
   * Days a token-signing key signs before the key schedule rotates it (src/lifecycle/key-schedule.ts):
   * CLEARANCE_KEY_ROTATION_DAYS, default 90; 0 turns the schedule off (rotate by hand).
   */
  keyRotationDays: number;
  /** Days an audit checkpoint key signs before the schedule rotates it: CLEARANCE_AUDIT_KEY_ROTATION_DAYS, default 0 (off). */
  auditKeyRotationDays: number;
  /** SQLite commit durability (see docs/configuration.md). */
  sqliteSynchronous: 'full' | 'normal';
  /** SQLite: longest wait for another connection's write lock, in ms (then 503). */
  sqliteBusyTimeoutMs: number;
  /** PostgreSQL: statements running longer are cancelled, in ms (0 = never); then 503. */
  dbStatementTimeoutMs: number;
  /** PostgreSQL: longest wait for a pooled connection or a new one, in ms; then 503. */
  dbAcquireTimeoutMs: number;
  /** PostgreSQL: the hot path's repeated statements prepared once per connection (CLEARANCE_DB_PREPARED_STATEMENTS, default true). */
  dbPreparedStatements: boolean;
  /** PostgreSQL: connections this process keeps open at most. */
  dbPoolSize: number;
  /** `/readyz` answers 503 when the database has not answered `select 1` within this many ms. */
  readyTimeoutMs: number;
  /**
   * Graceful shutdown (docs/operations.md): after SIGTERM the node answers `/readyz` 503 at once and
   * keeps accepting for this many ms (for load balancers to notice), then stops accepting.
   */
  drainDelayMs: number;
  /** Then in-flight requests and the audit log's last writes and seal get this many ms; past it the process exits at once. */
  shutdownTimeoutMs: number;
  /** The PKCS#11 token key custody uses (docs/pki.md "Key custody"), when configured. */
  pkcs11: { module: string; tokenLabel: string; pin: string } | undefined;
  /**
   * Time between two of the audit sealer's rounds, in ms (CLEARANCE_AUDIT_SEAL_INTERVAL_MS);
   * undefined: the dialect's default (src/audit/sealer.ts `sealIntervalDefaults`).
   */
  auditSealIntervalMs: number | undefined;
  /** Where a new audit signing key is created: software (sealed with the master key) or the PKCS#11 token. */
  auditKeyCustody: 'software' | 'pkcs11';
  /** The RFC 3161 TSA that stamps signing evidence, and the certificates a stamp must chain to (PEM file). */
  tsa: { url: string; trustFile: string } | undefined;
  /** TLS for the listener, with client certificates requested (RFC 8705). */
  tls: { certFile: string; keyFile: string; clientCaFile: string | undefined } | undefined;
  /** Header in which a TLS-terminating proxy passes the client certificate (RFC 9440 or URL-encoded PEM). */
  clientCertHeader: string | undefined;
  /** Addresses or CIDR ranges of proxies trusted for the certificate header and X-Forwarded-For. */
  trustedProxies: string[];
  /**
   * Origin (scheme://host[:port]) where clients reach the endpoints with mutual TLS, when it is not
   * the issuer's (RFC 8705 §5 mtls_endpoint_aliases). The paths are the issuer's.
   */
  mtlsOrigin: string | undefined;
  /** Server-wide security profile: `fapi2` applies the FAPI 2.0 Security Profile to every client (docs/configuration.md). */
  profile: Profile;
  /** DPoP server nonces (RFC 9449 §8, §9): `required` makes every proof carry a current nonce. */
  dpopNonce: 'off' | 'required';
  /**
   * Passkey attestation: trust anchors and, per role, the authenticator models (AAGUIDs) its people
   * must register (docs/authentication.md); undefined: no attestation is asked for.
   */
  passkeyAttestation: PasskeyAttestationPolicy | undefined;
  /**
   * Redis (or Valkey) shared by every node for rate limits and failure throttles (docs/risk.md
   * "Rate limits"); undefined: each node counts in its own memory.
   */
  redisUrl: string | undefined;
  /** Prefix of every Redis key Clearance writes, so several deployments can share one Redis. */
  redisPrefix: string;
  /** Longest wait for a Redis answer, in ms; then the node counts in memory until Redis answers again. */
  redisTimeoutMs: number;
  /**
   * The sanctions/PEP screening list file (CSV or JSON, docs/risk.md "Sanctions and PEP
   * screening"); undefined: no screening.
   */
  screeningList: string | undefined;
  /**
   * Refusal recording (src/audit/refusals.ts, docs/audit.md "Refusals"): at most this many refusal
   * events per source (client id, else address) per window on a node; the rest are counted into one
   * `audit.refusals_suppressed`. CLEARANCE_REFUSAL_AUDIT_LIMIT, default 20.
   */
  refusalAuditLimit: number;
  /** The window of refusalAuditLimit, in seconds: CLEARANCE_REFUSAL_AUDIT_WINDOW, default 60. */
  refusalAuditWindowSeconds: number;
  /**
   * CIBA prompt bombing (src/ciba/prompts.ts, docs/approvals.md): at most this many of one client's
   * backchannel requests wait for one person at once. CLEARANCE_CIBA_MAX_OPEN_REQUESTS, default 3.
   */
  cibaMaxOpenRequests: number;
  /**
   * How long before a mandate lapses a txn that used it counts as in flight (execution to
   * settlement): CLEARANCE_MANDATE_IN_FLIGHT_WINDOW seconds, default 259200 (3 days, T+2 and a day).
   */
  mandateInFlightWindowSeconds: number;
  /**
   * How long the mandates an offboarded person granted stay in force for reassignment to another
   * signatory (src/lifecycle/leaver.ts): CLEARANCE_OFFBOARD_REASSIGNMENT_DAYS, default 14.
   */
  offboardReassignmentDays: number;
  /**
   * Apply's prune safety rule (src/lifecycle/prune.ts): the largest share of a kind's entries in
   * service, in percent, that one `--prune` may disable without `--force` (one is always allowed):
   * CLEARANCE_PRUNE_MAX_PERCENT, default 25.
   */
  pruneMaxPercent: number;
  /**
   * Destination control (src/transfers, docs/transfers.md "Destination control"): how long an
   * approved address-book change cools down before a transfer may use it, unless the legal entity
   * sets its own (apply's `transfer_destinations.cooldowns`). CLEARANCE_TRANSFER_COOLDOWN_HOURS,
   * default 24 (1 to 720: never 0, src/transfers/address-book.ts `minCooldownHours`).
   */
  transferCooldownHours: number;
  /** Shared Signals (src/signals/ssf, docs/signals.md): how often the transmitter looks for new events and due deliveries, ms. CLEARANCE_SSF_INTERVAL_MS, default 250. */
  ssfIntervalMs: number;
  /** Whether push endpoints may be http on loopback or on private addresses: CLEARANCE_SSF_ALLOW_PRIVATE_NETWORK, default true in development, false in production. */
  ssfAllowPrivateNetwork: boolean;
  /** How long a push delivery is retried before it is failed, seconds: CLEARANCE_SSF_MAX_DELIVERY_AGE, default 86400. */
  ssfMaxDeliveryAgeSeconds: number;
  /** Which subjects a new stream receives before any is added or removed: CLEARANCE_SSF_DEFAULT_SUBJECTS, ALL (default) or NONE. */
  ssfDefaultSubjects: 'ALL' | 'NONE';
  /**
   * The institutional profile (docs/lifecycle.md "Client credential lifecycle"): every confidential
   * client names the firm it belongs to (`owner_lei`), and its secrets live at most
   * `clientSecretMaxAgeDaysInstitutional`. CLEARANCE_INSTITUTIONAL, default false.
   */
  institutional: boolean;
  /** Longest life of a new client secret, days (0: secrets never expire): CLEARANCE_CLIENT_SECRET_MAX_AGE_DAYS, default 365. */
  clientSecretMaxAgeDays: number;
  /** The same under the institutional profile: CLEARANCE_INSTITUTIONAL_CLIENT_SECRET_MAX_AGE_DAYS, default 90. */
  clientSecretMaxAgeDaysInstitutional: number;
  /** Whether clients' jwks_uri may be http on loopback or on private addresses: CLEARANCE_CLIENT_JWKS_ALLOW_PRIVATE_NETWORK, default true in development, false in production. */
  clientJwksAllowPrivateNetwork: boolean;
  /**
   * SCIM clients of no legal entity (no `owner_lei`) that provision every person, a single-firm
   * deployment's HR system (docs/lifecycle.md "SCIM 2.0"): CLEARANCE_SCIM_GLOBAL_CLIENTS, client ids,
   * comma-separated; default none. Any other client of no legal entity provisions no one (fail closed).
   */
  scimGlobalClients: string[];
  /**
   * The FATF travel rule (src/transfers/detail.ts, docs/transfers.md): a crypto-asset transfer of at
   * least this amount, in the asset's units, must carry its originator and beneficiary (IVMS 101).
   * CLEARANCE_TRAVEL_RULE_THRESHOLD, a decimal, default 0: every amount (EU Regulation 2023/1113 Art. 14 has no threshold).
   */
  travelRuleThreshold: string;
  /**
   * The region this instance serves (docs/privacy.md "Regions"): its people's data and audit stay
   * here; a token for a resource server of another region carries a per-region pseudonymous subject
   * (src/identity/pairwise.ts), and introspection answers only resource servers of a token's region.
   * CLEARANCE_REGION, a region identifier (lowercase letters, digits and -); unset: one region, no crossing.
   */
  region: string | undefined;
}

export const profiles = ['default', 'fapi2'] as const;
export type Profile = (typeof profiles)[number];

export const signingAlgs = ['ES256', 'EdDSA', 'PS256'] as const;
export type SigningAlg = (typeof signingAlgs)[number];

/**
 * Default database timeouts, in ms (docs/configuration.md, docs/operations.md): a request never
 * waits more than a few seconds for a database that does not answer.
 */
export const databaseTimeoutDefaults = { statementMs: 3000, acquireMs: 2000, sqliteBusyMs: 2000, readyMs: 1000 } as const;

/** The longest lifetime of any token Clearance signs; a key stays in JWKS this long after it stops signing. */
export const maxTokenLifetimeSeconds = 3600;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads and validates the configuration; throws ConfigError naming the variable at fault. */
export function loadConfig(given: NodeJS.ProcessEnv = process.env): Config {
  const env = withSecretFiles(given);
  const mode = readMode(env);
  const port = readInt(env, 'PORT', 9000, 0, 65535);
  if (port === 0 && env.CLEARANCE_ISSUER === undefined) {
    // The default issuer names the port; with a port the OS picks at start it would be http://localhost:0.
    throw new ConfigError('CLEARANCE_ISSUER must be set when PORT is 0 (the OS picks the port, so the default issuer cannot name it)');
  }
  const issuer = readIssuer(env.CLEARANCE_ISSUER ?? `http://localhost:${port}`, mode);
  return {
    mode,
    host: env.HOST ?? (mode === 'development' ? 'localhost' : '0.0.0.0'),
    port,
    issuer,
    dataDir: resolve(env.CLEARANCE_DATA_DIR ?? './data'),
    databaseUrl: emptyToUndefined(env.DATABASE_URL),
    masterKey: readMasterKey(env.CLEARANCE_MASTER_KEY),
    ...readMasterKeySources(env),
    logLevel: env.LOG_LEVEL ?? 'info',
    bodyLimit: readInt(env, 'CLEARANCE_BODY_LIMIT', 64 * 1024, 1024, 10 * 1024 * 1024),
    signingAlg: readSigningAlg(env.CLEARANCE_SIGNING_ALG ?? 'ES256'),
    keyOverlapSeconds: readInt(env, 'CLEARANCE_KEY_OVERLAP', 600, 0, 30 * 24 * 3600),
    keyRotationDays: readInt(env, 'CLEARANCE_KEY_ROTATION_DAYS', 90, 0, 3650),
    auditKeyRotationDays: readInt(env, 'CLEARANCE_AUDIT_KEY_ROTATION_DAYS', 0, 0, 3650),
    sqliteSynchronous: readSqliteSynchronous(env.CLEARANCE_SQLITE_SYNCHRONOUS),
    sqliteBusyTimeoutMs: readInt(env, 'CLEARANCE_SQLITE_BUSY_TIMEOUT_MS', databaseTimeoutDefaults.sqliteBusyMs, 0, 60_000),
    dbStatementTimeoutMs: readInt(env, 'CLEARANCE_DB_STATEMENT_TIMEOUT_MS', databaseTimeoutDefaults.statementMs, 0, 3_600_000),
    dbAcquireTimeoutMs: readInt(env, 'CLEARANCE_DB_ACQUIRE_TIMEOUT_MS', databaseTimeoutDefaults.acquireMs, 1, 60_000),
    dbPoolSize: readInt(env, 'CLEARANCE_DB_POOL_SIZE', 10, 2, 1000),
    dbPreparedStatements: readOneOf(env, 'CLEARANCE_DB_PREPARED_STATEMENTS', ['true', 'false'], 'true') === 'true',
    readyTimeoutMs: readInt(env, 'CLEARANCE_READY_TIMEOUT_MS', databaseTimeoutDefaults.readyMs, 1, 60_000),
    // A load balancer polling /readyz every few seconds has noticed within 5 s; in development nobody polls.
    drainDelayMs: readInt(env, 'CLEARANCE_DRAIN_DELAY_MS', mode === 'production' ? 5000 : 0, 0, 300_000),
    shutdownTimeoutMs: readInt(env, 'CLEARANCE_SHUTDOWN_TIMEOUT_MS', 30_000, 100, 600_000),
    pkcs11: readPkcs11(env),
    tsa: readTsa(env),
    auditKeyCustody: readOneOf(env, 'CLEARANCE_AUDIT_KEY_CUSTODY', ['software', 'pkcs11'] as const, 'software'),
    auditSealIntervalMs: emptyToUndefined(env.CLEARANCE_AUDIT_SEAL_INTERVAL_MS) === undefined ? undefined : readInt(env, 'CLEARANCE_AUDIT_SEAL_INTERVAL_MS', 0, 10, 60_000),
    tls: readTls(env),
    clientCertHeader: emptyToUndefined(env.CLEARANCE_CLIENT_CERT_HEADER)?.toLowerCase(),
    trustedProxies: readList(env.CLEARANCE_TRUSTED_PROXIES),
    mtlsOrigin: readMtlsOrigin(env.CLEARANCE_MTLS_ORIGIN, mode),
    profile: readOneOf(env, 'CLEARANCE_PROFILE', profiles, 'default'),
    dpopNonce: readOneOf(env, 'CLEARANCE_DPOP_NONCE', ['off', 'required'] as const, 'off'),
    passkeyAttestation: readPasskeyAttestation(env.CLEARANCE_PASSKEY_ATTESTATION),
    redisUrl: readRedisUrl(env.REDIS_URL),
    redisPrefix: readRedisPrefix(env.CLEARANCE_REDIS_PREFIX),
    redisTimeoutMs: readInt(env, 'CLEARANCE_REDIS_TIMEOUT_MS', 250, 10, 10_000),
    screeningList: emptyToUndefined(env.CLEARANCE_SCREENING_LIST) === undefined ? undefined : resolve(env.CLEARANCE_SCREENING_LIST!),
    refusalAuditLimit: readInt(env, 'CLEARANCE_REFUSAL_AUDIT_LIMIT', 20, 1, 1_000_000),
    refusalAuditWindowSeconds: readInt(env, 'CLEARANCE_REFUSAL_AUDIT_WINDOW', 60, 1, 86_400),
    cibaMaxOpenRequests: readInt(env, 'CLEARANCE_CIBA_MAX_OPEN_REQUESTS', 3, 1, 100),
    mandateInFlightWindowSeconds: readInt(env, 'CLEARANCE_MANDATE_IN_FLIGHT_WINDOW', 259_200, 60, 90 * 86_400),
    offboardReassignmentDays: readInt(env, 'CLEARANCE_OFFBOARD_REASSIGNMENT_DAYS', 14, 0, 365),
    pruneMaxPercent: readInt(env, 'CLEARANCE_PRUNE_MAX_PERCENT', 25, 0, 100),
    transferCooldownHours: readTransferCooldownHours(env),
    ssfIntervalMs: readInt(env, 'CLEARANCE_SSF_INTERVAL_MS', 250, 50, 60_000),
    ssfAllowPrivateNetwork: readOneOf(env, 'CLEARANCE_SSF_ALLOW_PRIVATE_NETWORK', ['true', 'false'], mode === 'development' ? 'true' : 'false') === 'true',
    ssfMaxDeliveryAgeSeconds: readInt(env, 'CLEARANCE_SSF_MAX_DELIVERY_AGE', 86_400, 60, 30 * 86_400),
    ssfDefaultSubjects: readOneOf(env, 'CLEARANCE_SSF_DEFAULT_SUBJECTS', ['ALL', 'NONE'], 'ALL'),
    institutional: readOneOf(env, 'CLEARANCE_INSTITUTIONAL', ['true', 'false'], 'false') === 'true',
    clientSecretMaxAgeDays: readInt(env, 'CLEARANCE_CLIENT_SECRET_MAX_AGE_DAYS', 365, 0, 3650),
    clientSecretMaxAgeDaysInstitutional: readInt(env, 'CLEARANCE_INSTITUTIONAL_CLIENT_SECRET_MAX_AGE_DAYS', 90, 1, 3650),
    clientJwksAllowPrivateNetwork: readOneOf(env, 'CLEARANCE_CLIENT_JWKS_ALLOW_PRIVATE_NETWORK', ['true', 'false'], mode === 'development' ? 'true' : 'false') === 'true',
    scimGlobalClients: readList(env.CLEARANCE_SCIM_GLOBAL_CLIENTS),
    travelRuleThreshold: readDecimal(env, 'CLEARANCE_TRAVEL_RULE_THRESHOLD', '0'),
    region: readRegion(env.CLEARANCE_REGION),
  };
}

/** The variables that carry secrets, each of which can instead name a file in `<NAME>_FILE`. */
export const secretVariables = ['CLEARANCE_MASTER_KEY', 'CLEARANCE_PREVIOUS_MASTER_KEY', 'DATABASE_URL', 'REDIS_URL'] as const;

/**
 * `<NAME>_FILE` for each secret variable: the value is the file's content, less one trailing newline
 * (a container's mounted secret, docs/deployment.md), so the secret need not sit in the environment
 * where `ps e`, `podman inspect` or a crash report would show it. Setting both is ambiguous: refused.
 */
function withSecretFiles(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  let resolved: NodeJS.ProcessEnv | undefined;
  for (const name of secretVariables) {
    const file = emptyToUndefined(env[`${name}_FILE`]);
    if (file === undefined) continue;
    if (emptyToUndefined(env[name]) !== undefined) throw new ConfigError(`set ${name} or ${name}_FILE, not both`);
    let value: string;
    try {
      value = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      // The message names the file and the reason (ENOENT, EACCES), never its content.
      throw new ConfigError(`${name}_FILE: ${(error as Error).message}`);
    }
    if (value === '') throw new ConfigError(`${name}_FILE: ${file} is empty`);
    resolved ??= { ...env };
    resolved[name] = value;
  }
  return resolved ?? env;
}

/** CLEARANCE_TSA_URL and CLEARANCE_TSA_TRUST (the TSA's CA or certificate, PEM), set together. */
function readTsa(env: NodeJS.ProcessEnv): Config['tsa'] {
  const url = emptyToUndefined(env.CLEARANCE_TSA_URL);
  const trustFile = emptyToUndefined(env.CLEARANCE_TSA_TRUST);
  if (!url && !trustFile) return undefined;
  if (!url || !trustFile) throw new ConfigError('CLEARANCE_TSA_URL and CLEARANCE_TSA_TRUST are set together');
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw new ConfigError(`CLEARANCE_TSA_URL must be an http(s) URL, not "${url}"`);
  return { url, trustFile: resolve(trustFile) };
}

/** CLEARANCE_PKCS11_MODULE, _TOKEN and the PIN (_PIN, or _PIN_FILE read once at start). */
function readPkcs11(env: NodeJS.ProcessEnv): Config['pkcs11'] {
  const module = emptyToUndefined(env.CLEARANCE_PKCS11_MODULE);
  const tokenLabel = emptyToUndefined(env.CLEARANCE_PKCS11_TOKEN);
  const pinFile = emptyToUndefined(env.CLEARANCE_PKCS11_PIN_FILE);
  let pin = emptyToUndefined(env.CLEARANCE_PKCS11_PIN);
  if (!module && !tokenLabel && !pin && !pinFile) return undefined;
  if (!module || !tokenLabel) throw new ConfigError('CLEARANCE_PKCS11_MODULE and CLEARANCE_PKCS11_TOKEN are set together');
  if (pin && pinFile) throw new ConfigError('set CLEARANCE_PKCS11_PIN or CLEARANCE_PKCS11_PIN_FILE, not both');
  if (pinFile) {
    try {
      pin = readFileSync(pinFile, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      throw new ConfigError(`CLEARANCE_PKCS11_PIN_FILE: ${(error as Error).message}`);
    }
  }
  if (!pin) throw new ConfigError('CLEARANCE_PKCS11_PIN or CLEARANCE_PKCS11_PIN_FILE is required with CLEARANCE_PKCS11_MODULE');
  return { module, tokenLabel, pin };
}

/** A non-negative decimal amount (up to 18 digits, 8 decimals), kept as written: amounts are compared exactly. */
function readDecimal(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const raw = emptyToUndefined(env[name]);
  if (raw === undefined) return fallback;
  if (!/^(0|[1-9]\d{0,17})(\.\d{1,8})?$/.test(raw)) throw new ConfigError(`${name} must be a non-negative decimal amount, not "${raw}"`);
  return raw;
}

function readOneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, values: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(values as readonly string[]).includes(raw)) throw new ConfigError(`${name} must be one of ${values.join(', ')}, not "${raw}"`);
  return raw as T;
}

function readMtlsOrigin(raw: string | undefined, mode: Mode): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`CLEARANCE_MTLS_ORIGIN must be an absolute URL, not "${raw}"`);
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username || raw.includes('?') || raw.includes('#')) {
    throw new ConfigError(`CLEARANCE_MTLS_ORIGIN must be an origin (scheme://host[:port]) without a path, not "${raw}"`);
  }
  if (url.protocol !== 'https:' && !(mode === 'development' && url.protocol === 'http:')) {
    throw new ConfigError(`CLEARANCE_MTLS_ORIGIN must use https outside development mode (got "${raw}")`);
  }
  return url.origin;
}

function readMode(env: NodeJS.ProcessEnv): Mode {
  const value = env.CLEARANCE_MODE ?? (env.NODE_ENV === 'production' ? 'production' : 'development');
  if (value !== 'development' && value !== 'production') {
    throw new ConfigError(`CLEARANCE_MODE must be "development" or "production", not "${value}"`);
  }
  return value;
}

function readIssuer(raw: string, mode: Mode): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`CLEARANCE_ISSUER must be an absolute URL, not "${raw}"`);
  }
  // RFC 8414 §2: the issuer is an https URL with no query or fragment.
  if (url.search || url.hash || raw.includes('?') || raw.includes('#')) {
    throw new ConfigError('CLEARANCE_ISSUER must not have a query or fragment');
  }
  if (url.protocol !== 'https:' && !(mode === 'development' && url.protocol === 'http:')) {
    throw new ConfigError(
      `CLEARANCE_ISSUER must use https outside development mode (got "${raw}"); ` +
        'set CLEARANCE_MODE=development only on a developer machine',
    );
  }
  return raw.replace(/\/+$/, '');
}

/** CLEARANCE_REGION: a region identifier as the entity model writes them (src/entities/definition.ts regionPattern). */
function readRegion(raw: string | undefined): string | undefined {
  const region = emptyToUndefined(raw);
  if (region === undefined) return undefined;
  if (!/^[a-z0-9][a-z0-9-]{0,31}$/.test(region)) throw new ConfigError(`CLEARANCE_REGION must be a region identifier (lowercase letters, digits and -), not "${region}"`);
  return region;
}

function readMasterKey(raw: string | undefined, name = 'CLEARANCE_MASTER_KEY'): Buffer | undefined {
  if (!raw) return undefined;
  const key = /^[0-9a-fA-F]{64}$/.test(raw) ? Buffer.from(raw, 'hex') : Buffer.from(raw, 'base64');
  if (key.length !== 32) {
    throw new ConfigError(`${name} must be 32 bytes, as 64 hex digits or base64`);
  }
  return key;
}

/**
 * The other master key sources (docs/keys.md "The master key"): the previous key during a rotation,
 * and keys wrapped by an AES key of the PKCS#11 token (CLEARANCE_PKCS11_* names the token). Each
 * key comes from one source.
 */
function readMasterKeySources(env: NodeJS.ProcessEnv): Pick<Config, 'previousMasterKey' | 'masterKeyPkcs11Label' | 'previousMasterKeyPkcs11Label'> {
  const previousMasterKey = readMasterKey(env.CLEARANCE_PREVIOUS_MASTER_KEY, 'CLEARANCE_PREVIOUS_MASTER_KEY');
  const masterKeyPkcs11Label = emptyToUndefined(env.CLEARANCE_MASTER_KEY_PKCS11_LABEL);
  const previousMasterKeyPkcs11Label = emptyToUndefined(env.CLEARANCE_PREVIOUS_MASTER_KEY_PKCS11_LABEL);
  if (masterKeyPkcs11Label && emptyToUndefined(env.CLEARANCE_MASTER_KEY)) throw new ConfigError('set CLEARANCE_MASTER_KEY or CLEARANCE_MASTER_KEY_PKCS11_LABEL, not both');
  if (previousMasterKeyPkcs11Label && previousMasterKey) throw new ConfigError('set CLEARANCE_PREVIOUS_MASTER_KEY or CLEARANCE_PREVIOUS_MASTER_KEY_PKCS11_LABEL, not both');
  for (const [name, label] of [['CLEARANCE_MASTER_KEY_PKCS11_LABEL', masterKeyPkcs11Label], ['CLEARANCE_PREVIOUS_MASTER_KEY_PKCS11_LABEL', previousMasterKeyPkcs11Label]] as const) {
    if (label === undefined) continue;
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(label)) throw new ConfigError(`${name} must be 1 to 64 of letters, digits and ._-`);
    if (!emptyToUndefined(env.CLEARANCE_PKCS11_MODULE)) throw new ConfigError(`${name} needs the token: CLEARANCE_PKCS11_MODULE, CLEARANCE_PKCS11_TOKEN and its PIN`);
  }
  const current = readMasterKey(env.CLEARANCE_MASTER_KEY);
  if ((current && previousMasterKey?.equals(current)) || (masterKeyPkcs11Label !== undefined && masterKeyPkcs11Label === previousMasterKeyPkcs11Label)) {
    throw new ConfigError('the previous master key is the master key itself: set CLEARANCE_PREVIOUS_MASTER_KEY only while rotating to a new CLEARANCE_MASTER_KEY');
  }
  return { previousMasterKey, masterKeyPkcs11Label, previousMasterKeyPkcs11Label };
}

function readSigningAlg(raw: string): SigningAlg {
  if (!(signingAlgs as readonly string[]).includes(raw)) {
    throw new ConfigError(`CLEARANCE_SIGNING_ALG must be one of ${signingAlgs.join(', ')}, not "${raw}"`);
  }
  return raw as SigningAlg;
}

/**
 * CLEARANCE_TRANSFER_COOLDOWN_HOURS: 1 to 720. The floor of one hour is the address book's
 * (src/transfers/address-book.ts `minCooldownHours`): without a cool-down, a destination slipped in
 * with a stolen session and one careless approval could be used at once, before anyone saw the
 * events of its change.
 */
function readTransferCooldownHours(env: NodeJS.ProcessEnv): number {
  const raw = env.CLEARANCE_TRANSFER_COOLDOWN_HOURS;
  if (raw === '0') throw new ConfigError('CLEARANCE_TRANSFER_COOLDOWN_HOURS must be at least 1 (hour): a new transfer destination always cools down before its first use, not "0"');
  return readInt(env, 'CLEARANCE_TRANSFER_COOLDOWN_HOURS', 24, 1, 720);
}

function readInt(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  // Decimal digits only: Number() would also read "0x50", "1e3" or " 80 " as a number.
  const value = /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, not "${raw}"`);
  }
  return value;
}

function readSqliteSynchronous(raw: string | undefined): 'full' | 'normal' {
  const value = (raw || 'normal').toLowerCase();
  if (value !== 'full' && value !== 'normal') throw new ConfigError(`CLEARANCE_SQLITE_SYNCHRONOUS must be "full" or "normal", not "${raw}"`);
  return value;
}

function readTls(env: NodeJS.ProcessEnv): Config['tls'] {
  const certFile = emptyToUndefined(env.CLEARANCE_TLS_CERT);
  const keyFile = emptyToUndefined(env.CLEARANCE_TLS_KEY);
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new ConfigError('CLEARANCE_TLS_CERT and CLEARANCE_TLS_KEY must be set together');
  return { certFile, keyFile, clientCaFile: emptyToUndefined(env.CLEARANCE_TLS_CLIENT_CA) };
}

function readPasskeyAttestation(raw: string | undefined): PasskeyAttestationPolicy | undefined {
  if (raw === undefined || raw === '') return undefined;
  try {
    return readAttestationPolicy(resolve(raw));
  } catch (error) {
    throw new ConfigError(`CLEARANCE_PASSKEY_ATTESTATION: ${(error as Error).message}`);
  }
}

function readRedisUrl(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    // Not quoted: the URL may carry a password.
    throw new ConfigError('REDIS_URL must be a redis:// or rediss:// URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new ConfigError(`REDIS_URL must be a redis:// or rediss:// URL, not ${url.protocol}`);
  return raw;
}

function readRedisPrefix(raw: string | undefined): string {
  const prefix = raw ?? 'clearance:';
  if (!/^[A-Za-z0-9:._-]{0,64}$/.test(prefix)) throw new ConfigError(`CLEARANCE_REDIS_PREFIX must be at most 64 of A-Z a-z 0-9 : . _ -, not "${prefix}"`);
  return prefix;
}

function readList(raw: string | undefined): string[] {
  return (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

function emptyToUndefined(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
