/** `npm run demo:agent`: algo-7 as a real agent (demo/agent.ts). */
import { runAgentDemo } from './agent.ts';

try {
  await runAgentDemo();
  console.log('\nDone: the agent traded only with an approved model, signed what it sent, and the evidence verified offline.');
} catch (error) {
  console.error(`\nThe agent demo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
