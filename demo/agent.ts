/**
 * `npm run demo:agent` (issue 18 item 7): algo-7 as a real agent. An operator creates the CA and
 * declares the agent; a model validator binds model 1.0.0 and a model-risk approver approves it;
 * the deployment pipeline attests image and model for a fresh nonce and algo-7 gets a certificate
 * for its own key; it signs its order with RFC 9421; the broker's guard verifies the signature and
 * records the evidence, time-stamped by an RFC 3161 TSA (openssl ts). Then a retrained model (a new
 * digest) is refused until approved, approving it retires 1.0.0 and revokes its certificate, which
 * fails at once at the token endpoint and at the broker; and the first trade's evidence bundle
 * verifies offline, naming the model version that traded.
 */
import { createHash, KeyObject, randomUUID, X509Certificate, type webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { contentDigest, createGuard, createSignedRequestVerifier, GuardError, SignedRequestError, signRequest } from 'clearance/guard';
import { executeApply, planApply } from '../src/apply/index.ts';
import { proposeModel } from '../src/agents/models.ts';
import { modelApprovalKind } from '../src/approvals/kinds/model-approval.ts';
import { decideApprovalRequest } from '../src/approvals/requests.ts';
import { main } from '../src/cli/main.ts';
import { loadConfig } from '../src/config.ts';
import { acr } from '../src/identity/acr.ts';
import { findUserByUsername } from '../src/identity/users.ts';
import { createLogger } from '../src/log.ts';
import { Pkcs10CertificateRequestGenerator } from '../src/pki/x509.ts';
import { startServer } from '../src/server.ts';
import { formatProblem } from '../src/validation.ts';
import { startLocalTsa } from './local-tsa.ts';
import { freePort } from './free-ports.ts';

export interface AgentDemoOutcome {
  firstTxn: string;
  firstOrder: { status: number; modelVersion?: string; evidenceId?: string; timestamped: boolean };
  retrainedBeforeApproval: number;
  revokedAtToken: number;
  revokedAtBroker: number;
  secondOrder: { status: number; modelVersion?: string };
  bundleVerified: boolean;
  bundleLines: string[];
}

const lei = '5493001KJTIIGC8Y1R12';
const executionApi = 'https://broker.example/execution';
const digest = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
const models = {
  v1: { version: '1.0.0', model: digest('eu-rates-momentum model weights v1'), image: digest('registry.example/algo-7@v1') },
  v2: { version: '2.0.0', model: digest('eu-rates-momentum model weights v2 (retrained)'), image: digest('registry.example/algo-7@v2') },
};

export async function runAgentDemo(print: (line: string) => void = console.log): Promise<AgentDemoOutcome> {
  const step = (title: string) => print(`\n== ${title}`);
  const say = (line: string) => print(`   ${line}`);
  const dir = mkdtempSync(join(tmpdir(), 'clearance-agent-demo-'));
  const cleanups: (() => unknown)[] = [];
  try {
    step('A local RFC 3161 time-stamp authority (openssl ts) and Clearance start');
    const tsa = await startLocalTsa({ after: (cleanup) => cleanups.push(cleanup) });
    writeFileSync(join(dir, 'tsa-ca.pem'), tsa.caPem);
    const port = await freePort();
    const env = {
      CLEARANCE_DATA_DIR: join(dir, 'data'),
      CLEARANCE_MASTER_KEY: createHash('sha256').update(randomUUID()).digest('hex'),
      PORT: String(port),
      HOST: '127.0.0.1',
      CLEARANCE_ISSUER: `http://127.0.0.1:${port}`,
      // The broker and the token endpoint sit behind a TLS terminator that passes the client certificate.
      CLEARANCE_CLIENT_CERT_HEADER: 'x-client-cert',
      CLEARANCE_TRUSTED_PROXIES: '127.0.0.1',
      CLEARANCE_TSA_URL: tsa.url,
      CLEARANCE_TSA_TRUST: join(dir, 'tsa-ca.pem'),
      // The CLI commands below run in this process, beside the server. A sealing round of the
      // server's holds SQLite's write lock across turns of the event loop (between the pieces of
      // its transaction), and a CLI statement that meets it waits for the lock synchronously, in
      // the very thread the round needs to finish: "database is locked" after the busy timeout.
      // The demo seals through the CLI (`audit seal`, below); the server's sealer waits a minute.
      CLEARANCE_AUDIT_SEAL_INTERVAL_MS: '60000',
    };
    const clearance = await startServer(loadConfig(env), { log: createLogger('silent') });
    cleanups.push(() => clearance.close());
    const issuer = env.CLEARANCE_ISSUER;
    const ctx = clearance.ctx;
    const cli = async (...argv: string[]) => {
      const out: string[] = [];
      const code = await main(argv, env, { out: (l) => out.push(l), err: (l) => out.push(l) });
      if (code !== 0) throw new Error(`clearance ${argv.join(' ')} failed: ${out.join('\n')}`);
      return out;
    };

    step('The operator creates the CA (clearance ca init: the root key written encrypted, kept offline)');
    writeFileSync(join(dir, 'passphrase'), `${randomUUID()}\n`);
    for (const line of (await cli('ca', 'init', '--name', 'Example Asset Manager Agents', '--root-key-out', join(dir, 'root.key'), '--passphrase-file', join(dir, 'passphrase'))).slice(0, 3)) say(line);
    await cli('ca', 'root', '-o', join(dir, 'root.pem'));

    step('The operator declares the trading-agent profile, the deployment pipeline and agent algo-7');
    const pipeline = await generateKeyPair('ES256');
    const pipelineJwk = { ...(await exportJWK(pipeline.publicKey)), kid: 'ci-main-1', alg: 'ES256', use: 'sig' } as JWK;
    const { plan, problems } = await planApply(ctx, {
      legal_entities: [{ lei, name: 'Example Asset Manager', jurisdiction: 'GB', home_region: 'eu', roles: ['asset_manager'], desks: [{ id: 'rates-eu', name: 'EU rates', product_classes: ['bond'] }] }],
      regions: [{ id: 'eu', name: 'Europe' }],
      certificate_profiles: [
        { name: 'trading-agent', key_types: ['EC-P256'], max_lifetime: '8h', ekus: ['client_auth'], policies: ['1.3.6.1.4.1.59999.1.1'], subject: 'CN={holder}, O=Example Asset Manager', san: { uri: ['spiffe://am.example/agent/{holder}'] }, name_constraints: { uri: ['spiffe://am.example/'] }, client_auth: true },
      ],
      resource_servers: [{ identifier: executionApi, scopes: ['order:create'], require_sender_constraint: true }],
      clients: [
        { client_id: 'algo-7', kind: 'agent', owner_lei: lei, token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: 'spiffe://am.example/agent/algo-7', grant_types: ['client_credentials'], scope: 'order:create' },
        { client_id: 'broker-guard', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'evidence:write' },
      ],
      pipelines: [{ id: 'ci-main', name: 'Main deployment pipeline', jwks: { keys: [pipelineJwk] } }],
      // A development agent: its key is a software key here (production agents need hsm or tpm).
      agents: [{ id: 'algo-7', strategy: 'eu-rates-momentum', environment: 'development', owner_lei: lei, desk: 'rates-eu', venues: ['XLON'], instrument_classes: ['bond'], notional_envelope: { max: 25_000_000, currency: 'EUR' }, pipelines: ['ci-main'] }],
      users: [
        { username: 'vera', password: randomUUID(), name: 'Vera (model validation)', roles: ['model-validator'] },
        { username: 'omar', password: randomUUID(), name: 'Omar (model risk)', roles: ['model-risk'] },
      ],
    });
    if (!plan) throw new Error(problems.map(formatProblem).join('\n'));
    const applied = await executeApply(ctx, plan, { actor: 'demo', via: 'cli' });
    const brokerSecret = applied.secrets['broker-guard']!;
    say(`${applied.changes.length} changes; algo-7 is one identity: eu-rates-momentum, development, desk rates-eu`);

    const person = async (username: string) => (await findUserByUsername(ctx, username))!;
    const bind = async (model: typeof models.v1, retirePrevious: boolean) => {
      const vera = await person('vera');
      return proposeModel(ctx, { agentId: 'algo-7', version: model.version, modelDigest: model.model, imageDigest: model.image, validatedBy: vera.id, validationRef: `MRM-${model.version}`, retirePrevious });
    };
    const approve = async (requestId: string) => {
      const omar = await person('omar');
      const decided = await decideApprovalRequest(ctx, modelApprovalKind, {
        requestId,
        approver: { userId: omar.id, username: 'omar', roles: omar.roles, desks: omar.desks },
        proof: { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'], authTime: Math.floor(Date.now() / 1000), jti: randomUUID(), clientId: 'model-risk-console' },
        decision: 'approve',
      });
      if (!decided.ok || decided.settled !== 'approved') throw new Error(`the approval did not settle: ${JSON.stringify(decided)}`);
    };

    step('Vera validates model 1.0.0 and binds it; Omar (model-risk) approves it');
    const first = await bind(models.v1, false);
    say(`binding ${first.binding.id}: ${first.binding.status} → approval request ${first.request.id}`);
    await approve(first.request.id);
    say('approved: model 1.0.0 has trading authority');

    // The agent at run time: its own key, a CSR, a nonce, the pipeline's attestation, a certificate.
    const agent = async (model: typeof models.v1) => {
      const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
      const csr = await Pkcs10CertificateRequestGenerator.create({ name: 'CN=algo-7', keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
      const jkt = await calculateJwkThumbprint((await crypto.subtle.exportKey('jwk', keys.publicKey)) as JWK);
      const { nonce } = (await (await fetch(`${issuer}/agents/algo-7/nonce`, { method: 'POST' })).json()) as { nonce: string };
      const attestation = await new SignJWT({ nonce, image_digest: model.image, model_digest: model.model, model_version: model.version, key_storage: 'software', cnf: { jkt } })
        .setProtectedHeader({ alg: 'ES256', typ: 'attestation+jwt', kid: 'ci-main-1' })
        .setIssuer('ci-main')
        .setSubject('algo-7')
        .setAudience(issuer)
        .setIssuedAt()
        .setExpirationTime('5m')
        .setJti(randomUUID())
        .sign(pipeline.privateKey);
      const response = await fetch(`${issuer}/agents/algo-7/certificate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ attestation, csr: csr.toString('pem') }) });
      const body = (await response.json()) as Record<string, string>;
      return { status: response.status, body, key: KeyObject.from(keys.privateKey) };
    };
    const certificateHeader = (pem: string) => `:${new X509Certificate(pem).raw.toString('base64')}:`;
    const tokenFor = async (certificate: string) => {
      const authorizationDetails = JSON.stringify([{ type: 'order', instrument: { class: 'bond', symbol: 'DE0001102580' }, side: 'buy', max_notional: { amount: '5000000', currency: 'EUR' }, venue: 'XLON', account: 'AM-RATES-1' }]);
      const response = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': certificateHeader(certificate) },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'algo-7', resource: executionApi, authorization_details: authorizationDetails, txn: 'new' }),
      });
      return { status: response.status, body: (await response.json()) as Record<string, string> };
    };

    step("The pipeline attests image and model 1.0.0 for a fresh nonce; algo-7 gets a certificate for its own key");
    const v1 = await agent(models.v1);
    if (v1.status !== 201) throw new Error(`no certificate: ${JSON.stringify(v1.body)}`);
    say(`certificate ${v1.body.serial} (profile ${v1.body.profile}) until ${v1.body.not_after}`);

    step("The broker's execution API starts behind clearance/guard, verifying signed orders");
    const broker = await startBroker(issuer, join(dir, 'root.pem'), brokerSecret, cleanups);
    say(`${broker.url}/orders: the token bound to the agent's certificate, the RFC 9421 signature, OCSP, evidence to Clearance`);
    const placeOrder = async (certificate: string, key: KeyObject, serial: string, token: string) => {
      const body = Buffer.from(JSON.stringify({ instrument: 'DE0001102580', side: 'buy', notional: { amount: '5000000', currency: 'EUR' }, venue: 'XLON' }));
      const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { txn: string };
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, txn: claims.txn, 'content-digest': contentDigest(body), 'content-type': 'application/json', 'x-client-cert': certificateHeader(certificate) };
      Object.assign(headers, signRequest({ method: 'POST', targetUri: `${executionApi}/orders`, headers }, { key, keyid: serial, nonce: randomUUID() }));
      const response = await fetch(`${broker.url}/orders`, { method: 'POST', headers, body });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };

    step('algo-7 takes a token for its order (starting the trade) and signs the order with RFC 9421');
    const firstToken = await tokenFor(v1.body.certificate!);
    if (firstToken.status !== 200) throw new Error(`no token: ${JSON.stringify(firstToken.body)}`);
    const firstClaims = JSON.parse(Buffer.from(firstToken.body.access_token!.split('.')[1]!, 'base64url').toString()) as { txn: string; agent: { model_version: string } };
    say(`token for txn ${firstClaims.txn}, agent claim: model ${firstClaims.agent.model_version}`);
    const firstOrder = await placeOrder(v1.body.certificate!, v1.key, v1.body.serial!, firstToken.body.access_token!);
    say(`broker: ${firstOrder.status} ${JSON.stringify(firstOrder.body)}`);

    step('The model is retrained (a new digest): bound, but refused until a model-risk approver approves it');
    const second = await bind(models.v2, true);
    say(`Vera binds 2.0.0 (retiring earlier versions once approved): ${second.binding.status}`);
    const retrained = await agent(models.v2);
    say(`the pipeline's attestation of 2.0.0 before the approval: ${retrained.status} ${retrained.body.error_description ?? ''}`);
    await approve(second.request.id);
    say('Omar approves 2.0.0: 1.0.0 is retired and its certificate revoked');

    step("algo-7's 1.0.0 certificate, revoked, fails at once across the flow");
    const revokedToken = await tokenFor(v1.body.certificate!);
    say(`token endpoint with the 1.0.0 certificate: ${revokedToken.status} ${revokedToken.body.error ?? ''}`);
    const revokedOrder = await placeOrder(v1.body.certificate!, v1.key, v1.body.serial!, firstToken.body.access_token!);
    say(`broker, a new signed order with the 1.0.0 certificate and its unexpired token: ${revokedOrder.status} ${String((revokedOrder.body as { error_description?: string }).error_description ?? '')}`);

    step('The pipeline attests 2.0.0; algo-7 trades again with the approved version');
    const v2 = await agent(models.v2);
    if (v2.status !== 201) throw new Error(`no certificate for 2.0.0: ${JSON.stringify(v2.body)}`);
    const secondToken = await tokenFor(v2.body.certificate!);
    const secondClaims = secondToken.status === 200 ? (JSON.parse(Buffer.from(secondToken.body.access_token!.split('.')[1]!, 'base64url').toString()) as { agent: { model_version: string } }) : undefined;
    const secondOrder = await placeOrder(v2.body.certificate!, v2.key, v2.body.serial!, secondToken.body.access_token!);
    say(`token (model ${secondClaims?.agent.model_version}), broker: ${secondOrder.status}`);

    step(`The evidence bundle of the first trade (txn ${firstClaims.txn}) is exported and verified offline`);
    await cli('audit', 'seal');
    const bundleFile = join(dir, 'bundle.json');
    await cli('audit', 'export', '--txn', firstClaims.txn, '-o', bundleFile);
    const verified = await cli('audit', 'verify-bundle', bundleFile);
    for (const line of verified) say(line);
    const bundle = JSON.parse((await import('node:fs')).readFileSync(bundleFile, 'utf8')) as { events: { event: { type: string; details?: { agent?: { model_version: string } } } }[] };
    const traded = bundle.events.find((e) => e.event.type === 'token.issued')?.event.details?.agent?.model_version;
    say(`the model version that traded, from the bundle's token.issued: ${traded}`);

    return {
      firstTxn: firstClaims.txn,
      firstOrder: { status: firstOrder.status, modelVersion: traded, evidenceId: (firstOrder.body as { evidence_id?: string }).evidence_id, timestamped: Boolean((firstOrder.body as { timestamped?: boolean }).timestamped) },
      retrainedBeforeApproval: retrained.status,
      revokedAtToken: revokedToken.status,
      revokedAtBroker: revokedOrder.status,
      secondOrder: { status: secondOrder.status, modelVersion: secondClaims?.agent.model_version },
      bundleVerified: verified.some((l) => l.startsWith('bundle verified')) && verified.some((l) => l.startsWith('signed request verified')),
      bundleLines: verified,
    };
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The broker's execution API: the access token (bound to the agent's certificate, which the TLS
 * terminator passes), then the signed order through createSignedRequestVerifier, whose evidence
 * goes to Clearance with the broker's own producer token.
 */
async function startBroker(issuer: string, rootFile: string, secret: string, cleanups: (() => unknown)[]) {
  const { readFileSync } = await import('node:fs');
  const guard = createGuard({ issuer, audience: executionApi, jwksUri: `${issuer}/jwks`, allowHttp: true, requireSenderConstraint: true });
  const producerToken = async () => {
    const response = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`broker-guard:${secret}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'evidence:write', resource: `${issuer}/evidence` }),
    });
    return ((await response.json()) as { access_token: string }).access_token;
  };
  const signed = createSignedRequestVerifier({ issuer, roots: [readFileSync(rootFile, 'utf8')], policies: ['1.3.6.1.4.1.59999.1.1'], evidence: { token: producerToken } });
  const server = createHttpServer(async (request: IncomingMessage, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const send = (status: number, payload: unknown) => response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(payload));
    try {
      const presented = String(request.headers['x-client-cert'] ?? '');
      const thumbprint = presented ? createHash('sha256').update(Buffer.from(presented.slice(1, -1), 'base64')).digest('base64url') : undefined;
      const url = `${executionApi}${request.url}`;
      const access = await guard.verify({ method: request.method!, url, headers: request.headers, clientCertificateThumbprint: thumbprint });
      guard.requireScopes(access, ['order:create']);
      const result = await signed.verify({ method: request.method!, url, headers: request.headers, body }, access.claims);
      send(201, { order_id: `ORD-${randomUUID().slice(0, 8)}`, txn: access.txn, signed_by: result.signer.holder, model_version: access.claims.agent?.model_version, evidence_id: result.evidence?.evidence_id, timestamped: Boolean(result.evidence?.timestamp) });
    } catch (error) {
      if (error instanceof GuardError) return send(error.status, error.toJSON());
      if (error instanceof SignedRequestError) return send(401, { error: 'invalid_signature', error_description: `${error.code}: ${error.message}` });
      send(500, { error: 'server_error' });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

