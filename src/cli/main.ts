import cluster from 'node:cluster';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import type { Context } from '../context.ts';
import { createLogger } from '../log.ts';
import { openContext } from '../server.ts';
import { migrate, openStorage, storageOptionsFor } from '../storage/database.ts';
import { applyCommand, applyHelp, applyUsage } from './commands/apply.ts';
import { keysCommand, keysHelp, keysUsage } from './commands/keys.ts';
import { initCommand, initHelp, initUsage } from './commands/init.ts';
import { clientsCommand, clientsHelp, clientsUsage } from './commands/clients.ts';
import { auditCommand, auditHelp, auditUsage, verifyBundleOperands } from './commands/audit.ts';
import { policyCommand, policyHelp, policyTestCommand, policyUsage } from './commands/policy.ts';
import { partnerCommand, partnerHelp, partnerUsage } from './commands/partner.ts';
import { startCommand, startHelp, startUsage } from './commands/start.ts';
import { caCommand, caHelp, caUsage } from './commands/ca.ts';
import { backupCommand, backupHelp, backupUsage } from './commands/backup.ts';
import { usersCommand, usersHelp, usersUsage } from './commands/users.ts';
import { UsageError } from './numbers.ts';
import { exit, processOutput, type Output } from './output.ts';
import { parseInvocation, usageProblem, type Rule } from './usage.ts';

export const mainHelp = `Usage: clearance <command> [options]

Commands:
  start [--workers N]   run the server (migrates the database, creates a signing key on first start),
                        in N processes (see: clearance start --help)
  migrate               apply pending database migrations and exit
  backup -o FILE        back up the database while the server runs (SQLite's online backup, or
                        pg_dump), with its latest audit checkpoint to verify a restore
                        (see: clearance backup --help)
  init                  create the first admin client and print its credentials once
                        (see: clearance init --help)
  users link|links      link an upstream identity to an existing person; list a person's links
  users offboard NAME   offboard a leaver: disabled, everything they hold ended, audited
                        (see: clearance users --help)
  clients list|token|rotate-secret
                        list clients; issue an initial access token for dynamic registration,
                        naming the firm and what registrants may be; rotate a client's secret
                        with a rollover window (see: clearance clients --help)
  keys list|status|rotate|retire|revoke|rewrap
                        manage signing keys (see: clearance keys --help)
  apply -f FILE [--plan | --dry-run] [--prune [--force]]
                        import resource servers, clients, users, mandates, the entity model,
                        policy sets and partners (JSON or YAML); --plan shows what would
                        change; --prune disables what the document no longer declares
                        (see: clearance apply --help)
  audit verify|export|verify-bundle|proof|prune|hold|erase-subject|key|seal
                        verify the tamper-evident audit log, export and verify evidence bundles
                        (see: clearance audit --help)
  policy test|simulate|list|add|activate
                        test policies without a database, replay recorded decisions against a
                        candidate, store and activate versions (see: clearance policy --help)
  partner check|list|status|approve
                        check a federated partner's trust profile, keys and metadata, and
                        optionally a JWT against it; list partners; show a partner's drift
                        baseline; re-approve a drifted partner (see: clearance partner --help)
  ca init|issue|revoke|list|root|crl
                        the private CA: create the root (kept offline or in a PKCS#11 token) and
                        the issuing intermediate, issue from a CSR under a profile, revoke, list,
                        print the root and the CRL (see: clearance ca --help)
  help [COMMAND]        show help

Environment (the server and the CLI read the same):
  PORT                  listen port (default 9000)
  HOST                  listen address (default localhost in development, 0.0.0.0 in production)
  CLEARANCE_ISSUER      issuer identifier (default http://localhost:$PORT; https outside development)
  CLEARANCE_DATA_DIR    data directory for SQLite and the development master key (default ./data)
  DATABASE_URL          PostgreSQL connection string; when set, SQLite is not used
  CLEARANCE_MASTER_KEY  32 bytes (64 hex digits or base64) that encrypt private keys at rest;
                        required in production, generated into the data directory in development
  CLEARANCE_PREVIOUS_MASTER_KEY, CLEARANCE_MASTER_KEY_PKCS11_LABEL
                        the key being replaced during a rotation (clearance keys rewrap); a
                        master key wrapped by an AES key of the PKCS#11 token (docs/keys.md)
  CLEARANCE_MASTER_KEY_FILE, CLEARANCE_PREVIOUS_MASTER_KEY_FILE, DATABASE_URL_FILE, REDIS_URL_FILE
                        a file holding that variable's value instead (a mounted secret)
  CLEARANCE_MODE        development (default) or production (also implied by NODE_ENV=production)
  CLEARANCE_SIGNING_ALG ES256 (default), EdDSA or PS256, for keys the server creates
  CLEARANCE_KEY_OVERLAP seconds a rotated key is published before it signs (default 600)
  CLEARANCE_KEY_ROTATION_DAYS, CLEARANCE_AUDIT_KEY_ROTATION_DAYS
                        days a token-signing key (default 90) and an audit checkpoint key
                        (default 0) sign before the server rotates them; 0 = by hand only
  CLEARANCE_BODY_LIMIT  largest request body in bytes (default 65536)
  CLEARANCE_SQLITE_SYNCHRONOUS
                        normal (default; commits survive process crashes) or full (also power loss)
  CLEARANCE_SQLITE_BUSY_TIMEOUT_MS
                        wait for another connection's SQLite write lock, then 503 (default 2000)
  CLEARANCE_DB_STATEMENT_TIMEOUT_MS, CLEARANCE_DB_ACQUIRE_TIMEOUT_MS
                        PostgreSQL statement timeout (default 3000; 0 = none) and wait for a
                        connection (default 2000), then 503; CLI commands have no statement timeout
  CLEARANCE_DB_POOL_SIZE
                        PostgreSQL connections per process (default 10)
  CLEARANCE_DB_PREPARED_STATEMENTS
                        true (default): the hot path's repeated statements are prepared once per
                        PostgreSQL connection; false behind a pooler that cannot carry them
  CLEARANCE_READY_TIMEOUT_MS
                        /readyz is 503 when the database has not answered within this (default 1000)
  CLEARANCE_TLS_CERT, CLEARANCE_TLS_KEY, CLEARANCE_TLS_CLIENT_CA
                        serve HTTPS and request client certificates (mTLS, RFC 8705)
  CLEARANCE_CLIENT_CERT_HEADER, CLEARANCE_TRUSTED_PROXIES
                        take the client certificate from this header, only from these proxies
  CLEARANCE_MTLS_ORIGIN origin of the mTLS endpoint aliases when it is not the issuer's (RFC 8705 §5)
  CLEARANCE_PROFILE     default, or fapi2: the FAPI 2.0 Security Profile for every client
                        (PAR, sender-constrained tokens only, private_key_jwt or mTLS only)
  CLEARANCE_DPOP_NONCE  off (default) or required: DPoP proofs must carry a server nonce (RFC 9449 §8)
  CLEARANCE_PASSKEY_ATTESTATION
                        a YAML/JSON file: attestation roots and, per role, the authenticator
                        models (AAGUIDs) its people must register as passkeys (default: none asked)
  CLEARANCE_PKCS11_MODULE, CLEARANCE_PKCS11_TOKEN, CLEARANCE_PKCS11_PIN[_FILE]
                        the PKCS#11 token of key custody (CA and audit keys; see docs/pki.md)
  CLEARANCE_AUDIT_KEY_CUSTODY
                        software (default) or pkcs11: where the first audit key is made
  CLEARANCE_TSA_URL, CLEARANCE_TSA_TRUST
                        the RFC 3161 time-stamp authority of signing evidence, and its trust anchors
  LOG_LEVEL             pino level (default info; debug adds an access log line per request)
  REDIS_URL and the others (drain and shutdown, risk, SSF, transfers, OpenTelemetry ...):
                        docs/configuration.md lists every variable

Each command takes only the options and arguments its help shows: any other, an argument too many,
or a whole number that is not plain digits within its range is refused (exit 2) before the
configuration is read or the database opened.

Exit codes: 0 done, 1 the command failed or refused, 2 wrong usage or configuration.`;

const migrateHelp = 'Usage: clearance migrate\n\nApplies every pending migration to the configured database and exits.';

/**
 * Every command: its help, and what it takes (src/cli/usage.ts) — its actions, and for each the
 * options and the arguments. An invocation is checked against it before anything runs.
 */
export const commands: Readonly<Record<string, { help: string; usage: Rule }>> = {
  start: { help: startHelp, usage: startUsage },
  migrate: { help: migrateHelp, usage: { options: [], args: [] } },
  backup: { help: backupHelp, usage: backupUsage },
  init: { help: initHelp, usage: initUsage },
  users: { help: usersHelp, usage: usersUsage },
  clients: { help: clientsHelp, usage: clientsUsage },
  keys: { help: keysHelp, usage: keysUsage },
  apply: { help: applyHelp, usage: applyUsage },
  audit: { help: auditHelp, usage: auditUsage },
  policy: { help: policyHelp, usage: policyUsage },
  partner: { help: partnerHelp, usage: partnerUsage },
  ca: { help: caHelp, usage: caUsage },
};

/** `clearance help [COMMAND]`. */
const helpUsage: Rule = { options: [], args: ['COMMAND'] };

/** Runs one CLI invocation and returns its exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, output: Output = processOutput): Promise<number> {
  try {
    return await runCommand(argv, env, output);
  } catch (error) {
    // A file the operator named that cannot be read or written (a missing folder, a file that
    // must be new, no permission) is said in one line, as every other refusal: not a stack trace.
    if (isFileError(error)) {
      output.err(error.message);
      return exit.failed;
    }
    // A value the command found wrong in its own reading (usage.ts checked the rest first).
    if (error instanceof UsageError) {
      output.err(error.message);
      return exit.usage;
    }
    throw error;
  }
}

async function runCommand(argv: string[], env: NodeJS.ProcessEnv, output: Output): Promise<number> {
  let parsed;
  try {
    parsed = parseInvocation(argv);
  } catch (error) {
    output.err(`${(error as Error).message}\n\n${mainHelp}`);
    return exit.usage;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  const known = (name: string | undefined) => name !== undefined && Object.hasOwn(commands, name);
  if (!command || command === 'help') {
    const problem = command === 'help' ? usageProblem(helpUsage, parsed) : undefined;
    if (problem) {
      output.err(`${problem.line}\n\n${mainHelp}`);
      return exit.usage;
    }
    const topic = command === 'help' ? rest[0] : undefined;
    if (topic !== undefined && !known(topic)) {
      output.err(`unknown command "${topic}"\n\n${mainHelp}`);
      return exit.usage;
    }
    output.out(topic ? commands[topic]!.help : mainHelp);
    return command || values.help ? exit.ok : exit.usage;
  }
  if (values.help) {
    output.out(known(command) ? commands[command]!.help : mainHelp);
    return known(command) ? exit.ok : exit.usage;
  }
  if (!known(command)) {
    output.err(`unknown command "${command}"\n\n${mainHelp}`);
    return exit.usage;
  }
  // What the command takes, checked before any configuration is read or database opened: an
  // option it does not take, an argument too many or a number out of range changes nothing.
  const problem = usageProblem(commands[command]!.usage, parsed);
  if (problem) {
    output.err(problem.help ? `${problem.line}\n\n${commands[command]!.help}` : problem.line);
    return exit.usage;
  }

  // A worker of `start --workers N` takes its configuration from the primary, validated there once.
  if (command === 'start' && cluster.isWorker) return startCommand(undefined, undefined, output);

  // `policy test` evaluates files only: no configuration, no database, so a policy repository's CI can run it.
  if (command === 'policy' && rest[0] === 'test') return policyTestCommand(rest[1], output);

  let config: Config;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      output.err(`configuration error: ${error.message}`);
      return exit.usage;
    }
    throw error;
  }

  switch (command) {
    case 'start':
      return startCommand(config, values.workers, output);
    case 'migrate': {
      const storage = openStorage(storageOptionsFor(config));
      try {
        const result = await migrate(storage);
        const applied = result.results?.filter((r) => r.status === 'Success').map((r) => r.migrationName) ?? [];
        output.out(applied.length ? `applied ${applied.join(', ')} to ${storage.location}` : `${storage.location} is up to date`);
        return exit.ok;
      } finally {
        await storage.close();
      }
    }
    case 'backup':
      return backupCommand(config, { output: values.output }, output);
    case 'init':
      return withContext(config, output, (ctx) =>
        initCommand(ctx, { clientId: values['client-id'], jwksFile: values.jwks }, output),
      );
    case 'clients':
      return withContext(config, output, (ctx) =>
        clientsCommand(
          ctx,
          rest[0],
          { scope: values.scope, uses: values.uses, ttl: values.ttl, ownerLei: values['owner-lei'], grantTypes: values['grant-types'], kinds: values.kinds, clientId: rest[1], overlap: values.overlap },
          output,
        ),
      );
    case 'users':
      return withContext(config, output, (ctx) => usersCommand(ctx, rest[0], { username: rest[1], provider: values.provider, subject: values.subject, reason: values.reason, deadline: values.deadline }, output));
    case 'keys':
      return withContext(config, output, (ctx) =>
        keysCommand(ctx, rest[0], { json: values.json, alg: values.alg, overlap: values.overlap, kid: rest[1], audit: values.audit, compromised: values.compromised, reason: values.reason }, output),
      );
    case 'apply': {
      // The file as -f FILE, or as the one positional: `clearance apply --plan FILE`.
      const file = values.file ?? (rest.length === 1 ? rest[0] : undefined);
      if (!file || (values.file !== undefined && rest.length > 0) || rest.length > 1 || (values.force && !values.prune) || (values.plan && values['dry-run'])) {
        output.err(applyHelp);
        return exit.usage;
      }
      const mode = { plan: values.plan ?? false, dryRun: values['dry-run'] ?? false, prune: values.prune ?? false, force: values.force ?? false };
      return withContext(config, output, (ctx) => applyCommand(ctx, file, mode, output));
    }
    case 'audit': {
      const { txn, subject, client, type, decision, since, until } = values;
      return auditCommand(
        {
          action: rest[0],
          file: rest[1],
          target: rest[2],
          json: values.json,
          key: values.key,
          checkpoint: values.checkpoint,
          output: values.output,
          event: values.event,
          treeSize: values['tree-size'],
          from: values.from,
          to: values.to,
          retention: values.retention,
          dryRun: values['dry-run'],
          matter: values.matter,
          reason: values.reason,
          address: values.address,
          // `verify-bundle BUNDLE --payload A B C`: the bundle, then every file after --payload.
          ...(rest[0] === 'verify-bundle' ? verifyBundleOperands(parsed.tokens ?? []) : {}),
          query: { txn, subject, client, type, decision, since, until },
        },
        output,
        (run) => withContext(config, output, run),
      );
    }
    case 'policy': {
      const args = {
        action: rest[0],
        target: rest[1],
        candidate: values.candidate,
        last: values.last,
        approver: values.approver,
        version: values.version,
        changeRef: values['change-ref'],
        author: values.author,
      };
      return withContext(config, output, (ctx) => policyCommand(ctx, args, output));
    }
    case 'ca':
      return withContext(config, output, (ctx) =>
        caCommand(
          ctx,
          {
            action: rest[0],
            target: rest[1],
            name: values.name,
            organization: values.organization,
            keyType: values['key-type'],
            rootKeyOut: values['root-key-out'],
            passphraseFile: values['passphrase-file'],
            pkcs11: values.pkcs11,
            intermediateCustody: values['intermediate-custody'],
            rootDays: values['root-days'],
            intermediateDays: values['intermediate-days'],
            profile: values.profile,
            holder: values.holder,
            csr: values.csr,
            lifetime: values.lifetime,
            output: values.output,
            reason: values.reason,
            json: values.json,
          },
          output,
        ),
      );
    case 'partner':
      return withContext(config, output, (ctx) =>
        partnerCommand(ctx, { action: rest[0], id: rest[1], assertion: values.assertion, kind: values.kind }, output),
      );
  }
  return exit.usage;
}

/** Opens what a command needs with a quiet logger (warnings only, to stderr), runs it, closes. */
async function withContext(config: Config, output: Output, run: (ctx: Context) => Promise<number>): Promise<number> {
  let ctx: Context;
  try {
    // No statement timeout: a command may scan the whole audit log, and an operator sees a hang.
    ctx = await openContext({ ...config, dbStatementTimeoutMs: 0 }, { log: createLogger('warn', process.stderr), listenForChanges: false });
  } catch (error) {
    // A ConfigError found only now (e.g. no CLEARANCE_MASTER_KEY in production) is still configuration: exit 2.
    if (error instanceof ConfigError) {
      output.err(`configuration error: ${error.message}`);
      return exit.usage;
    }
    output.err(`cannot open Clearance's data: ${(error as Error).message}`);
    return exit.failed;
  }
  try {
    return await run(ctx);
  } finally {
    await ctx.storage.close();
  }
}

/** A Node file-system error naming its path (`ENOENT: no such file or directory, open '…'`). */
function isFileError(error: unknown): error is NodeJS.ErrnoException {
  const e = error as NodeJS.ErrnoException | undefined;
  return e instanceof Error && typeof e.code === 'string' && typeof e.syscall === 'string' && typeof e.path === 'string';
}
