#!/usr/bin/env node
// The `clearance` command. Node 24 runs the TypeScript sources directly (type stripping). npm
// scripts and npx run it on the Node 24 the project pins (the `node` devDependency), whatever
// Node runs npm itself; this check is for anything else (`node bin/clearance.js` on an older
// Node, an install without devDependencies). package.json `engines` cannot say it: npm compares
// that with the Node npm runs on, which need not be 24 (README "Quick start").
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `clearance needs Node.js 24 or later, and this is Node.js ${process.versions.node}.\n` +
      'Run it through npm (npm start, npx clearance ...), which uses the Node 24 the project installs, or install Node 24.\n',
  );
  process.exit(2);
}
// OpenTelemetry traces of the server, when the environment asks for them (docs/observability.md):
// started before the server's modules are imported, so that the pg instrumentation's require hook
// is in place when pg is first loaded. Off (the default), the SDK is not even loaded.
const tracing = process.argv[2] === 'start' ? await import('../src/telemetry/tracing.ts') : undefined;
await tracing?.startTracing();
// Imported only now: an older Node would fail on the .ts import before the check above ran.
const { main } = await import('../src/cli/main.ts');

process.exitCode = await main(process.argv.slice(2));
await tracing?.stopTracing();
