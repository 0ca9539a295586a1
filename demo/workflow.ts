/**
 * The institutional workflow, end to end (issue 8 item 5): an algorithm places an order under a
 * mandate at the arranger, its first token starting the trade's txn (issue 17); the arranger exchanges the token for one to the broker; the broker
 * executes and exchanges again for a DPoP-bound settlement token to the clearing firm, which sees
 * the whole delegation chain; a retried settlement is refused; compliance revokes the mandate and
 * the next hop fails closed; the evidence bundle of the transaction is exported and verified
 * offline with the CLI, and the chain is rebuilt from the audit log alone. The broker's order
 * management system and the clearing firm's settlement system record what they handled under the
 * txn as evidence producers (issue 24 item 3): the bundle holds their payload hashes, and
 * `verify-bundle --payload` checks the payloads they kept.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import { context, trace } from '@opentelemetry/api';
import { traceContextHeaders } from 'clearance/guard';
import { executeApply, planApply } from '../src/apply/index.ts';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { formatProblem } from '../src/validation.ts';
import { tracingOn } from '../src/telemetry/spans.ts';
import { newDemoClients, tokenRequest } from './clients.ts';
import { demoDocument, loopbackAudiences, mandateId } from './config.ts';
import { freePorts } from './free-ports.ts';
import { startFirms, type Order } from './services.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));

/** What the demo found, for its test to assert. */
export interface DemoOutcome {
  txn: string;
  settlementChain: string[];
  duplicateStatus: number;
  afterRevocation: { exchangeStatus: number; newTokenError: string };
  bundleVerified: boolean;
  /** The bundle's events by type: the whole trade, from its first token to its refusals. */
  bundleEvents: Record<string, number>;
  rebuiltChain: string[];
  /** What the evidence producers recorded (the bundle's `evidence.appended`): producer, type, payload hash. */
  appendedEvidence: { producer: string; type: string; payload_sha256: string }[];
  /** The SHA-256 of each payload file the producers kept (the files go with the demo's directory), and verify-bundle's lines about them. */
  payloadFileHashes: string[];
  payloadsVerified: string[];
  /**
   * With tracing on (docs/observability.md): the trade's one trace, from algo-7's first token through
   * every hop's token exchange to the settlement.
   */
  traceId?: string;
  /**
   * The clearing firm's own fetch of the trade's evidence (docs/evidence.md "Evidence for
   * counterparties"): the answer, the hops as the bundle states them, its events by type, how many
   * it withholds, and verify-bundle's word on it.
   */
  counterpartyEvidence: { status: number; hops: [string, string[] | undefined][]; events: Record<string, number>; producers: string[]; withheld: number; verified: boolean };
}

export interface DemoOptions {
  /** Keep Clearance running after the story (for the console, `npm run demo -- --console`): the caller closes it. */
  keep?: boolean;
  /** The issuer's host name: `localhost` lets a browser use passkeys there (WebAuthn needs a host name, not an address). */
  host?: '127.0.0.1' | 'localhost';
}

/** Clearance as the demo left it, still running: its data directory goes when it is closed. */
export interface KeptDemo {
  clearance: RunningServer;
  close(): Promise<void>;
}

export async function runDemo(print: (line: string) => void = console.log, options: DemoOptions = {}): Promise<DemoOutcome & { kept?: KeptDemo }> {
  const step = (title: string) => print(`\n== ${title}`);
  const say = (line: string) => print(`   ${line}`);
  const dir = mkdtempSync(join(tmpdir(), 'clearance-demo-'));
  const started: { close(): Promise<unknown> }[] = [];
  let kept: KeptDemo | undefined;
  try {
    step('Clearance starts (SQLite, generated dev keys) and the platform team applies the configuration');
    const [port, ordersPort, executionPort, clearingPort] = (await freePorts(4)) as [number, number, number, number];
    const issuer = `http://${options.host ?? '127.0.0.1'}:${port}`;
    const env = { PORT: String(port), HOST: '127.0.0.1', CLEARANCE_ISSUER: issuer, CLEARANCE_DATA_DIR: dir };
    const clearance: RunningServer = await startServer(loadConfig(env), { log: createLogger('silent') });
    if (options.keep) {
      kept = {
        clearance,
        close: async () => {
          await clearance.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    } else {
      started.push(clearance);
    }
    const ports = { orders: ordersPort, execution: executionPort, clearing: clearingPort };
    const audiences = loopbackAudiences(ports);
    const { clients, keys } = await newDemoClients();
    const document = demoDocument(audiences, keys, join(root, 'examples', 'policies'), new Date());
    const { plan, problems } = await planApply(clearance.ctx, document);
    if (!plan) throw new Error(problems.map(formatProblem).join('\n'));
    const applied = await executeApply(clearance.ctx, plan, { actor: 'demo', via: 'cli' });
    say(`${issuer}: ${applied.changes.length} changes (4 firms, 4 resource servers, 7 firm clients (2 of them evidence producers, 1 the clearing firm’s evidence reader), mandate ${mandateId}, policy set demo-1 activated by a second person)`);

    step('The arranger, the broker and the clearing firm start their APIs, each behind clearance/guard');
    // The broker's OMS and the clearing firm's settlement system keep the payloads they record.
    const archive = join(dir, 'producer-archives');
    mkdirSync(archive);
    const producers = { oms: { client: clients.oms, archive }, settlement: { client: clients.settlement, archive } };
    const { arranger, broker, clearing } = await startFirms(issuer, audiences, ports, clients, started, producers);
    say(`order API ${arranger.url} · execution API ${broker.url} · clearing API ${clearing.url} (DPoP-bound tokens only)`);
    say('evidence producers: broker-oms (the broker’s OMS) and clearing-settlement (the clearing firm’s settlement system), evidence:append only');

    step('The asset manager algorithm algo-7 authenticates (private_key_jwt) and asks for a token under its mandate, starting the trade\'s txn');
    // With tracing on, algo-7's side of the trade is one span, `demo.trade`: its first token and its
    // order run in its context, and every hop continues its trace (docs/observability.md).
    const trade = trace.getTracer('clearance-demo').startSpan('demo.trade');
    const inTrade = <T>(work: () => Promise<T>): Promise<T> => context.with(trace.setSpan(context.active(), trade), work);
    // txn=new: Clearance mints the trade's transaction id, so the first token and everything after
    // it are filed under one txn (docs/audit.md).
    const first = await inTrade(() => tokenRequest(issuer, clients.algo, { grant_type: 'client_credentials', resource: audiences.orders, mandate: mandateId, txn: 'new' }));
    if (first.status !== 200) throw new Error(`algo-7 got no token: ${JSON.stringify(first.body)}`);
    const t1 = first.body.access_token as string;
    const c1 = decodeJwt(t1);
    say(`token for ${String(c1.aud)}: scope "${String(c1.scope)}", mandate ${JSON.stringify(c1.mandate)}, txn ${String(c1.txn)}, expires in ${String(first.body.expires_in)} s`);
    const noMandate = await tokenRequest(issuer, clients.algo, { grant_type: 'client_credentials', resource: audiences.orders });
    say(`without the mandate: ${noMandate.status} ${String(noMandate.body.error)} — ${String(noMandate.body.error_description)}`);

    step('algo-7 places an order; it travels arranger → broker → clearing, one exchanged token per hop');
    const order: Order = { instrument: 'EURUSD', instrument_class: 'fx', side: 'buy', notional: 2_000_000, currency: 'EUR' };
    const placed = await inTrade(() => postJson(`${arranger.url}/orders`, t1, order));
    if (placed.status !== 200) throw new Error(`the order failed: ${JSON.stringify(placed.body)}`);
    const execution = placed.body.execution as Record<string, unknown>;
    const settlement = execution.settlement as Record<string, unknown>;
    const txn = String(execution.txn);
    trade.setAttribute('clearance.txn', txn);
    trade.end();
    const traceId = tracingOn ? trade.spanContext().traceId : undefined;
    say(`order ${String(placed.body.order_id)} → execution ${String(execution.execution_id)} at ${String(execution.price)} (broker saw chain: ${(execution.chain as string[]).join(' < ')})`);
    say(`settlement ${String(settlement.settlement_id)} for ${String(settlement.subject)}, txn ${txn}`);
    say(`the clearing firm saw the delegation chain (newest first): ${(settlement.on_behalf_chain as string[]).join(' < ')} < ${String(settlement.subject)}; mandate ${JSON.stringify(settlement.mandate)}; bound by ${String(settlement.bound)}`);
    const recordedPayloads = [execution.evidence, settlement.evidence] as { event_id: string; type: string; payload_sha256: string; file: string }[];
    for (const r of recordedPayloads) say(`evidence appended under the txn: ${r.type} ${r.event_id}, payload sha256 ${r.payload_sha256} (signed by its producer; the payload stays in its archive)`);
    if (traceId) say(`one trace, ${traceId}: algo-7 → Clearance → arranger → Clearance → broker → Clearance → clearing, each span with the txn (docs/observability.md)`);

    step('The broker retries the settlement instruction (a time-out on the way back)');
    const retry = await fetch(`${broker.url}/executions/${String(execution.execution_id)}/resend-settlement`, { method: 'POST' });
    const retryBody = (await retry.json()) as Record<string, unknown>;
    say(`${retry.status} ${String(retryBody.error)} — ${String(retryBody.error_description)}`);

    step('Compliance revokes the mandate (admin API)');
    const admin = await tokenRequest(issuer, clients.compliance, { grant_type: 'client_credentials', resource: `${issuer}/admin`, scope: 'admin:write' });
    const revoke = await fetch(`${issuer}/admin/mandates/${mandateId}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${String(admin.body.access_token)}` },
      body: JSON.stringify({ reason: 'algorithm suspended pending review', revoked_by: 'compliance@demo-am.example' }),
    });
    say(`revoke: ${revoke.status}`);
    const second = await postJson(`${arranger.url}/orders`, t1, { ...order, notional: 1_000_000 });
    const upstream = (second.body.upstream ?? {}) as Record<string, unknown>;
    say(`the next order with algo-7's unexpired token: ${second.status}, refused at ${String(second.body.hop)}: ${String(upstream.error)} — ${String(upstream.error_description)}`);
    const again = await tokenRequest(issuer, clients.algo, { grant_type: 'client_credentials', resource: audiences.orders, mandate: mandateId });
    say(`a new token under the mandate: ${again.status} ${String(again.body.error)} — ${String(again.body.error_description)}`);

    step(`The evidence bundle of txn ${txn} is exported and verified offline (clearance audit …)`);
    const cli = (args: string[]) => run(process.execPath, [join(root, 'bin', 'clearance.js'), ...args], { env: { ...process.env, ...env }, cwd: root });
    await cli(['audit', 'seal']);
    const bundleFile = join(dir, `evidence-${txn}.json`);
    await cli(['audit', 'export', '--txn', txn, '-o', bundleFile]);
    // The auditor holds the payloads the broker's OMS and the clearing firm's settlement system kept.
    const payloadFiles = recordedPayloads.map((r) => r.file);
    const verified = await cli(['audit', 'verify-bundle', bundleFile, '--payload', ...payloadFiles]);
    say(verified.stdout.trim().split('\n').join('\n   '));

    const bundle = JSON.parse(readFileSync(bundleFile, 'utf8')) as { events: { event: { type: string; subject?: string; client?: string; audience?: string; mandate?: unknown; details?: Record<string, unknown> } }[] };
    const events = bundle.events.map((e) => e.event);
    const filed = new Map<string, number>();
    for (const e of events) filed.set(e.type, (filed.get(e.type) ?? 0) + 1);
    say(`filed under txn ${txn}: ${[...filed].map(([type, n]) => `${n} ${type}`).join(', ')}`);

    step('The delegation chain of the settlement token, rebuilt from the audit events alone');
    const exchanges = new Map(events.filter((e) => e.type === 'token.exchanged').map((e) => [e.details!.jti as string, e]));
    const parents = new Set([...exchanges.values()].map((e) => e.details!.parent_jti as string));
    let jti = [...exchanges.keys()].find((j) => !parents.has(j));
    const rebuiltChain: string[] = [];
    let origin: (typeof events)[number] | undefined;
    while (jti && exchanges.has(jti)) {
      const e = exchanges.get(jti)!;
      rebuiltChain.push(`${e.client} exchanged ${String(e.details!.parent_jti).slice(0, 8)}… for ${e.audience} (token ${jti.slice(0, 8)}…, mandate ${JSON.stringify(e.mandate)})`);
      origin = e;
      jti = e.details!.parent_jti as string;
    }
    if (origin) rebuiltChain.push(`${origin.subject} held ${String(jti).slice(0, 8)}… for ${String(origin.details!.parent_audience)}: the origin of the chain`);
    for (const line of rebuiltChain) say(line);

    step('The clearing firm fetches the evidence of its trade with its own credentials, and sees its hop and the chain before it');
    const reader = await tokenRequest(issuer, clients.backoffice, { grant_type: 'client_credentials', resource: `${issuer}/evidence`, scope: 'evidence:counterparty' });
    const shared = await fetch(`${issuer}/evidence/transactions/${encodeURIComponent(txn)}`, { headers: { authorization: `Bearer ${String(reader.body.access_token)}` } });
    const sharedFile = join(dir, `evidence-${txn}-clearing.json`);
    writeFileSync(sharedFile, await shared.text());
    const sharedBundle = JSON.parse(readFileSync(sharedFile, 'utf8')) as { events: { event: { type: string; client?: string } }[]; counterparty?: { hops: { jti: string; part: string; as?: string[] }[]; withheld: number } };
    const sharedEvents = new Map<string, number>();
    for (const { event } of sharedBundle.events ?? []) sharedEvents.set(event.type, (sharedEvents.get(event.type) ?? 0) + 1);
    const statement = sharedBundle.counterparty;
    say(`GET /evidence/transactions/${txn} as clearing-backoffice (evidence:counterparty): ${shared.status}`);
    for (const hop of statement?.hops ?? []) say(`  ${hop.part === 'took_part' ? `took part (as ${(hop.as ?? []).join(', ')})` : 'the chain before it'}: token ${hop.jti.slice(0, 8)}…`);
    say(`  ${[...sharedEvents].map(([type, n]) => `${n} ${type}`).join(', ')}; ${statement?.withheld ?? '?'} event(s) of the trade withheld — the broker's evidence, the refused hop after the revocation: counted, not shown`);
    const sharedVerified = await cli(['audit', 'verify-bundle', sharedFile]);
    say(sharedVerified.stdout.trim().split('\n').filter((line) => /^(bundle verified|counterparty bundle|  the chain's references)/.test(line)).join('\n   '));

    return {
      txn,
      settlementChain: settlement.on_behalf_chain as string[],
      duplicateStatus: retry.status,
      afterRevocation: { exchangeStatus: Number(upstream.error ? second.status : 0), newTokenError: String(again.body.error) },
      bundleVerified: verified.stdout.startsWith('bundle verified'),
      bundleEvents: Object.fromEntries(filed),
      rebuiltChain,
      appendedEvidence: events.filter((e) => e.type === 'evidence.appended').map((e) => ({ producer: String(e.client), type: String(e.details!.evidence_type), payload_sha256: String(e.details!.payload_sha256) })),
      payloadFileHashes: payloadFiles.map((file) => createHash('sha256').update(readFileSync(file)).digest('hex')),
      payloadsVerified: verified.stdout.split('\n').filter((line) => line.startsWith('payload verified')),
      ...(traceId ? { traceId } : {}),
      counterpartyEvidence: {
        status: shared.status,
        hops: (statement?.hops ?? []).map((hop) => [hop.part, hop.as]),
        events: Object.fromEntries(sharedEvents),
        producers: (sharedBundle.events ?? []).filter(({ event }) => event.type === 'evidence.appended').map(({ event }) => String(event.client)),
        withheld: statement?.withheld ?? -1,
        verified: /^bundle verified/.test(sharedVerified.stdout) && /counterparty bundle verified/.test(sharedVerified.stdout),
      },
      ...(kept ? { kept } : {}),
    };
  } catch (error) {
    await kept?.close();
    kept = undefined;
    throw error;
  } finally {
    for (const s of started.reverse()) await s.close();
    if (!kept) rmSync(dir, { recursive: true, force: true });
  }
}

async function postJson(url: string, token: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...traceContextHeaders() }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
