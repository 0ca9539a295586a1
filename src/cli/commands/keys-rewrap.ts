import type { Context } from '../../context.ts';
import { masterKeyId, keyringOf } from '../../keys/keyring.ts';
import { resolveMasterKey } from '../../keys/master-key.ts';
import { rewrap, RewrapError } from '../../keys/rewrap.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { exit, type Output } from '../output.ts';

export const rewrapHelp = `rewrap   re-seals every secret sealed with the master key (signing, audit and CA keys, TOTP
         secrets, upstream and webhook secrets, subject keys, ...) with CLEARANCE_MASTER_KEY,
         opening each with CLEARANCE_PREVIOUS_MASTER_KEY (or _FILE, or the _PKCS11_LABEL
         variants). Resumable: run it again after an interruption and it goes on. Before it,
         give every node both keys (rolling restart); after it completes, remove the previous
         key (rolling restart). Pairwise subjects and audit pseudonyms do not change
         (docs/keys.md "The master key")`;

/**
 * `clearance keys rewrap [--json]` (src/keys/rewrap.ts, docs/keys.md "The master key"): the
 * operator at the command line holds the database and both master keys; the events name them.
 */
export async function keysRewrapCommand(ctx: Context, args: { json?: boolean }, output: Output): Promise<number> {
  const masterKey = resolveMasterKey(ctx.config).key;
  const keyring = keyringOf(masterKey);
  const operator = cliAdmin();
  if (!args.json) {
    const from = keyring?.previous ? ` from ${masterKeyId(keyring.previous)}` : '';
    output.out(`re-sealing every secret with master key ${masterKeyId(masterKey)}${from}`);
  }
  let report;
  try {
    report = await rewrap(ctx, masterKey, { actor: operator, onProgress: args.json ? undefined : (column, resealed) => output.out(`  ${column}: ${resealed}`) });
  } catch (error) {
    if (!(error instanceof RewrapError)) throw error;
    output.err(`rewrap stopped: ${error.message}`);
    return exit.failed;
  }
  await assessAdminAction(ctx, { admin: operator, action: 'keys.rewrap' });
  if (args.json) {
    output.out(JSON.stringify(report, null, 2));
    return exit.ok;
  }
  const resealed = Object.values(report.resealed).reduce((a, b) => a + b, 0);
  const deleted = report.deleted['totp_factors.secret'] ?? 0;
  output.out(`rewrap ${report.id} complete${report.resumed ? ' (resumed)' : ''}: ${resealed} value(s) re-sealed with ${report.toKeyId}`);
  if (deleted) output.out(`${deleted} pending TOTP enrolment(s) removed (bound to a browser session; the person begins again)`);
  output.out(
    report.fromKeyId === report.toKeyId
      ? 'every value now names its master key'
      : `master key ${report.fromKeyId} is no longer needed: remove CLEARANCE_PREVIOUS_MASTER_KEY from every node (rolling restart); keep the old key only as long as backups sealed with it`,
  );
  return exit.ok;
}
