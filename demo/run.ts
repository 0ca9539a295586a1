/** `npm run demo`: plays the institutional workflow against a fresh Clearance (demo/workflow.ts). */
import { runDemo } from './workflow.ts';

try {
  await runDemo();
  console.log('\nDone: every hop proved who acted for whom, under which mandate, and the evidence verified offline.');
} catch (error) {
  console.error(`\nThe demo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
