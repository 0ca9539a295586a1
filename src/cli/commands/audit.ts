import { auditKeyCustody } from '../../audit/lifecycle.ts';
import { tsaTrustPems } from '../../pki/tsa.ts';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { AuditKeys, auditKeyFingerprint, auditOrigin, parseAuditPublicKeys } from '../../audit/audit-key.ts';
import { BundleError, exportBundle, verifyBundle } from '../../audit/bundle.ts';
import { checkPayloads, type SuppliedPayload } from '../../audit/bundle-appended.ts';
import { isPostgres } from '../../audit/dialect.ts';
import { sealNow } from '../../audit/lifecycle.ts';
import { AuditProofError, proveConsistency, proveEvent, type SignedCheckpoint } from '../../audit/proofs.ts';
import { checkpointProblem } from '../../audit/checkpoint.ts';
import { AuditQueryError, queryEvents, readAuditQuery, readTime, type AuditQuery } from '../../audit/query.ts';
import { requestHoldRelease } from '../../audit/hold-release.ts';
import { holdDetails, HoldError, listHolds, placeHold, type Hold } from '../../audit/holds.ts';
import { parseRetention, planPrune, prune, RetentionError, withEntityParties } from '../../audit/retention.ts';
import { sqliteFileOf, verifyStore, type VerifyReport } from '../../audit/verify.ts';
import type { Context } from '../../context.ts';
import { resolveMasterKey } from '../../keys/master-key.ts';
import { EraseError, eraseSubject } from '../../audit/erase.ts';
import { pseudonymOf } from '../../audit/personal-data.ts';
import { pseudonymKeyOf } from '../../audit/subject-keys.ts';
import { exit, type Output } from '../output.ts';
import { UsageError, wholeNumber, type WholeNumberOption } from '../numbers.ts';
import type { Rule } from '../usage.ts';
import { cliAdmin } from '../../risk/intrusion.ts';

export const auditHelp = `Usage: clearance audit verify [--key FILE] [--checkpoint FILE] [--json]
       clearance audit export (--txn ID | --subject S | --client C | --since T [--until T])
                              [--type TYPE] [--decision allow|deny] [-o FILE]
       clearance audit verify-bundle BUNDLE [--key FILE] [--payload [NAME=]FILE ...] [--json]
       clearance audit proof --event ID [--tree-size N]
       clearance audit proof --from M [--to N]
       clearance audit prune --retention SPEC [--dry-run]
       clearance audit hold place (--txn ID | --subject S | --client C | --since T --until T) --matter REF
       clearance audit hold list
       clearance audit hold release HOLD_ID --reason TEXT
       clearance audit erase-subject (SUBJECT | --address ADDR) [--reason TEXT]
       clearance audit key
       clearance audit seal

verify         recomputes every leaf hash and the Merkle tree from the store, checks every
               checkpoint and pruning record signature and that each checkpoint's root is the
               tree's at its size. Exit 0 when intact; exit 1 naming the first bad leaf index when
               an event was altered, removed, inserted or reordered, or a checkpoint forged.
               Each run is recorded as audit.verified (the log's status shows the last one).
                 --key FILE         accept only this audit public key (PEM or base64 SPKI), e.g.
                                    the one printed by \`audit key\` and kept out of band, and the
                                    keys it handed over to in later rotations; or several keys'
                                    PEMs, one after another
                 --checkpoint FILE  also require a checkpoint kept elsewhere (JSON, or a bundle):
                                    catches a tail removed together with its checkpoints
export         writes an evidence bundle of the matching sealed events: each with its inclusion
               proof into the latest checkpoint, that checkpoint, the audit public key and the
               token-signing JWKS in force, signed with the audit key, as canonical JSON.
               Filters combine: --txn, --subject, --client, --type, --decision allow|deny,
               --since/--until (ISO 8601 or epoch ms; since inclusive, until exclusive).
               -o FILE (default: standard output)
verify-bundle  verifies a bundle offline, without the database; --key pins the audit key (and
               accepts its successors by their signed handovers); --json prints the report. Also
               checks each approval's evidence and each token's list of approvals against them,
               and prints who approved what; checks each external producer's appended event
               (evidence.appended) and its JWS when signed, and prints them. BUNDLE is the one
               argument not after --payload; name it first
                 --payload FILE     a payload an external producer recorded (repeat it, or list
                                    more files after it: every argument after --payload up to
                                    the next option is a payload file): matched to its event by
                                    SHA-256; a file matching no event's recorded hash fails.
                                    NAME=FILE names the event the file must match:
                                    PRODUCER:EVENT_ID (its producer's client_id and event_id),
                                    the evidence id, or a bare EVENT_ID when only one producer
                                    used it (else ambiguous: fails, naming the producers).
                                    Prints which events' payloads were supplied and verified
                                    (docs/evidence.md)
proof          prints (JSON) an event's inclusion proof into a checkpoint (default: the latest),
               or the consistency proof between the checkpoints at tree sizes M and N
prune          removes the sealed prefix every event of which is past its retention, leaving a
               signed pruning record. SPEC: TYPE=PERIOD,... with * for the other types, e.g.
               "token.introspected=90d,*=7y" (periods: ms s m h d y). Types not covered are kept.
               lei:LEI=PERIOD keeps a legal entity's events at least that long, e.g.
               "*=5y,lei:5493001KJTIIGC8Y1R12=10y": those whose client, subject or actor is one
               of its clients (owner_lei) or people (its desks) as the directory stands when the
               prune runs, and those whose details name the LEI (lei, owner_lei, producer_lei).
               A person who moved to another firm, or a removed client, is no longer counted:
               their older events fall back to the other periods. A LEI that is no legal entity
               here is refused (exit 2)
               Never removes an event a legal hold covers: the prefix stops before the first one
               (the dry run names the holds that stop it)
hold           legal holds: \`place\` puts one on a txn, subject, client or time range (--since,
               --until: ISO 8601 or epoch ms) under a matter reference (--matter, required),
               audited; \`list\` prints every hold and its status; \`release\` asks for a hold's
               two-person release: two people holding \`compliance\` approve it on the approvals
               page (or the admin approvals API) before the hold ends
erase-subject  destroys a data subject's keys (crypto-shredding, docs/privacy.md): the personal
               fields of their events (source addresses, names, emails, …) can no longer be
               read, while every event still verifies. SUBJECT is a person's id; --address
               names the pseudonymous subject of events that name no one (a failed sign-in of
               an unknown user). Refused while a legal hold covers the subject or one of those
               events. Audited (\`audit.subject_erased\`); --reason is kept with the destroyed key
key            prints the audit public key (PEM), its fingerprint and the log origin: the key
               that signs now (\`clearance keys rotate --audit\` replaces it; \`clearance keys
               status\` lists every audit key, old ones kept for verifying what they signed)
seal           seals the events recorded so far (a running server does this every 100 ms on
               SQLite, 500 ms on PostgreSQL: CLEARANCE_AUDIT_SEAL_INTERVAL_MS)`;

/** `audit proof --tree-size`, `--from`, `--to`: sizes of the tree a checkpoint signed. */
const treeSizeFlag = (flag: `--${string}`): WholeNumberOption => ({ flag, min: 1, max: Number.MAX_SAFE_INTEGER, note: 'a tree size' });
export const treeSizeOption = treeSizeFlag('--tree-size');
export const fromOption = treeSizeFlag('--from');
export const toOption = treeSizeFlag('--to');

/** What each action takes (src/cli/usage.ts); the usage lines above say the same. */
export const auditUsage = {
  actions: {
    verify: { options: ['key', 'checkpoint', 'json'], args: [] },
    export: { options: ['txn', 'subject', 'client', 'since', 'until', 'type', 'decision', 'output'], args: [] },
    // BUNDLE and the files after --payload, told apart by their order (verifyBundleOperands).
    'verify-bundle': { options: ['key', 'payload', 'json'], args: 'operands' },
    proof: { options: ['event', 'tree-size', 'from', 'to'], args: [], numbers: [treeSizeOption, fromOption, toOption] },
    prune: { options: ['retention', 'dry-run'], args: [] },
    hold: {
      actions: {
        place: { options: ['txn', 'subject', 'client', 'since', 'until', 'matter'], args: [] },
        list: { options: [], args: [] },
        release: { options: ['reason'], args: ['HOLD_ID'] },
      },
    },
    'erase-subject': { options: ['address', 'reason'], args: ['SUBJECT'] },
    key: { options: [], args: [] },
    seal: { options: [], args: [] },
  },
} as const satisfies Rule;

export interface AuditArgs {
  action?: string | undefined;
  file?: string | undefined;
  json?: boolean | undefined;
  key?: string | undefined;
  checkpoint?: string | undefined;
  output?: string | undefined;
  event?: string | undefined;
  treeSize?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  retention?: string | undefined;
  dryRun?: boolean | undefined;
  /** `audit hold place --matter REF`. */
  matter?: string | undefined;
  /** `audit hold release HOLD_ID`: the hold. */
  target?: string | undefined;
  /** `audit hold release --reason TEXT`. */
  reason?: string | undefined;
  /** `audit erase-subject --address ADDR`: the pseudonymous subject of that address. */
  address?: string | undefined;
  /** `audit verify-bundle --payload [NAME=]FILE`: payload files to match to appended events. */
  payloads?: string[] | undefined;
  /** `audit verify-bundle`: why its arguments do not read as one bundle and payload files (a usage error). */
  operandProblem?: string | undefined;
  /** Query filters, as given on the command line. */
  query: Record<string, string | undefined>;
}

/**
 * `clearance audit ...`. `withContext` opens the database; verify-bundle never calls it.
 */
export async function auditCommand(
  args: AuditArgs,
  output: Output,
  withContext: (run: (ctx: Context) => Promise<number>) => Promise<number>,
): Promise<number> {
  try {
    switch (args.action) {
      case 'verify-bundle':
        return verifyBundleCommand(args, output);
      case 'verify':
        return await withContext((ctx) => verifyCommand(ctx, args, output));
      case 'export':
        return await withContext((ctx) => exportCommand(ctx, args, output));
      case 'proof':
        return await withContext((ctx) => proofCommand(ctx, args, output));
      case 'prune':
        return await withContext((ctx) => pruneCommand(ctx, args, output));
      case 'hold':
        return await withContext((ctx) => holdCommand(ctx, args, output));
      case 'erase-subject':
        return await withContext((ctx) => eraseSubjectCommand(ctx, args, output));
      case 'key':
        return await withContext(async (ctx) => {
          const key = await auditKeys(ctx).signingKey(auditOrigin(ctx.config.issuer));
          output.out(key.publicKey.export({ format: 'pem', type: 'spki' }).toString().trimEnd());
          output.out(`fingerprint: ${key.keyId}\norigin: ${key.origin}`);
          return exit.ok;
        });
      case 'seal':
        return await withContext(async (ctx) => {
          const sealed = await sealNow(ctx, resolveMasterKey(ctx.config).key);
          output.out(sealed === undefined ? 'a running server holds the sealer lock and seals the log' : `sealed ${sealed} event(s)`);
          return exit.ok;
        });
      default:
        output.err(auditHelp);
        return exit.usage;
    }
  } catch (error) {
    if (error instanceof EraseError) {
      output.err(`not erased: ${error.message}`);
      return error.holds.length > 0 ? exit.failed : exit.usage;
    }
    if (error instanceof UsageError || error instanceof AuditQueryError || error instanceof RetentionError || error instanceof HoldError) {
      output.err(error.message);
      return exit.usage;
    }
    if (error instanceof AuditProofError || error instanceof BundleError) {
      output.err(error.message);
      return exit.failed;
    }
    throw error;
  }
}

function auditKeys(ctx: Context): AuditKeys {
  return new AuditKeys(ctx.storage.db, resolveMasterKey(ctx.config).key, ctx.clock, auditKeyCustody(ctx));
}

function readPinnedKey(file: string | undefined) {
  return file === undefined ? undefined : parseAuditPublicKeys(readFileSync(file, 'utf8'));
}

/**
 * A checkpoint kept elsewhere (`--checkpoint`): a signed checkpoint's JSON, or a bundle holding one.
 * A file that is neither is the operator's mistake, said as such — not a failed verification of
 * a checkpoint with no tree size, nor a JSON parser's stack trace.
 */
function readCheckpointFile(file: string): SignedCheckpoint | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    return `cannot read a checkpoint from ${file}: ${(error as Error).message}`;
  }
  const record = parsed as (SignedCheckpoint & { checkpoint?: SignedCheckpoint }) | null;
  const checkpoint = typeof record === 'object' && record !== null ? (record.checkpoint ?? record) : undefined;
  const problem = checkpointProblem(checkpoint) ?? (typeof checkpoint?.keyId !== 'string' || typeof checkpoint.signature !== 'string' ? 'it has no keyId and signature' : undefined);
  if (problem !== undefined) return `${file} holds no signed checkpoint (origin, treeSize, rootHash, time, keyId, signature), nor a bundle with one: ${problem}`;
  return checkpoint!;
}

async function verifyCommand(ctx: Context, args: AuditArgs, output: Output): Promise<number> {
  const keys = auditKeys(ctx);
  const external: SignedCheckpoint[] = [];
  if (args.checkpoint) {
    const checkpoint = readCheckpointFile(args.checkpoint);
    if (typeof checkpoint === 'string') {
      output.err(checkpoint);
      return exit.usage;
    }
    external.push(checkpoint);
  }
  const pinnedKey = readPinnedKey(args.key);
  const sqliteFile = sqliteFileOf(ctx.storage);
  const report = await verifyStore(ctx.storage.db, { keys: await keys.publicKeys(), externalCheckpoints: external, ...(pinnedKey ? { pinnedKey } : {}), ...(sqliteFile ? { sqliteFile } : {}) });
  const keyProblems = await keys.checkStoredKeys();
  if (report.ok && keyProblems.length) report.problem = { message: keyProblems.join('; ') };
  const ok = report.ok && keyProblems.length === 0;
  await recordVerification(ctx, { ...report, ok }, external.length > 0, output);
  if (args.json) {
    output.out(JSON.stringify({ ...report, ok }, null, 2));
  } else if (ok) {
    const latest = report.latest;
    output.out(
      `audit log intact: ${report.leaves} leaves` +
        (report.prunedBefore ? ` after the ${report.prunedBefore} pruned` : '') +
        `, ${report.checkpoints} checkpoints` +
        (latest ? `; latest: tree size ${latest.treeSize}, root ${latest.rootHash}, signed ${new Date(latest.time).toISOString()}` : '') +
        (report.unsealed ? `; ${report.unsealed} event(s) not sealed yet` : ''),
    );
    if (report.keyIds.length) output.out(`audit key fingerprint(s): ${report.keyIds.join(', ')}${pinnedKey ? ' (pinned)' : ' (compare with the published one, or pass --key)'}`);
  } else {
    const problem = report.problem!;
    output.err(
      `audit log verification FAILED` +
        (problem.leafIndex !== undefined ? `: first bad leaf index ${problem.leafIndex}` : '') +
        (problem.checkpoint !== undefined ? ` (checkpoint at tree size ${problem.checkpoint})` : '') +
        `\n${problem.message}`,
    );
  }
  return ok ? exit.ok : exit.failed;
}

/**
 * Puts the verification on the record (`audit.verified`): the log's status shows when it was last
 * verified in full and what that found. A store that cannot be written (a read-only copy) is
 * still verified; the result then stays on the terminal only.
 */
async function recordVerification(ctx: Context, report: VerifyReport, againstExternal: boolean, output: Output): Promise<void> {
  try {
    await ctx.audit.record({
      type: 'audit.verified',
      actor: cliAdmin(),
      decision: { allow: report.ok, reasons: [report.ok ? 'intact' : 'failed'] },
      details: {
        ok: report.ok,
        leaves: report.leaves,
        pruned_before: report.prunedBefore,
        checkpoints: report.checkpoints,
        tree_size: report.latest?.treeSize ?? 0,
        ...(report.latest ? { root_hash: report.latest.rootHash } : {}),
        key_ids: report.keyIds,
        against_external_checkpoint: againstExternal,
        ...(report.problem ? { problem: { message: report.problem.message.slice(0, 500), ...(report.problem.leafIndex !== undefined ? { leaf_index: report.problem.leafIndex } : {}) } } : {}),
      },
    });
  } catch (error) {
    output.err(`note: the verification could not be recorded in the log (${(error as Error).message})`);
  }
}

async function exportCommand(ctx: Context, args: AuditArgs, output: Output): Promise<number> {
  const query = readAuditQuery(args.query);
  if (query.txn === undefined && query.subject === undefined && query.client === undefined && query.since === undefined) {
    output.err('audit export needs --txn, --subject, --client or --since\n\n' + auditHelp);
    return exit.usage;
  }
  const masterKey = resolveMasterKey(ctx.config).key;
  await waitUntilSealed(ctx, masterKey, query);
  const keys = auditKeys(ctx);
  const key = await keys.signingKey(auditOrigin(ctx.config.issuer));
  const tsaTrust = ctx.config.tsa ? tsaTrustPems(ctx.config.tsa.trustFile) : [];
  const result = await exportBundle(ctx.storage.db, { query, key, keyFor: (keyId) => keys.signingKeyFor(keyId), jwksInForce: (from, to) => ctx.keys.jwksInForce(from, to), now: ctx.clock.now(), tsaTrust });
  if (args.output) writeFileSync(args.output, result.text, { mode: 0o600 });
  else process.stdout.write(result.text);
  await ctx.audit.record({ type: 'audit.exported', actor: cliAdmin(), details: { query: { ...query }, events: result.bundle.events.length, treeSize: result.bundle.checkpoint.treeSize } });
  const summary =
    `exported ${result.bundle.events.length} event(s) proven into the checkpoint at tree size ${result.bundle.checkpoint.treeSize}` +
    (args.output ? ` to ${args.output}` : '') +
    `; audit key ${result.bundle.auditKey.keyId}` +
    (result.unsealed ? `; ${result.unsealed} matching event(s) were not sealed yet and are not included` : '');
  if (args.output) output.out(summary);
  else output.err(summary);
  return exit.ok;
}

/** Seals what is committed (or waits for the server that holds the sealer lock) so the export is complete. */
async function waitUntilSealed(ctx: Context, masterKey: Buffer, query: AuditQuery): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const sealed = await sealNow(ctx, masterKey);
    if (sealed !== undefined || !isPostgres(ctx.storage.db)) return;
    const page = await queryEvents(ctx.storage.db, query, { limit: 1000 });
    if (page.events.every((e) => e.leafIndex !== null) || Date.now() > deadline) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const verifyBundleUsage = 'usage: clearance audit verify-bundle BUNDLE [--key FILE] [--payload [NAME=]FILE ...]';

/** A token of node:util parseArgs (`tokens: true`), as far as verifyBundleOperands reads it. */
export type ArgToken = { kind: 'positional'; value: string } | { kind: 'option'; name: string; value?: string | undefined } | { kind: 'option-terminator' };

/**
 * `verify-bundle`'s operands, read in the order given so that no argument is both: after the
 * command and the action, every positional that follows a `--payload` (up to the next option) is a
 * payload file; the bundle is the one positional that does not. `verify-bundle --payload a b
 * BUNDLE` therefore names no bundle and is refused with a message saying so — never read as
 * checking the bundle `b`.
 */
export function verifyBundleOperands(tokens: readonly ArgToken[]): { file: string | undefined; payloads: string[] | undefined; operandProblem?: string } {
  const bundles: string[] = [];
  const payloads: string[] = [];
  let sawPayload = false;
  let afterPayload = false;
  let skip = 2; // the command (`audit`) and the action (`verify-bundle`)
  for (const token of tokens) {
    if (token.kind === 'positional') {
      if (skip > 0) skip--;
      else (afterPayload ? payloads : bundles).push(token.value);
    } else if (token.kind === 'option' && token.name === 'payload') {
      sawPayload = true;
      afterPayload = true;
      if (typeof token.value === 'string') payloads.push(token.value);
    } else afterPayload = false;
  }
  const result = { file: bundles.length === 1 ? bundles[0] : undefined, payloads: sawPayload ? payloads : undefined };
  if (bundles.length === 0 && sawPayload) return { ...result, operandProblem: `no bundle: every argument after --payload up to the next option is a payload file (${payloads.join(', ')}); name the bundle first` };
  if (bundles.length > 1) return { ...result, operandProblem: `one bundle, not ${bundles.length} (${bundles.join(', ')}): payload files go after --payload, before any other option` };
  return result;
}

function verifyBundleCommand(args: AuditArgs, output: Output): number {
  if (args.operandProblem !== undefined || !args.file) {
    output.err(`${args.operandProblem !== undefined ? `verify-bundle: ${args.operandProblem}\n` : ''}${verifyBundleUsage}`);
    return exit.usage;
  }
  let text: string;
  try {
    text = readFileSync(args.file, 'utf8');
  } catch (error) {
    output.err(`cannot read ${args.file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return exit.failed;
  }
  const pinnedKey = readPinnedKey(args.key);
  const report = verifyBundle(text, pinnedKey ? { pinnedKey } : {});
  const supplied = readPayloads(args.payloads ?? []);
  const payloads = args.payloads?.length ? checkPayloads(report.appended ?? [], supplied.payloads) : undefined;
  const payloadProblems = [...supplied.problems, ...(payloads?.problems ?? [])];
  const ok = report.ok && payloadProblems.length === 0;
  if (args.json) output.out(JSON.stringify({ ...report, ok, ...(payloads ? { payloads: { ...payloads, problems: payloadProblems } } : {}) }, null, 2));
  else if (report.ok) {
    output.out(
      `bundle verified: ${report.events} event(s) included in the checkpoint at tree size ${report.checkpoint!.treeSize} ` +
        `(root ${report.checkpoint!.rootHash}, signed ${new Date(report.checkpoint!.time).toISOString()})`,
    );
    if (report.approvals) {
      output.out(`approvals verified: ${report.approvals} (a passkey's signature over exactly the approved content, or a fresh token's facts)`);
      for (const a of report.approvers ?? []) {
        const what = a.requestId ? `${a.kind ?? 'request'} ${a.requestId}${a.role === 'subject' ? ' (for themselves)' : ''}` : `order entries (txn ${a.txn ?? '-'})`;
        const how = a.method === 'passkey' ? `passkey, signature verified${a.acr ? `, ${a.acr}` : ''}` : `${a.method}${a.acr ? `, ${a.acr}` : ''}`;
        output.out(`  ${a.approver ?? '?'} approved ${what} at ${new Date(a.time).toISOString()} (${how}); content digest ${a.digest ?? '-'}`);
      }
    }
    for (const s of report.signedRequests ?? []) {
      output.out(
        `signed request verified: ${s.method} ${s.target} (txn ${s.txn}) signed by ${s.holder} (certificate ${s.signer}, profile ${s.profile}) at ${new Date(s.signedAt).toISOString()}; ` +
          `status then ${s.statusAtSigning}; ${s.timestamp !== undefined ? `time-stamped ${new Date(s.timestamp).toISOString()}` : 'no time stamp'}; CA root sha256 ${s.rootSha256}`,
      );
    }
    const appended = report.appended ?? [];
    if (appended.length) output.out(`appended evidence verified: ${appended.length} event(s) from external producers (${appended.filter((a) => a.signed).length} signed by their producer, JWS verified)`);
    for (const a of appended) {
      output.out(
        `  ${a.type} ${a.eventId} by ${a.producer}${a.producerLei ? ` (${a.producerLei})` : ''} under txn ${a.txn}, recorded ${new Date(a.recordedAt).toISOString()}` +
          `${a.occurredAt ? `, occurred ${a.occurredAt}` : ''}; payload sha256 ${a.payloadSha256}; ${a.signed ? `signed (key ${a.keyThumbprint})` : 'not signed'}`,
      );
    }
    // A counterparty's bundle (src/audit/bundle-counterparty.ts): for whom it was cut, and what it leaves out.
    const c = report.counterparty;
    if (c) {
      output.out(`counterparty bundle verified: cut for ${c.client}${c.lei ? ` (${c.lei})` : ''}: ${c.tookPart} hop(s) it took part in, ${c.chain} earlier hop(s) of the chain before them; ${c.withheld} event(s) of the txn withheld (counted, not shown)${c.personsWithheld !== undefined ? `, ${c.personsWithheld} of them for naming a person (the firm has a pairwise client)` : ''}`);
      const references = [...c.mandates.map((m) => `mandate ${m}`), ...c.grants.map((g) => `consent grant ${g}`)];
      if (references.length) output.out(`  the chain's references: ${references.join(', ')}`);
    }
    for (const m of payloads?.matched ?? []) output.out(`payload verified: ${m.file} is the payload of ${m.evidence.type} ${m.evidence.eventId} by ${m.evidence.producer} (leaf ${m.evidence.leafIndex}), sha256 ${m.evidence.payloadSha256}`);
    for (const u of payloads?.unsupplied ?? []) output.out(`payload not supplied: ${u.type} ${u.eventId} by ${u.producer}`);
    // The address-book changes behind the transfers (src/audit/bundle-destinations.ts): who asked, who approved, from when usable.
    for (const d of report.destinations ?? []) {
      output.out(
        `address-book change verified: destination ${d.id} v${d.version} (${d.key ?? '?'}) of ${d.lei ?? '?'} account ${d.account ?? '?'} asked by ${d.requestedBy ?? '?'}` +
          `${d.reviewReason ? `, held for review (${d.reviewReason})` : ''}; approved by ${d.approvals.map((a) => `${a.approver ?? '?'} (${a.method}${a.signatureVerified ? ', signature verified' : ''})`).join(', ')}` +
          `${d.usableFrom !== undefined ? `; usable from ${new Date(d.usableFrom).toISOString()}` : ''} (txn ${d.txn})`,
      );
    }
    for (const h of report.holds ?? []) {
      const scope = h.kind === 'range' ? `${new Date(Number(h.from)).toISOString()}..${new Date(Number(h.to)).toISOString()}` : `${String(h.kind)} ${String(h.value)}`;
      const state = h.released_at !== undefined ? `released ${new Date(Number(h.released_at)).toISOString()} by ${(h.released_by as string[] | undefined)?.join(', ') ?? '?'}` : 'in force at export';
      output.out(`legal hold ${String(h.hold_id)} (matter ${String(h.matter_ref)}; ${scope}) applied: ${state}`);
    }
    // A newer key than the pinned one is accepted through the handovers that lead to it (src/audit/bundle-keys.ts).
    const successor = pinnedKey !== undefined && !pinnedKey.some((key) => auditKeyFingerprint(key) === report.keyId);
    output.out(`audit key fingerprint: ${report.keyId}${pinnedKey ? (successor ? ' (a successor of the pinned key)' : ' (pinned)') : ' (compare with the published one, or pass --key)'}`);
    if (report.keyChain) output.out(`  handed over from ${report.keyChain.slice(1).join(' <- ')} (each handover signed by the key it replaced)`);
    if (payloadProblems.length) output.err(`payload verification FAILED:\n${payloadProblems.map((p) => `  ${p}`).join('\n')}`);
  } else output.err(`bundle verification FAILED:\n${[...report.problems, ...payloadProblems].map((p) => `  ${p}`).join('\n')}`);
  return ok ? exit.ok : exit.failed;
}

/**
 * The payload files of `--payload`, hashed: `FILE`, or `NAME=FILE` (when no file has the whole
 * name; NAME holds no `=`, as neither a client_id nor an event_id does). A file that cannot be read
 * is a problem of the check, not a usage error.
 */
function readPayloads(args: string[]): { payloads: SuppliedPayload[]; problems: string[] } {
  const payloads: SuppliedPayload[] = [];
  const problems: string[] = [];
  for (const arg of args) {
    const eq = arg.indexOf('=');
    const named = eq > 0 && !existsSync(arg) ? { names: arg.slice(0, eq), file: arg.slice(eq + 1) } : { file: arg };
    try {
      payloads.push({ ...named, sha256: createHash('sha256').update(readFileSync(named.file)).digest('hex') });
    } catch (error) {
      problems.push(`payload ${named.file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
  }
  return { payloads, problems };
}

async function proofCommand(ctx: Context, args: AuditArgs, output: Output): Promise<number> {
  if (args.event) {
    output.out(JSON.stringify(await proveEvent(ctx.storage.db, args.event, wholeNumber(treeSizeOption, args.treeSize)), null, 2));
    return exit.ok;
  }
  if (args.from) {
    output.out(JSON.stringify(await proveConsistency(ctx.storage.db, wholeNumber(fromOption, args.from)!, wholeNumber(toOption, args.to)), null, 2));
    return exit.ok;
  }
  output.err('usage: clearance audit proof --event ID [--tree-size N] | --from M [--to N]');
  return exit.usage;
}

async function pruneCommand(ctx: Context, args: AuditArgs, output: Output): Promise<number> {
  if (!args.retention) {
    output.err('usage: clearance audit prune --retention SPEC [--dry-run]');
    return exit.usage;
  }
  // lei:LEI=PERIOD entries keep a firm's events longer: its clients and people, resolved now (an
  // unknown LEI is refused: RetentionError, exit 2).
  const policy = await withEntityParties(ctx, parseRetention(args.retention));
  const now = ctx.clock.now();
  if (args.dryRun) {
    const plan = await planPrune(ctx.storage.db, policy, now);
    output.out(plan.events ? `would remove leaves ${plan.prunedBefore}..${plan.pruneBefore - 1} (${plan.events} events)` : 'nothing to prune');
    for (const line of heldLines(plan.held)) output.out(line);
    return exit.ok;
  }
  const key = await auditKeys(ctx).signingKey(auditOrigin(ctx.config.issuer));
  const result = await prune(ctx.storage.db, policy, key, now);
  if (!result.events) {
    output.out('nothing to prune');
    return exit.ok;
  }
  await ctx.audit.record({
    type: 'audit.pruned',
    actor: cliAdmin(),
    details: { prunedBefore: result.pruneBefore, events: result.events, rootHash: result.rootHash!, policy: args.retention, ...(result.held.length ? { held_by: result.held.map((h) => h.hold.id) } : {}) },
  });
  output.out(`removed leaves ${result.prunedBefore}..${result.pruneBefore - 1} (${result.events} events); signed pruning record root ${result.rootHash}`);
  for (const line of heldLines(result.held)) output.out(line);
  return exit.ok;
}

/** What the legal holds kept from a prune, one line each. */
function heldLines(held: { hold: Hold; leaf: number }[]): string[] {
  return held.map(({ hold, leaf }) => `kept by legal hold ${hold.id} (matter ${hold.matterRef}; ${hold.kind}${hold.value !== undefined ? ` ${hold.value}` : ` ${new Date(hold.from!).toISOString()}..${new Date(hold.to!).toISOString()}`}): its first event is leaf ${leaf}; the prune stops before it`);
}

/** `clearance audit hold place|list|release`. */
async function holdCommand(ctx: Context, args: AuditArgs, output: Output): Promise<number> {
  const operator = cliAdmin();
  if (args.file === 'list') {
    const holds = await listHolds(ctx.storage.db);
    if (holds.length === 0) output.out('no legal holds');
    for (const hold of holds) output.out(JSON.stringify({ ...holdDetails(hold), ...(hold.releaseRequest !== undefined ? { release_request: hold.releaseRequest } : {}) }));
    return exit.ok;
  }
  if (args.file === 'release') {
    if (!args.target) {
      output.err('usage: clearance audit hold release HOLD_ID --reason TEXT');
      return exit.usage;
    }
    // The operator is nobody signed in: two compliance people approve (src/audit/hold-release.ts).
    const { hold, request } = await requestHoldRelease(ctx, { holdId: args.target, reason: args.reason, requester: operator, requesterType: 'client' });
    output.out(
      `asked for the release of legal hold ${hold.id} (matter ${hold.matterRef}): approval request ${request.id} waits for ${request.requiredApprovals} people holding compliance, until ${new Date(request.expiresAt).toISOString()}; the hold stays in force until then`,
    );
    return exit.ok;
  }
  if (args.file !== 'place') {
    output.err('usage: clearance audit hold place (--txn ID | --subject S | --client C | --since T --until T) --matter REF\n       clearance audit hold list\n       clearance audit hold release HOLD_ID --reason TEXT');
    return exit.usage;
  }
  // As audit export reads them: a value that is no time is a usage error naming its flag (AuditQueryError).
  const time = (flag: string, value: string | undefined) => (value === undefined ? undefined : readTime(flag, value));
  const hold = await placeHold(
    ctx,
    { txn: args.query.txn, subject: args.query.subject, client: args.query.client, from: time('--since', args.query.since), to: time('--until', args.query.until), matterRef: args.matter },
    operator,
  );
  output.out(`placed legal hold ${hold.id} (matter ${hold.matterRef}); audit prune keeps every event it covers`);
  return exit.ok;
}

/** `clearance audit erase-subject (SUBJECT | --address ADDR) [--reason TEXT]` (src/audit/erase.ts). */
async function eraseSubjectCommand(ctx: Context, args: AuditArgs, output: Output): Promise<number> {
  if ((args.file === undefined) === (args.address === undefined)) {
    output.err('usage: clearance audit erase-subject (SUBJECT | --address ADDR) [--reason TEXT]');
    return exit.usage;
  }
  const subject = args.file ?? pseudonymOf(pseudonymKeyOf(resolveMasterKey(ctx.config).key), 'source_address', args.address!);
  const erased = await eraseSubject(ctx, subject, { actor: cliAdmin(), reason: args.reason });
  output.out(
    `erased ${erased.subject}: key generation(s) ${erased.generations.join(', ')} destroyed; the personal fields of ${erased.events} event(s) can no longer be read. ` +
      'The events stay and verify (clearance audit verify).',
  );
  return exit.ok;
}
