import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Packaging: the subpaths resolve through the package name inside this repository (src, type
// stripping), and `build:guard`'s tsc emit gives JavaScript and declarations that a consumer
// runs from node_modules — where Node refuses to strip types — and type-checks against.

const root = fileURLToPath(new URL('../../', import.meta.url));

test('exports the guard subpaths and package.json, and nothing else of the server', async () => {
  assert.match(import.meta.resolve('clearance/guard'), /\/src\/guard\/index\.ts$/);
  assert.match(import.meta.resolve('clearance/guard/fastify'), /\/src\/guard\/fastify\.ts$/);
  assert.match(import.meta.resolve('clearance/package.json'), /\/package\.json$/);
  assert.throws(() => import.meta.resolve('clearance/src/server.ts'), /ERR_PACKAGE_PATH_NOT_EXPORTED|not exported/);
});

test('the guard and the JOSE helpers import nothing but jose, node: built-ins and each other', () => {
  const allowed: Record<string, RegExp> = {
    // The @peculiar ASN.1 schemas only for the OCSP check of signed requests (./ocsp.ts); the
    // OpenTelemetry API (no SDK) only for the trace context of its calls (./trace-context.ts).
    guard: /^(jose|fastify|@peculiar\/asn1-(schema|x509|ocsp)|@opentelemetry\/api|node:[a-z:/]+|\.\/[a-z-]+\.ts|\.\.\/jose\/[a-z-]+\.ts)$/,
    // src/jose is dependency-free: not even the jose package.
    jose: /^(node:[a-z:/]+|\.\/[a-z-]+\.ts)$/,
  };
  for (const [folder, pattern] of Object.entries(allowed)) {
    for (const file of readdirSync(join(root, 'src', folder)).filter((name) => name.endsWith('.ts'))) {
      const text = readFileSync(join(root, 'src', folder, file), 'utf8');
      for (const [, specifier] of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/g)) {
        assert.match(specifier!, pattern, `src/${folder}/${file} imports ${specifier}`);
      }
    }
  }
});

test('builds to JavaScript and declarations that run from node_modules and type-check in a consumer', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-guard-build-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const modules = join(dir, 'node_modules');
  const pkg = join(modules, 'clearance-guard');
  mkdirSync(join(modules, '@types'), { recursive: true });
  mkdirSync(join(modules, '@peculiar'));
  mkdirSync(join(modules, '@opentelemetry'));
  for (const dep of ['jose', 'fastify', '@types/node', 'undici-types', '@peculiar/asn1-schema', '@peculiar/asn1-x509', '@peculiar/asn1-ocsp', '@peculiar/utils', 'asn1js', 'pvtsutils', 'pvutils', 'tslib', '@opentelemetry/api']) symlinkSync(join(root, 'node_modules', dep), join(modules, dep), 'dir');
  // What `npm run build:guard` runs, into the consumer's node_modules.
  execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(root, 'tsconfig.guard.json'), '--outDir', join(pkg, 'dist')], { stdio: 'pipe' });
  writeFileSync(
    join(pkg, 'package.json'),
    JSON.stringify({ name: 'clearance-guard', type: 'module', exports: { '.': './dist/guard/index.js', './fastify': './dist/guard/fastify.js' } }),
  );
  assert.doesNotMatch(readFileSync(join(pkg, 'dist/guard/guard.js'), 'utf8'), /from '\.\.?\/[a-z-/]+\.ts'/, 'relative imports rewritten to .js');
  // The guard pulls in nothing of the server: only itself and the dependency-free JOSE helpers.
  assert.deepEqual(readdirSync(join(pkg, 'dist')).sort(), ['guard', 'jose']);

  const script = `
    import { createGuard, createIdempotencyGuard, MemoryIdempotencyStore, GuardError } from 'clearance-guard';
    import { clearanceGuard } from 'clearance-guard/fastify';
    const guard = createGuard({ issuer: 'https://as.example.com', audience: 'https://rs.example.com', jwks: { keys: [] } });
    const error = await guard.verify({ method: 'GET', url: 'https://rs.example.com/x', headers: {} }).catch((e) => e);
    const idem = createIdempotencyGuard({ store: new MemoryIdempotencyStore() });
    console.log(JSON.stringify({ refused: error instanceof GuardError && error.status, once: await idem.once({ txn: 't', action: 'a' }, async () => 42), plugin: typeof clearanceGuard }));
  `;
  const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(output), { refused: 401, once: 42, plugin: 'function' });

  writeFileSync(
    join(dir, 'consumer.ts'),
    `import { createGuard, type VerifiedAccess } from 'clearance-guard';
     import { clearanceGuard } from 'clearance-guard/fastify';
     import type { FastifyRequest } from 'fastify';
     const guard = createGuard({ issuer: 'https://as.example.com', audience: 'https://rs.example.com' });
     export async function handle(request: FastifyRequest): Promise<string | undefined> {
       const access: VerifiedAccess | undefined = request.access;
       if (access) guard.requireScopes(access, ['order:create']);
       return access?.txn;
     }
     export const plugin = clearanceGuard;
    `,
  );
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { target: 'es2024', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] }, files: ['consumer.ts'] }),
  );
  try {
    execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(dir, 'tsconfig.json')], { encoding: 'utf8', stdio: 'pipe' });
  } catch (error) {
    assert.fail(`the consumer does not type-check: ${(error as { stdout?: string }).stdout}`);
  }
});
