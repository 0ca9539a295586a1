import { randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { signCompact } from '../../src/keys/jws.ts';
import { freePorts } from './server.ts';
import { adminQuery } from './storage.ts';

const repository = new URL('../../', import.meta.url).pathname;


/** Live processes whose parent is `pid` (a primary's workers), from /proc. */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/**
 * A client_credentials request body with a fresh ES256 client assertion (RFC 7523 §2.2) of
 * `clientId`, signed with its key (`kid`, default `<clientId>-1`), for `resource`.
 */
export function clientCredentialsRequest(options: { issuer: string; clientId: string; key: KeyObject; kid?: string; resource: string; scope?: string }): string {
  const { issuer, clientId, key, kid = `${clientId}-1`, resource, scope = 'order:create' } = options;
  const now = Math.floor(Date.now() / 1000);
  const assertion = signCompact('ES256', key, { typ: 'JWT', kid }, { iss: clientId, sub: clientId, aud: issuer, iat: now, exp: now + 120, jti: randomUUID() });
  return new URLSearchParams({
    grant_type: 'client_credentials',
    scope,
    resource,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  }).toString();
}

export type LogLine = Record<string, unknown>;

export interface Node {
  origin: string;
  process: ChildProcess;
  /** Its exit code and signal, once it exits. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  /**
   * Resolves with the first log line whose msg matches (a RegExp, or the exact text) and `where`,
   * from now or earlier; fails if the process exits first.
   */
  logLine(msg: RegExp | string, where?: (line: LogLine) => boolean): Promise<LogLine>;
  logged: LogLine[];
  stderr(): string;
}

export type Cleanup = () => Promise<void> | void;

/** One `clearance start` process (a primary and its workers with `--workers`); resolves once it listens. */
export async function startNode(env: NodeJS.ProcessEnv, port: number, cleanups: Cleanup[], args: string[] = []): Promise<Node> {
  const child = spawn(process.execPath, ['bin/clearance.js', 'start', ...args], { cwd: repository, env: { ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // A primary's workers (--workers) go with it.
    for (const pid of childrenOf(child.pid!)) process.kill(pid, 'SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const logged: LogLine[] = [];
  const matches = (msg: RegExp | string, where: (line: LogLine) => boolean, line: LogLine) => (typeof msg === 'string' ? line.msg === msg : msg.test(String(line.msg))) && where(line);
  const waiters: { msg: RegExp | string; where: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      return;
    }
    logged.push(line);
    for (const waiter of waiters.filter((w) => matches(w.msg, w.where, line))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  });
  const logLine = (msg: RegExp | string, where: (line: LogLine) => boolean = () => true) =>
    Promise.race([
      new Promise<LogLine>((resolve) => {
        const seen = logged.find((line) => matches(msg, where, line));
        if (seen) resolve(seen);
        else waiters.push({ msg, where, resolve });
      }),
      exited.then(([code]) => assert.fail(`the node exited with ${code} before logging ${String(msg)}; stderr: ${stderr}`)),
    ]);
  await logLine('clearance is listening');
  return { origin: `http://127.0.0.1:${port}`, process: child, exited, logLine, logged, stderr: () => stderr };
}

/** Two nodes of one deployment: their issuer (A's origin), environment, data directory and PostgreSQL schema. */
export interface TwoNodes {
  a: Node;
  b: Node;
  issuer: string;
  env: NodeJS.ProcessEnv;
  dataDir: string;
  schema: string;
}

/**
 * Starts two `clearance start` processes on a throwaway schema of the test PostgreSQL database
 * (dropped by `cleanups`), sharing one master key and data directory — the first migrates the
 * store, the second starts on it — and waits until both listen for change notices.
 */
export async function startTwoNodesOnSchema(databaseUrl: string, prefix: string, cleanups: Cleanup[]): Promise<TwoNodes> {
  const schema = `${prefix}_${randomBytes(6).toString('hex')}`;
  await adminQuery(databaseUrl, `create schema ${schema}`);
  cleanups.push(() => adminQuery(databaseUrl, `drop schema if exists ${schema} cascade`));
  const url = new URL(databaseUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  const dataDir = mkdtempSync(join(tmpdir(), `clearance-${prefix}-`));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const [portA, portB] = (await freePorts(2)) as [number, number];
  const issuer = `http://127.0.0.1:${portA}`;
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOST: '127.0.0.1', CLEARANCE_ISSUER: issuer, CLEARANCE_DATA_DIR: dataDir, CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex'), DATABASE_URL: url.toString(), LOG_LEVEL: 'info' };
  const a = await startNode(env, portA, cleanups);
  const b = await startNode(env, portB, cleanups);
  await a.logLine(/^listening for change notices$/);
  await b.logLine(/^listening for change notices$/);
  return { a, b, issuer, env, dataDir, schema };
}
