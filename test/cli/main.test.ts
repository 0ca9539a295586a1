import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { consoleClientId } from '../../src/console/client.ts';
import { openStorage } from '../../src/storage/database.ts';
import { cliWorkspace, runCli } from '../helpers/cli.ts';

const repository = fileURLToPath(new URL('../..', import.meta.url));

const workspace = (t: TestContext) => cliWorkspace(t);
const run = runCli;

/** Rows of the data directory's database, read directly. */
async function stored(env: NodeJS.ProcessEnv): Promise<{ clients: string[]; resourceServers: string[] }> {
  const storage = openStorage({ dataDir: env.CLEARANCE_DATA_DIR! });
  try {
    return {
      // The console's own client is built in, registered at every start (src/console/client.ts).
      clients: (await storage.db.selectFrom('clients').select('client_id').where('client_id', '!=', consoleClientId).orderBy('client_id').execute()).map((r) => r.client_id),
      resourceServers: (await storage.db.selectFrom('resource_servers').select('identifier').orderBy('identifier').execute()).map((r) => r.identifier),
    };
  } finally {
    await storage.close();
  }
}

const goodYaml = `resource_servers:
  - identifier: https://orders.example.com
    scopes: [order:create]
clients:
  - client_id: broker-1
    grant_types: [client_credentials]
    scope: order:create
`;

const badYaml = `resource_servers:
  - identifier: https://orders.example.com
    scopes: [order:create]
    access_token_ttl: 99999
clients:
  - client_id: broker-1
    grant_types: [client_credentials]
    scope: order:create
  - client_id: web
    redirect_uris: [http://web.example.com/cb]
`;

describe('the clearance command', () => {
  test('prints help listing every command with exit 0', async (t) => {
    const { run } = workspace(t);
    for (const argv of [['--help'], ['-h'], ['help']]) {
      const result = await run(...argv);
      assert.equal(result.code, 0, argv.join(' '));
      for (const command of ['start', 'migrate', 'keys', 'apply', 'help']) assert.match(result.out, new RegExp(`^  ${command}\\b`, 'm'), command);
      assert.match(result.out, /Exit codes: 0 done, 1 the command failed or refused, 2 wrong usage or configuration/);
    }
    const apply = await run('help', 'apply');
    assert.equal(apply.code, 0);
    assert.match(apply.out, /^Usage: clearance apply -f FILE/);
    const keys = await run('keys', '--help');
    assert.equal(keys.code, 0);
    assert.match(keys.out, /^Usage: clearance keys list/);
  });

  test('exits 2 with help when there is no command, an unknown command or an unknown option', async (t) => {
    const { run } = workspace(t);
    const none = await run();
    assert.equal(none.code, 2);
    assert.match(none.out, /^Usage: clearance <command>/);
    const unknown = await run('frobnicate');
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /^unknown command "frobnicate"/);
    assert.match(unknown.err, /Usage: clearance <command>/);
    assert.equal((await run('keys', '--frob')).code, 2);
    const helpUnknown = await run('help', 'frobnicate');
    assert.equal(helpUnknown.code, 2, 'help for a command that does not exist is not a success');
    assert.match(helpUnknown.err, /^unknown command "frobnicate"/);
  });

  test('exits 2 on a configuration error, naming the variable', async (t) => {
    const { env } = workspace(t);
    assert.equal((await run(['keys', 'list'], env)).code, 0, 'the same command runs with a good configuration');
    for (const [extra, message] of [
      [{ CLEARANCE_MODE: 'production', CLEARANCE_ISSUER: 'http://auth.example.com' }, /^configuration error: CLEARANCE_ISSUER must use https/],
      [{ PORT: 'eighty' }, /^configuration error: PORT must be an integer/],
      [{ CLEARANCE_MODE: 'production', CLEARANCE_ISSUER: 'https://auth.example.com', CLEARANCE_MASTER_KEY: '' }, /^configuration error: CLEARANCE_MASTER_KEY \(or CLEARANCE_MASTER_KEY_FILE, or CLEARANCE_MASTER_KEY_PKCS11_LABEL\) is required outside development mode/],
    ] as const) {
      const refused = await run(['keys', 'list'], { ...env, ...extra });
      assert.equal(refused.code, 2, JSON.stringify(extra));
      assert.match(refused.err, message);
      assert.equal(refused.out, '');
    }
  });

  test('migrates, then reports the database up to date', async (t) => {
    const { run } = workspace(t);
    const first = await run('migrate');
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, /^applied 0001_foundation, .* to sqlite:/);
    const second = await run('migrate');
    assert.equal(second.code, 0);
    assert.match(second.out, /^sqlite:.* is up to date$/);
  });

  test('apply -f with an invalid file exits 1, prints every problem with its path, and applies nothing', async (t) => {
    const { run, env, dir } = workspace(t);
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, badYaml);
    const result = await run('apply', '-f', file);
    assert.equal(result.code, 1);
    assert.equal(result.out, '');
    assert.deepEqual(result.err.split('\n'), [
      `${file}: 3 problems; nothing was applied`,
      '  resource_servers[0].access_token_ttl: must be from 1 to 3600',
      '  clients[1].redirect_uris[0]: must be https',
      '  clients[0].scope: "order:create" is not offered by any resource server',
    ]);
    const { clients, resourceServers } = await stored(env);
    assert.deepEqual(clients, []);
    assert.ok(!resourceServers.includes('https://orders.example.com'));
  });

  test('apply -f with a file that cannot be read or parsed exits 1; without -f exits 2', async (t) => {
    const { run, dir } = workspace(t);
    const missing = await run('apply', '-f', join(dir, 'missing.yaml'));
    assert.equal(missing.code, 1);
    assert.match(missing.err, /cannot read .*missing\.yaml: ENOENT/);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"clients": [');
    const unparsable = await run('apply', '--file', broken);
    assert.equal(unparsable.code, 1);
    assert.match(unparsable.err, /broken\.json is not valid JSON/);
    const usage = await run('apply');
    assert.equal(usage.code, 2);
    assert.match(usage.err, /^Usage: clearance apply/);
  });

  test('apply --dry-run validates and writes nothing', async (t) => {
    const { run, env, dir } = workspace(t);
    const file = join(dir, 'desk.yaml');
    writeFileSync(file, goodYaml);
    const result = await run('apply', '-f', file, '--dry-run');
    assert.equal(result.code, 0, result.err);
    assert.match(result.out, /is valid: 1 resource server\(s\), 1 client\(s\), 0 user\(s\), 0 mandate\(s\); nothing was written \(dry run\)/);
    assert.deepEqual((await stored(env)).clients, []);
  });

  test('apply -f with a valid file applies it and prints the secret once; the second run prints no changes', async (t) => {
    const { run, env, dir } = workspace(t);
    const file = join(dir, 'desk.yaml');
    writeFileSync(file, goodYaml);
    const first = await run('apply', '-f', file);
    assert.equal(first.code, 0, first.err);
    const lines = first.out.split('\n');
    assert.deepEqual(lines.slice(0, 3), [
      'created   resource_server https://orders.example.com',
      'created   client broker-1',
      '2 change(s) applied',
    ]);
    assert.match(lines[3]!, /^client_secret for broker-1 \(shown once, store it now\): [A-Za-z0-9_-]{43}$/);
    assert.equal(lines.length, 4);
    assert.deepEqual((await stored(env)).clients, ['broker-1']);

    const second = await run('apply', '-f', file);
    assert.equal(second.code, 0, second.err);
    assert.deepEqual(second.out.split('\n'), [
      'unchanged resource_server https://orders.example.com',
      'unchanged client broker-1',
      'no changes',
    ]);
    assert.ok(!second.out.includes('client_secret'));
  });

  test('keys list, rotate and retire report states and refuse what is not allowed', async (t) => {
    const { run } = workspace(t);
    const listed = await run('keys', 'list');
    assert.equal(listed.code, 0, listed.err);
    const [kid, alg, state] = listed.out.split(/\s+/);
    assert.equal(alg, 'ES256');
    assert.equal(state, 'active');

    const rotated = await run('keys', 'rotate', '--alg', 'EdDSA', '--overlap', '600');
    assert.equal(rotated.code, 0, rotated.err);
    assert.match(rotated.out, /^created \S+ {2}EdDSA {2}next +signs from \d{4}-\d\d-\d\dT/);
    const newKid = rotated.out.split(/\s+/)[1]!;

    const json = await run('keys', 'list', '--json');
    assert.equal(json.code, 0);
    assert.deepEqual((JSON.parse(json.out) as { kid: string; state: string }[]).map((k) => [k.kid, k.state]), [
      [kid, 'active'],
      [newKid, 'next'],
    ]);

    const active = await run('keys', 'retire', kid!);
    assert.equal(active.code, 1);
    assert.match(active.err, /cannot be retired yet: it is the current signing key/);
    const next = await run('keys', 'retire', newKid);
    assert.equal(next.code, 1);
    assert.match(next.err, /cannot be retired yet: it is the next signing key/);
    const unknown = await run('keys', 'retire', 'nope');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /no key with kid "nope"/);

    assert.equal((await run('keys', 'retire')).code, 2);
    assert.equal((await run('keys', 'rotate', '--alg', 'RS256')).code, 2);
    assert.equal((await run('keys', 'rotate', '--overlap', 'soon')).code, 2);
    assert.equal((await run('keys')).code, 2);
    assert.equal((await run('keys', 'shred')).code, 2);
  });

  test('keys retire retires a key superseded for longer than the longest token lifetime', async (t) => {
    const { run, env } = workspace(t);
    // Two hours ago: the first key, then a rotation with no overlap that superseded it at once.
    const clock = new ManualClock(Date.now() - 2 * 3600_000);
    const ctx = await openContext(loadConfig(env), { clock, log: createLogger('silent') });
    const [old] = await ctx.keys.list();
    clock.advance(1);
    await ctx.keys.rotate('ES256', 0);
    await ctx.storage.close();

    const listed = await run('keys', 'list');
    assert.match(listed.out, new RegExp(`^${old!.kid} {2}ES256 {2}retirable`, 'm'));
    const retired = await run('keys', 'retire', old!.kid);
    assert.equal(retired.code, 0, retired.err);
    assert.match(retired.out, new RegExp(`^retired ${old!.kid} {2}ES256 {2}retired`));
    const again = await run('keys', 'retire', old!.kid);
    assert.equal(again.code, 1);
    assert.match(again.err, /already retired/);
  });

  test('keys retire takes a key id that begins with a dash (a thumbprint can)', async (t) => {
    const { run } = workspace(t);
    const retired = await run('keys', 'retire', `-${'A'.repeat(42)}`);
    // Parsed as the key id: an unknown key, not an unknown option.
    assert.equal(retired.code, 1, retired.err);
    assert.match(retired.err, /-AAAA/);
    assert.doesNotMatch(retired.err, /Unknown option/);
  });

  test('start runs the server until SIGTERM, finishes an in-flight request, then stops with exit 0', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clearance-cli-start-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    // As a user would run it: the same Node, the real entry point, only the environment set.
    const child = spawn(process.execPath, ['bin/clearance.js', 'start'], {
      cwd: repository,
      env: {
        PATH: process.env.PATH,
        PORT: '0',
        HOST: '127.0.0.1',
        CLEARANCE_ISSUER: 'http://localhost',
        CLEARANCE_DATA_DIR: dir,
        CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex'),
        // The access log (incoming request / request completed) is at debug: the test waits for it.
        LOG_LEVEL: 'debug',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    const watchdog = setTimeout(() => child.kill('SIGKILL'), 30_000);
    t.after(() => {
      clearTimeout(watchdog);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));

    const logged: Record<string, unknown>[] = [];
    const waiters: { msg: string; where: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
    createInterface({ input: child.stdout }).on('line', (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      logged.push(line);
      for (const waiter of waiters.filter((w) => w.msg === line.msg && w.where(line))) waiter.resolve(line);
    });
    /** The first log line with this msg (and matching `where`); fails if the process exits first. */
    const logLine = (msg: string, where: (line: Record<string, unknown>) => boolean = () => true) =>
      Promise.race([
        new Promise<Record<string, unknown>>((resolve) => {
          const seen = logged.find((line) => line.msg === msg && where(line));
          if (seen) resolve(seen);
          else waiters.push({ msg, where, resolve });
        }),
        exited.then(([code]) => assert.fail(`exited with ${code} before logging "${msg}"; stderr: ${stderr}`)),
      ]);

    const listening = await logLine('clearance is listening');
    assert.equal(listening.issuer, 'http://localhost');
    assert.match(String(listening.address), /^http:\/\/127\.0\.0\.1:\d+$/);
    const base = String(listening.address);

    const discovery = await fetch(`${base}/.well-known/openid-configuration`);
    assert.equal(discovery.status, 200);
    const document = (await discovery.json()) as Record<string, unknown>;
    assert.equal(document.issuer, 'http://localhost');
    assert.equal(document.jwks_uri, 'http://localhost/jwks');
    const jwks = await fetch(`${base}/jwks`);
    assert.equal(jwks.status, 200);
    const { keys } = (await jwks.json()) as { keys: { kty: string; d?: string }[] };
    assert.equal(keys.length, 1);
    assert.equal(keys[0]!.kty, 'EC');
    assert.equal(keys[0]!.d, undefined);

    // An in-flight request on a keep-alive connection: headers and half the body sent.
    const url = new URL(base);
    const socket = connect(Number(url.port), url.hostname);
    await once(socket, 'connect');
    let response = '';
    socket.on('data', (chunk) => (response += chunk));
    const socketClosed = once(socket, 'close');
    socket.write('POST /jwks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"a":');
    await logLine('incoming request', (line) => (line.req as { method?: string } | undefined)?.method === 'POST');

    child.kill('SIGTERM');
    await logLine('shutting down: no new connections, finishing in-flight requests');
    socket.write('"bc"}');
    const [code, signal] = await exited;
    await socketClosed;

    assert.equal(signal, null);
    assert.equal(code, 0, stderr);
    assert.ok(logged.some((line) => line.msg === 'stopped'), 'logged "stopped"');
    assert.match(response, /^HTTP\/1\.1 404 Not Found\r\n/, 'the in-flight request got its answer');
    assert.match(response, /\r\nconnection: close\r\n/i, 'and its keep-alive connection was closed');
    assert.match(response, /\{"error":"not_found"/);
  });
});
