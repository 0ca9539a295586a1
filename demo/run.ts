/**
 * `npm run demo`: plays the institutional workflow against a fresh Clearance (demo/workflow.ts).
 * `npm run demo -- --console` then keeps Clearance running on http://localhost:PORT with a
 * compliance officer, to look at the trade in the console (docs/console.md) until Ctrl-C.
 */
import { once } from 'node:events';
import { startTracing, stopTracing } from '../src/telemetry/tracing.ts';
import { addComplianceOfficer } from './console.ts';
import { runDemo } from './workflow.ts';

const withConsole = process.argv.slice(2).includes('--console');
// OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 npm run demo: the trade as one trace (docs/observability.md).
const traced = await startTracing();

try {
  const outcome = await runDemo(console.log, withConsole ? { keep: true, host: 'localhost' } : {});
  console.log('\nDone: every hop proved who acted for whom, under which mandate, and the evidence verified offline.');
  if (outcome.kept) {
    const { clearance } = outcome.kept;
    const officer = await addComplianceOfficer(clearance.ctx);
    console.log(`\n== The console: ${clearance.ctx.config.issuer}/console`);
    console.log(`   sign in as ${officer.username} with the password ${officer.password}`);
    console.log('   compliance needs a passkey: when the sign-in asks for one, go back, add a passkey on');
    console.log(`   ${clearance.ctx.config.issuer}/account, and sign in to the console again`);
    console.log(`   then type the txn ${outcome.txn} under Transactions, and download its evidence bundle`);
    console.log('   (Ctrl-C stops Clearance and removes its data)');
    await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
    await outcome.kept.close();
  }
} catch (error) {
  console.error(`\nThe demo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
// Every span of the trade is exported before the demo ends.
if (traced) await stopTracing();
