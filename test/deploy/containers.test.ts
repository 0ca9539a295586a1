/**
 * The container image (Containerfile, deploy/image/build.sh) and two nodes made from it
 * (deploy/local/nodes.sh, the topology of deploy/compose.yaml on the host's network), run as a
 * platform team would: against PostgreSQL and Redis, secrets in mounted files, a read-only root
 * filesystem, a rolling restart under load. Skipped with the reason where podman is missing;
 * .ci/run installs it.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test, type TestContext } from 'node:test';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import pg from 'pg';
import { main } from '../../src/cli/main.ts';
import { clientCredentialsRequest } from '../helpers/cluster.ts';
import { buildImage, clientAssertion, command, containerSkip, freshDatabase, nginxSkip, podman, repository, untilReady, withoutSystemdNoise } from '../helpers/containers.ts';
import { deleteKeys, redisSkip, testRedisUrl } from '../helpers/redis.ts';
import { freePort, freePorts } from '../helpers/server.ts';
import { adminQuery } from '../helpers/storage.ts';
import { eventually } from '../helpers/eventually.ts';

const issuer = 'https://clearance.test';
const resource = 'https://orders.image.example/api';

interface Clients {
  desk: KeyObject;
  ordersRs: KeyObject;
  /** The apply document registering them (private_key_jwt, ES256). */
  document: string;
}

function clientsDocument(more: object[] = []): Clients {
  const desk = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ordersRs = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks = (key: KeyObject, kid: string) => ({ keys: [{ ...key.export({ format: 'jwk' }), kid, alg: 'ES256' }] });
  const document = JSON.stringify({
    resource_servers: [{ identifier: resource, scopes: ['order:create'], access_token_ttl: 300, introspection_clients: ['orders-rs'] }],
    clients: [
      { client_id: 'desk', token_endpoint_auth_method: 'private_key_jwt', jwks: jwks(desk.publicKey, 'desk-1'), grant_types: ['client_credentials'], scope: 'order:create' },
      { client_id: 'orders-rs', token_endpoint_auth_method: 'private_key_jwt', jwks: jwks(ordersRs.publicKey, 'orders-rs-1'), grant_types: ['client_credentials'] },
      ...more,
    ],
  });
  return { desk: desk.privateKey, ordersRs: ordersRs.privateKey, document };
}

async function post(origin: string, path: string, form: Record<string, string> | string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${origin}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: typeof form === 'string' ? form : new URLSearchParams(form).toString(),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  // RFC 7009 §2.2: a revocation answers 200 with an empty body.
  return { status: response.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

const tokenAt = (origin: string, clients: Clients) => post(origin, '/token', clientCredentialsRequest({ issuer, clientId: 'desk', key: clients.desk, kid: 'desk-1', resource }));
const introspectAt = (origin: string, clients: Clients, token: string) => post(origin, '/introspect', { token, ...clientAssertion(issuer, 'orders-rs', clients.ordersRs) });

/** A directory the image's user (uid 10001) can read and nobody else: the mounted secrets. */
function secretsDir(t: TestContext, secrets: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-secrets-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  for (const [name, value] of Object.entries(secrets)) {
    writeFileSync(join(dir, name), `${value}\n`, { mode: 0o400 });
    chownSync(join(dir, name), 10001, 10001);
  }
  return dir;
}

/** The jtis of the token.issued events in a PostgreSQL database's audit log. */
async function issuedJtis(url: string): Promise<Set<string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ event: unknown }>("select event from audit_events where type = 'token.issued'");
    return new Set(rows.map((row) => String((typeof row.event === 'string' ? JSON.parse(row.event) : (row.event as { details?: { jti?: string } })).details?.jti)));
  } finally {
    await client.end();
  }
}

describe('the container image', { skip: containerSkip, timeout: 900_000 }, () => {
  let image: string;
  before(async () => {
    const built = await buildImage();
    image = built.image;
  });

  test('is built by deploy/image/build.sh on a base made from Debian packages; runs clearance as its entrypoint, as a non-root user, with a HEALTHCHECK on /readyz', async (t) => {
    const { sizeMb } = await buildImage();
    t.diagnostic(`image size: ${sizeMb} MB`);
    const inspected = await podman(['image', 'inspect', image]);
    const [config] = JSON.parse(inspected.stdout) as { Config: { User: string; Entrypoint: string[]; Cmd: string[]; Env: string[]; Volumes: Record<string, unknown> }; Healthcheck?: { Test: string[] } }[];
    assert.equal(config!.Config.User, 'clearance:clearance');
    assert.deepEqual(config!.Config.Entrypoint, ['node', '/app/bin/clearance.js']);
    assert.deepEqual(config!.Config.Cmd, ['start']);
    assert.deepEqual(Object.keys(config!.Config.Volumes), ['/var/lib/clearance']);
    assert.ok(config!.Config.Env.includes('CLEARANCE_MODE=production'));
    assert.deepEqual(config!.Healthcheck?.Test, ['CMD', 'node', '/app/bin/readyz.js']);
    // Nothing secret and nothing of development is baked in.
    assert.ok(!config!.Config.Env.some((entry) => /MASTER_KEY|DATABASE_URL|REDIS_URL/.test(entry)), config!.Config.Env.join(' '));
    const listing = await podman(['run', '--rm', '--network', 'host', '--entrypoint', 'sh', image, '-c', 'id -u; ls /app; ls /app/node_modules | grep -cx -e typescript -e oidc-provider -e playwright-core -e node || true']);
    assert.equal(listing.code, 0, listing.stderr);
    const [uid, ...rest] = listing.stdout.trim().split('\n');
    assert.equal(uid, '10001');
    assert.deepEqual(rest.slice(0, -1).sort(), ['bin', 'node_modules', 'package-lock.json', 'package.json', 'src']);
    assert.equal(rest.at(-1), '0', 'no devDependencies in the image');
    const help = await podman(['run', '--rm', '--network', 'host', image, '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /audit verify/);
  });

  test('against PostgreSQL with its secrets in mounted files and a read-only root: applies clients, serves the m2m flow, verifies its audit log inside, is healthy, drains on SIGTERM with exit 0', async (t) => {
    const database = await freshDatabase(adminQuery);
    t.after(database.drop);
    const clients = clientsDocument();
    const secrets = secretsDir(t, { 'master-key': randomBytes(32).toString('hex'), 'database-url': database.url });
    const configDir = mkdtempSync(join(tmpdir(), 'clearance-apply-'));
    t.after(() => rmSync(configDir, { recursive: true, force: true }));
    chmodSync(configDir, 0o755);
    writeFileSync(join(configDir, 'clients.json'), clients.document, { mode: 0o644 });
    const port = await freePort();
    const name = `clearance-image-${randomBytes(4).toString('hex')}`;
    const volume = `${name}-data`;
    t.after(async () => {
      await podman(['rm', '-f', '-t', '0', name]);
      await podman(['volume', 'rm', '-f', volume]);
    });
    const common = ['--network', 'host', '--read-only', '-v', `${secrets}:/run/secrets:ro`, '-v', `${volume}:/var/lib/clearance`, '-e', 'CLEARANCE_MASTER_KEY_FILE=/run/secrets/master-key', '-e', 'DATABASE_URL_FILE=/run/secrets/database-url', '-e', `CLEARANCE_ISSUER=${issuer}`, '-e', `PORT=${port}`, '-e', `CLEARANCE_NODE_NAME=${name}`];

    const applied = await podman(['run', '--rm', ...common, '-v', `${configDir}:/config:ro`, image, 'apply', '-f', '/config/clients.json']);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);

    const started = await podman(['run', '-d', '--name', name, ...common, '-e', 'CLEARANCE_DRAIN_DELAY_MS=500', image, 'start', '--workers', '1']);
    assert.equal(started.code, 0, started.stderr);
    const origin = `http://127.0.0.1:${port}`;
    await untilReady(origin, async () => (await podman(['inspect', '--format', '{{.State.Running}}', name])).stdout.trim() === 'true');

    // The machine-to-machine flow, and the token verifies with the keys the container publishes.
    const issued = await tokenAt(origin, clients);
    assert.equal(issued.status, 200, JSON.stringify(issued.body));
    const { payload } = await jwtVerify(String(issued.body.access_token), createRemoteJWKSet(new URL(`${origin}/jwks`)), { issuer, audience: resource });
    assert.equal(payload.client_id, 'desk');
    const introspected = await introspectAt(origin, clients, String(issued.body.access_token));
    assert.equal(introspected.body.active, true);

    // Non-root: every process of the container runs as the image's user.
    const top = await podman(['top', name, 'user', 'args']);
    const processes = top.stdout.trim().split('\n').slice(1);
    assert.ok(processes.length >= 1, top.stdout);
    for (const line of processes) assert.match(line, /^clearance\s/, top.stdout);
    // The root filesystem is read-only; the data volume is writable.
    const write = await podman(['exec', name, 'sh', '-c', 'touch /app/x 2>&1; echo $?; touch /var/lib/clearance/probe && echo writable']);
    assert.match(write.stdout, /Read-only file system/);
    assert.match(write.stdout, /writable/);

    const health = await podman(['healthcheck', 'run', name]);
    assert.equal(health.code, 0, withoutSystemdNoise(health.stderr) + health.stdout);

    const verified = await podman(['exec', name, 'node', '/app/bin/clearance.js', 'audit', 'verify']);
    assert.equal(verified.code, 0, verified.stderr + verified.stdout);
    assert.match(verified.stdout, /^audit log intact: /);

    const stopped = await podman(['stop', '-t', '30', name], 60_000);
    assert.equal(stopped.code, 0, stopped.stderr);
    const exit = await podman(['inspect', '--format', '{{.State.ExitCode}}', name]);
    assert.equal(exit.stdout.trim(), '0', 'a graceful drain on SIGTERM');
    const logs = withoutSystemdNoise((await podman(['logs', name])).stdout);
    assert.match(logs, /"msg":"stopped"/);
    // The acknowledged token's audit event was committed, and nothing secret reached the log.
    assert.ok((await issuedJtis(database.url)).has(String(decodeJwt(String(issued.body.access_token)).jti)));
    assert.ok(!logs.includes(readFileSync(join(secrets, 'master-key'), 'utf8').trim()));
    assert.ok(!logs.includes(String(issued.body.access_token)));
  });

  test('refuses to start without a master key, naming the variable, with exit 2', async () => {
    const result = await podman(['run', '--rm', '--network', 'host', '--read-only', '-e', `CLEARANCE_ISSUER=${issuer}`, image, 'start']);
    assert.equal(result.code, 2);
    assert.match(result.stderr + result.stdout, /CLEARANCE_MASTER_KEY \(or CLEARANCE_MASTER_KEY_FILE, or CLEARANCE_MASTER_KEY_PKCS11_LABEL\) is required/);
  });
});

/**
 * A load balancer as a platform team runs one: it sends each request to a node whose /readyz said
 * 200 at its last poll, and retries a request that a node refused (connection refused or reset,
 * 503 temporarily_unavailable) on the other node. A request that never gets a 200 is a dropped one.
 */
class Balancer {
  readonly ready = new Map<string, boolean>();
  #next = 0;
  #polling = true;
  readonly done: Promise<void>;
  readonly origins: string[];

  constructor(origins: string[]) {
    this.origins = origins;
    for (const origin of origins) this.ready.set(origin, true);
    this.done = this.#poll();
  }

  async #poll(): Promise<void> {
    while (this.#polling) {
      await Promise.all(
        this.origins.map(async (origin) => {
          try {
            const response = await fetch(`${origin}/readyz`, { signal: AbortSignal.timeout(500) });
            this.ready.set(origin, response.status === 200);
          } catch {
            this.ready.set(origin, false);
          }
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  stop(): Promise<void> {
    this.#polling = false;
    return this.done;
  }

  /** One request, retried on the other node when refused; the answers it saw, the last one first. */
  async send(request: (origin: string) => Promise<{ status: number; body: Record<string, unknown> }>): Promise<{ final?: { status: number; body: Record<string, unknown> }; refusals: string[] }> {
    const refusals: string[] = [];
    for (let attempt = 0; attempt < 20; attempt++) {
      const candidates = this.origins.filter((origin) => this.ready.get(origin));
      const origin = (candidates.length > 0 ? candidates : this.origins)[this.#next++ % Math.max(candidates.length, 1)]!;
      try {
        const answer = await request(origin);
        if (answer.status === 503 && answer.body.error === 'temporarily_unavailable') {
          refusals.push(`${origin} 503`);
        } else {
          return { final: answer, refusals };
        }
      } catch (error) {
        refusals.push(`${origin} ${(error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message}`);
      }
      this.ready.set(origin, false);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { refusals };
  }
}

describe('two nodes from the image on one PostgreSQL and Redis (deploy/local/nodes.sh)', { skip: containerSkip || redisSkip, timeout: 900_000 }, () => {
  interface Deployment {
    origins: [string, string];
    clients: Clients;
    databaseUrl: string;
    nodes(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  }

  /** `nodes.sh up` on a database, ports, Redis prefix and state of the test's own; clients applied. */
  async function deploy(t: TestContext, env: string[] = [], document?: Clients): Promise<Deployment> {
    const { image } = await buildImage();
    const database = await freshDatabase(adminQuery);
    t.after(database.drop);
    const prefix = `clearance-test-${randomBytes(4).toString('hex')}`;
    const state = mkdtempSync(join(tmpdir(), 'clearance-nodes-'));
    mkdirSync(state, { recursive: true });
    const ports = (await freePorts(2)) as [number, number];
    const shared = ['--prefix', prefix, '--ports', ports.join(','), '--state', state];
    const nodes = (...args: string[]) => command(join(repository, 'deploy/local/nodes.sh'), [...args, ...shared], { timeoutMs: 180_000 });
    t.after(async () => {
      await nodes('down');
      rmSync(state, { recursive: true, force: true });
      await deleteKeys(testRedisUrl, `${prefix}:`);
    });
    const up = await nodes('up', '--image', image, '--database-url', database.url, '--redis-url', testRedisUrl, '--issuer', issuer, '--workers', '1', '--env', 'CLEARANCE_DRAIN_DELAY_MS=1000', ...env.flatMap((entry) => ['--env', entry]));
    assert.equal(up.code, 0, withoutSystemdNoise(up.stderr) + up.stdout);
    assert.match(up.stdout, new RegExp(`${prefix}-1 is ready[\\s\\S]*${prefix}-2 is ready`));

    // The clients, applied once through the CLI on the shared database (with the nodes' master key).
    const clients = document ?? clientsDocument();
    const file = join(state, 'clients.json');
    writeFileSync(file, clients.document);
    const lines: string[] = [];
    const masterKey = readFileSync(join(state, 'secrets/master-key'), 'utf8').trim();
    const applied = await main(['apply', '-f', file], { DATABASE_URL: database.url, CLEARANCE_MASTER_KEY: masterKey, CLEARANCE_ISSUER: issuer, CLEARANCE_DATA_DIR: state }, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
    assert.equal(applied, 0, lines.join('\n'));
    return { origins: [`http://127.0.0.1:${ports[0]}`, `http://127.0.0.1:${ports[1]}`], clients, databaseUrl: database.url, nodes };
  }

  test('a token issued at node 1 and revoked there is inactive at node 2; both verify the same keys', async (t) => {
    const { origins, clients } = await deploy(t);
    const issued = await tokenAt(origins[0], clients);
    assert.equal(issued.status, 200, JSON.stringify(issued.body));
    const token = String(issued.body.access_token);
    assert.equal((await introspectAt(origins[1], clients, token)).body.active, true, 'node 2 knows node 1’s token');
    await jwtVerify(token, createRemoteJWKSet(new URL(`${origins[1]}/jwks`)), { issuer, audience: resource });

    const revoked = await post(origins[0], '/revoke', { token, ...clientAssertion(issuer, 'desk', clients.desk) });
    assert.equal(revoked.status, 200);
    assert.equal((await introspectAt(origins[1], clients, token)).body.active, false, 'the revocation holds at node 2');
  });

  test('a rolling restart under load, node by node: every request is answered 200 (retried on the other node at most), every acknowledged token stays active and has its audit event, both drains exit 0', async (t) => {
    const { origins, clients, databaseUrl, nodes } = await deploy(t);
    const balancer = new Balancer(origins);
    t.after(() => balancer.stop());
    let loading = true;
    const answers: Awaited<ReturnType<Balancer['send']>>[] = [];
    const client = async () => {
      while (loading) answers.push(await balancer.send((origin) => tokenAt(origin, clients)));
    };
    const load = Array.from({ length: 6 }, client);

    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const node of ['1', '2']) {
      const restarted = await nodes('restart', node);
      assert.equal(restarted.code, 0, withoutSystemdNoise(restarted.stderr) + restarted.stdout);
      assert.match(restarted.stdout, /drained and stopped \(exit 0\)[\s\S]*is ready/);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    loading = false;
    await Promise.all(load);
    await balancer.stop();

    const retried = answers.filter((a) => a.refusals.length > 0).length;
    t.diagnostic(`${answers.length} token requests across two restarts; ${retried} retried on the other node`);
    assert.ok(answers.length > 50, `load throughout (${answers.length} requests)`);
    for (const answer of answers) {
      assert.equal(answer.final?.status, 200, `a dropped request: ${JSON.stringify(answer)}`);
      for (const refusal of answer.refusals) assert.match(refusal, / (503|ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET)$/, 'refused, never a server error');
    }
    const acknowledged = answers.map((a) => String(a.final!.body.access_token));
    const audited = await issuedJtis(databaseUrl);
    for (const token of acknowledged) assert.ok(audited.has(String(decodeJwt(token).jti)), 'an acknowledged token has its token.issued event');
    // Every acknowledged token is live at both nodes after the restarts (a sample: introspection is a request each).
    for (const token of acknowledged.filter((_, i) => i % Math.ceil(acknowledged.length / 20) === 0)) {
      for (const origin of origins) assert.equal((await introspectAt(origin, clients, token)).body.active, true);
    }
  });

  test('behind the compose proxy (deploy/compose/nginx.conf, in Debian nginx): TLS, a client certificate forwarded for tls_client_auth and bound to the token; a forged certificate header and a certificate from another CA get nothing', { skip: nginxSkip }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clearance-proxy-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const secrets = join(dir, 'secrets');
    const made = await command(join(repository, 'deploy/compose/secrets.sh'), [secrets]);
    assert.equal(made.code, 0, made.stderr);
    // The client's certificate from the client CA secrets.sh made, and an impostor's with the same
    // subject from a CA of its own.
    const openssl = (...args: string[]) => command('openssl', args);
    const subject = '/CN=settlement-bot';
    await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', subject, '-keyout', join(dir, 'client.key'), '-out', join(dir, 'client.csr'));
    const signed = await openssl('x509', '-req', '-in', join(dir, 'client.csr'), '-CA', join(secrets, 'client-ca.crt'), '-CAkey', join(secrets, 'client-ca.key'), '-days', '1', '-out', join(dir, 'client.crt'));
    assert.equal(signed.code, 0, signed.stderr);
    await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', subject, '-keyout', join(dir, 'impostor.key'), '-out', join(dir, 'impostor.crt'));
    const settlement = { client_id: 'settlement', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: 'CN=settlement-bot', grant_types: ['client_credentials'], scope: 'order:create' };
    const { origins } = await deploy(t, ['CLEARANCE_CLIENT_CERT_HEADER=x-client-cert', 'CLEARANCE_TRUSTED_PROXIES=127.0.0.1'], clientsDocument([settlement]));

    // The compose file's proxy configuration, pointed at the two nodes and the secrets made here.
    const proxyPort = await freePort();
    const conf = readFileSync(join(repository, 'deploy/compose/nginx.conf'), 'utf8')
      .replace('server clearance-1:9000', `server ${new URL(origins[0]).host}`)
      .replace('server clearance-2:9000', `server ${new URL(origins[1]).host}`)
      .replace('listen 8443 ssl', `listen 127.0.0.1:${proxyPort} ssl`)
      .replaceAll('/run/secrets/tls_cert', join(secrets, 'tls.crt'))
      .replaceAll('/run/secrets/tls_key', join(secrets, 'tls.key'))
      .replaceAll('/run/secrets/client_ca', join(secrets, 'client-ca.crt'));
    assert.ok(!conf.includes('/run/secrets') && !conf.includes('clearance-1:9000'), 'every address and file was replaced');
    writeFileSync(join(dir, 'nginx.conf'), conf);
    const nginx = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-g', `daemon off; pid ${join(dir, 'nginx.pid')}; error_log ${join(dir, 'error.log')};`], { stdio: 'ignore' });
    // SIGTERM: nginx's fast shutdown, which stops its worker processes too (SIGKILL left them running).
    t.after(async () => {
      if (nginx.exitCode !== null || nginx.signalCode !== null) return;
      const exited = once(nginx, 'exit');
      nginx.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
      if (nginx.exitCode === null && nginx.signalCode === null) nginx.kill('SIGKILL');
    });
    await eventually(() => accepts(proxyPort), 'the proxy accepting connections', { withinMs: 10_000, everyMs: 100 });

    const tokenRequest = new URLSearchParams({ grant_type: 'client_credentials', client_id: 'settlement', scope: 'order:create', resource }).toString();
    const viaProxy = (options: { cert?: string; key?: string; headers?: Record<string, string> }) =>
      new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
        const req = httpsRequest(
          { host: '127.0.0.1', port: proxyPort, servername: 'localhost', path: '/token', method: 'POST', ca: readFileSync(join(secrets, 'tls.crt')), cert: options.cert && readFileSync(options.cert), key: options.key && readFileSync(options.key), headers: { 'content-type': 'application/x-www-form-urlencoded', ...options.headers }, agent: false },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk) => (text += chunk));
            res.on('end', () => {
              let body: Record<string, unknown>;
              try {
                body = JSON.parse(text) as Record<string, unknown>;
              } catch {
                body = { text };
              }
              resolve({ status: res.statusCode!, body });
            });
          },
        );
        req.on('error', reject);
        req.end(tokenRequest);
      });

    const issued = await viaProxy({ cert: join(dir, 'client.crt'), key: join(dir, 'client.key') });
    assert.equal(issued.status, 200, JSON.stringify(issued.body));
    const thumbprint = createHash('sha256').update(new X509Certificate(readFileSync(join(dir, 'client.crt'))).raw).digest('base64url');
    assert.deepEqual(decodeJwt(String(issued.body.access_token)).cnf, { 'x5t#S256': thumbprint }, 'bound to the certificate the proxy forwarded (RFC 8705 §3)');

    const without = await viaProxy({});
    assert.equal(without.status, 401);
    assert.equal(without.body.error, 'invalid_client');
    // A client that writes the header itself: the proxy overwrites it with the (absent) certificate.
    const forged = await viaProxy({ headers: { 'x-client-cert': encodeURIComponent(readFileSync(join(dir, 'client.crt'), 'utf8')) } });
    assert.equal(forged.status, 401);
    assert.equal(forged.body.error, 'invalid_client');
    // Same subject, another CA: the proxy does not forward it, and no token is issued.
    const impostor = await viaProxy({ cert: join(dir, 'impostor.crt'), key: join(dir, 'impostor.key') });
    assert.notEqual(impostor.status, 200, JSON.stringify(impostor.body));
    assert.ok(!('access_token' in impostor.body));
  });
});

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

