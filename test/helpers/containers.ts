/**
 * Clearance in containers, for test/deploy: podman with the settings this kind of host needs
 * (deploy/podman/containers.conf), the image built by deploy/image/build.sh on a base made from
 * Debian's packages (no registry here), and the nodes of deploy/local/nodes.sh.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { signCompact } from '../../src/keys/jws.ts';
import { testDatabaseUrl } from './storage.ts';

export const repository = new URL('../../', import.meta.url).pathname;
const containersConf = join(repository, 'deploy/podman/containers.conf');

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, tool)));
}

/** Why the container tests cannot run here, or false. CI installs podman, runc and debootstrap (.ci/run). */
export const containerSkip: string | false = !onPath('podman')
  ? 'podman is not installed (apt-get install podman runc debootstrap; .ci/run installs them)'
  : !onPath('debootstrap')
    ? 'debootstrap is not installed: the image is built on a base made from Debian packages (apt-get install debootstrap)'
    : process.getuid?.() !== 0
      ? 'the image base is made with debootstrap, which needs root'
      : !testDatabaseUrl
        ? 'TEST_DATABASE_URL is not set: the containers run against PostgreSQL'
        : false;

/** The compose file's proxy is tested in Debian's nginx (nginx-light; .ci/run installs it). */
export const nginxSkip: string | false = onPath('nginx') || existsSync('/usr/sbin/nginx') ? false : 'nginx is not installed (apt-get install nginx-light; .ci/run installs it)';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const run = promisify(execFile);

/** A command with podman's settings for this host; never throws on a non-zero exit. */
export async function command(file: string, args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  try {
    const { stdout, stderr } = await run(file, args, {
      cwd: repository,
      env: { ...process.env, CONTAINERS_CONF: process.env.CONTAINERS_CONF ?? containersConf, ...options.env },
      timeout: options.timeoutMs ?? 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number | string; stdout?: string; stderr?: string; message: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? failed.message };
  }
}

export const podman = (args: string[], timeoutMs?: number): Promise<Run> => command('podman', args, { timeoutMs });

/** podman prints errors about systemd timers for HEALTHCHECKs on hosts without systemd: not ours. */
export function withoutSystemdNoise(text: string): string {
  return text
    .split('\n')
    .filter((line) => !/systemd/.test(line))
    .join('\n');
}

let built: Promise<{ image: string; sizeMb: number }> | undefined;

/** The image, built once per test process with the documented script (`npm run image`). */
export function buildImage(): Promise<{ image: string; sizeMb: number }> {
  built ??= (async () => {
    const image = 'localhost/clearance:test';
    const result = await command(join(repository, 'deploy/image/build.sh'), ['--debian-base', '--tag', image], { timeoutMs: 900_000 });
    if (result.code !== 0) throw new Error(`the image did not build (exit ${result.code}):\n${result.stderr.slice(-4000)}`);
    const size = await podman(['image', 'inspect', '--format', '{{.Size}}', image]);
    return { image, sizeMb: Math.round(Number(size.stdout.trim()) / 1e6) };
  })();
  return built;
}

/** A database of its own on the test server, dropped by the returned function. */
export async function freshDatabase(adminQuery: (url: string, text: string) => Promise<void>): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `clearance_image_${randomBytes(6).toString('hex')}`;
  await adminQuery(testDatabaseUrl!, `create database ${name}`);
  const url = new URL(testDatabaseUrl!);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => adminQuery(testDatabaseUrl!, `drop database if exists ${name} with (force)`) };
}

/** The form fields of private_key_jwt client authentication (RFC 7523 §2.2) with a fresh assertion. */
export function clientAssertion(issuer: string, clientId: string, key: KeyObject): Record<string, string> {
  const now = Math.floor(Date.now() / 1000);
  return {
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: signCompact('ES256', key, { typ: 'JWT', kid: `${clientId}-1` }, { iss: clientId, sub: clientId, aud: issuer, iat: now, exp: now + 120, jti: randomUUID() }),
  };
}

/** Polls `origin`/readyz until it answers 200; fails after `timeoutMs` or once `stillRunning` says no. */
export async function untilReady(origin: string, stillRunning: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${origin}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    if (!(await stillRunning())) throw new Error(`${origin} stopped before it was ready`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${origin} was not ready within ${timeoutMs} ms`);
}
