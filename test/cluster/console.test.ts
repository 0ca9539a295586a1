/**
 * The console under `clearance start --workers 2`, from the outside: a compliance officer signs in
 * (her password, a passkey added on her account page, consent) and reads the console with every
 * request on a connection of its own, so the cluster hands them to both workers. What one worker
 * sealed into a cookie (the sign-in in progress, the console's session) another opens: the keys
 * derive from the master key, and nothing of a sign-in is kept in a process.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { main } from '../../src/cli/main.ts';
import { openStorage } from '../../src/storage/database.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { startNode, type Cleanup } from '../helpers/cluster.ts';
import { freePort } from '../helpers/server.ts';

const password = 'cluster-console-horse-42';

interface Page {
  status: number;
  location: string | undefined;
  body: string;
}

/**
 * A browser over node:http: a cookie jar, and each request on a new connection (agent: false). The
 * issuer is http://localhost:PORT (WebAuthn's RP ID is a host name), the server listens on
 * 127.0.0.1: requests go there with the issuer's Host.
 */
class Browser {
  readonly cookies = new Map<string, string>();
  readonly issuer: string;
  readonly address: string;
  constructor(issuer: string, address: string) {
    this.issuer = issuer;
    this.address = address;
  }

  go(method: 'GET' | 'POST', path: string, form?: Record<string, string>): Promise<Page> {
    const url = new URL(path.startsWith('http') ? path : `${this.issuer}${path}`);
    const body = form ? new URLSearchParams(form).toString() : undefined;
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    return new Promise((resolve, reject) => {
      const req = request(
        `${this.address}${url.pathname}${url.search}`,
        {
          method,
          agent: false,
          headers: {
            host: url.host,
            ...(cookie ? { cookie } : {}),
            ...(body !== undefined ? { 'content-type': 'application/x-www-form-urlencoded', origin: this.issuer } : {}),
          },
        },
        (res) => {
          for (const line of res.headers['set-cookie'] ?? []) {
            const [pair] = line.split(';');
            const eq = pair!.indexOf('=');
            if (/max-age=0/i.test(line) || pair!.slice(eq + 1) === '') this.cookies.delete(pair!.slice(0, eq));
            else this.cookies.set(pair!.slice(0, eq), pair!.slice(eq + 1));
          }
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Follows 303s within the issuer from `path`; the last answer and its path. */
  async follow(page: Page, path: string): Promise<{ page: Page; path: string }> {
    while (page.status === 303 && page.location !== undefined) {
      const next = new URL(page.location, `${this.issuer}${path}`);
      if (next.origin !== this.issuer) break;
      path = `${next.pathname}${next.search}`;
      page = await this.go('GET', path);
    }
    return { page, path };
  }
}

const csrfOf = (body: string) => /name="csrf_token" value="([^"]+)"/.exec(body)?.[1] ?? assert.fail('no CSRF token on the page');

describe('the console under clearance start --workers 2', { timeout: 180_000 }, () => {
  const cleanups: Cleanup[] = [];
  let issuer: string;
  let browser: Browser;
  let dataDir: string;

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'clearance-cluster-console-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const port = await freePort();
    issuer = `http://localhost:${port}`;
    const env = { PATH: process.env.PATH, HOST: '127.0.0.1', CLEARANCE_ISSUER: issuer, CLEARANCE_DATA_DIR: dataDir, LOG_LEVEL: 'info' };
    const file = join(dataDir, 'people.json');
    // Cora is a broker's compliance officer (she reads her firm's events: src/audit/scope.ts).
    writeFileSync(
      file,
      JSON.stringify({
        regions: [{ id: 'uk' }],
        legal_entities: [{ lei: '5493001KJTIIGC8Y1R12', name: 'Cluster Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'compliance' }] }],
        users: [{ username: 'cora', password, name: 'Cora Compliance', roles: ['compliance'], desks: ['compliance'] }],
      }),
    );
    const out: string[] = [];
    // Applied before the cluster starts: the primary creates the keys, the workers read the person.
    assert.equal(await main(['apply', '-f', file], env, { out: (l) => out.push(l), err: (l) => out.push(l) }), 0, out.join('\n'));
    const node = await startNode(env, port, cleanups, ['--workers', '2']);
    browser = new Browser(issuer, node.origin);
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('a compliance officer signs in with a passkey and reads the console, her requests served by both workers', async () => {
    const device = new SoftwareAuthenticator({ origin: issuer });
    // 1. Her password: who she is; the console's level needs a passkey she does not have yet.
    let { page, path } = await browser.follow(await browser.go('GET', '/console/sign-in'), '/console/sign-in');
    assert.match(path, /^\/interaction\//, `${page.status} ${page.body.slice(0, 200)}`);
    const first = /^\/interaction\/([^/?]+)/.exec(path)![1]!;
    ({ page, path } = await browser.follow(await browser.go('POST', `/interaction/${first}/login`, { csrf_token: csrfOf(page.body), username: 'cora', password }), path));
    if (page.body.includes(`/interaction/${/^\/interaction\/([^/?]+)/.exec(path)?.[1]}/consent`)) {
      // The first step's consent (openid), when asked.
      const id = /^\/interaction\/([^/?]+)/.exec(path)![1]!;
      ({ page, path } = await browser.follow(await browser.go('POST', `/interaction/${id}/consent`, { csrf_token: csrfOf(page.body), decision: 'approve' }), path));
    }
    assert.match(page.body, /needs a passkey/, `${path}: ${page.body.slice(0, 300)}`);
    const stepUp = /^\/interaction\/([^/?]+)/.exec(path)![1]!;
    ({ page, path } = await browser.follow(await browser.go('POST', `/interaction/${stepUp}/decline`, { csrf_token: csrfOf(page.body) }), path));
    assert.equal(page.status, 403, 'refused without a passkey');

    // 2. A passkey, added on her account page with her password session.
    const account = await browser.go('GET', '/account');
    assert.equal(account.status, 200, account.body.slice(0, 200));
    const options = await browser.go('POST', '/account/passkeys/options', { csrf_token: csrfOf(account.body) });
    assert.equal(options.status, 200, options.body);
    const added = await browser.go('POST', '/account/passkeys', { csrf_token: csrfOf(account.body), name: 'Laptop', credential: JSON.stringify(device.register(JSON.parse(options.body))) });
    assert.equal(added.status, 303, added.body);

    // 3. The console again: the passkey, consent, the console.
    ({ page, path } = await browser.follow(await browser.go('GET', '/console/sign-in'), '/console/sign-in'));
    for (let steps = 0; steps < 5 && path.startsWith('/interaction/'); steps++) {
      const id = /^\/interaction\/([^/?]+)/.exec(path)![1]!;
      const csrf = csrfOf(page.body);
      if (page.body.includes(`action="/interaction/${id}/consent"`)) {
        ({ page, path } = await browser.follow(await browser.go('POST', `/interaction/${id}/consent`, { csrf_token: csrf, decision: 'approve' }), path));
      } else {
        const challenge = await browser.go('POST', `/interaction/${id}/passkey/options`, { csrf_token: csrf, username: 'cora' });
        assert.equal(challenge.status, 200, challenge.body);
        ({ page, path } = await browser.follow(await browser.go('POST', `/interaction/${id}/passkey`, { csrf_token: csrf, credential: JSON.stringify(device.assert(JSON.parse(challenge.body))) }), path));
      }
    }
    assert.equal(path, '/console', `${page.status}: ${page.body.slice(0, 300)}`);
    assert.match(page.body, /Signed in as <strong>cora<\/strong> at level <code>urn:clearance:acr:phr<\/code>/);

    // 4. Page after page, each on a new connection: whichever worker serves it opens her session.
    for (const path of ['/console/dashboard', '/console/audit', '/console/directory', '/console/reviews', '/console', '/console/dashboard?range=1h']) {
      const answer = await browser.go('GET', path);
      assert.equal(answer.status, 200, `${path}: ${answer.body.slice(0, 300)}`);
    }

    // The audit log names the process that recorded each event: both workers served her.
    const storage = openStorage({ dataDir });
    try {
      const rows = await storage.db.selectFrom('audit_events').select('event').where('type', 'in', ['user.login_succeeded', 'code.issued', 'token.issued', 'passkey.registered', 'audit.read', 'people.reviewed']).execute();
      const nodes = new Set(rows.map((row) => (JSON.parse(row.event) as { node?: string }).node));
      assert.ok(nodes.size >= 2, `events recorded by ${[...nodes].join(', ')}`);
    } finally {
      await storage.close();
    }
  });
});
