import { signingAlgs, type SigningAlg } from '../../config.ts';
import type { Context } from '../../context.ts';
import { KeyError, type KeyInfo } from '../../keys/keystore.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { exit, type Output } from '../output.ts';
import { UsageError, wholeNumber, type WholeNumberOption } from '../numbers.ts';
import type { Rule } from '../usage.ts';
import { AuditKeyError, AuditKeys } from '../../audit/audit-key.ts';
import { auditKeyCustody } from '../../audit/lifecycle.ts';
import { resolveMasterKey } from '../../keys/master-key.ts';
import { KeySchedule, recordAuditKeyRotation, type ScheduleStatus } from '../../lifecycle/key-schedule.ts';
import { keysRevokeCommand } from './keys-revoke.ts';
import { keysRewrapCommand, rewrapHelp } from './keys-rewrap.ts';

export const keysHelp = `Usage: clearance keys list [--json]
       clearance keys status [--json]
       clearance keys rotate [--alg ES256|EdDSA|PS256] [--overlap SECONDS]
       clearance keys rotate --audit
       clearance keys retire KID
       clearance keys revoke KID --compromised [--reason TEXT]
       clearance keys rewrap [--json]

list     every signing key with its state:
           next        published in JWKS, signs from its activation time
           active      the key that signs now
           superseded  no longer signs; kept in JWKS while tokens it signed may be valid
           retirable   superseded for longer than the longest token lifetime (3600 s + 60 s)
           retired     removed from JWKS
           compromised revoked as compromised: out of JWKS for good, its tokens inactive
status   the key schedule and every key with its age: token-signing keys (rotation interval
         CLEARANCE_KEY_ROTATION_DAYS, the activation lead, the next rotation and retirement due)
         and audit checkpoint keys (CLEARANCE_AUDIT_KEY_ROTATION_DAYS; the newest signs, older
         ones are kept to verify what they signed), and the node that ran the last step. A
         running server rotates and retires on this schedule by itself (docs/lifecycle.md)
rotate   creates a key, publishes it in JWKS at once, and makes it the signing key after the
         overlap (--overlap SECONDS, default CLEARANCE_KEY_OVERLAP, 600 s; at most 2592000, 30
         days; never less than 10 s, whatever it says) so verifiers' JWKS caches have it first;
         --alg defaults to CLEARANCE_SIGNING_ALG
         --audit  instead makes a new audit checkpoint key the signing one (the sealer uses it
                  from its next round); old audit keys stay, so old checkpoints still verify
retire   removes a retirable key from JWKS; refused for any other state
revoke   the emergency path for a compromised key (--compromised is required): removes it from
         JWKS on every node at once, makes every token it signed inactive, revokes the refresh
         tokens issued with them, and makes the next key sign now (a new one if none is staged);
         one key.compromised audit event. The admin API asks a second person or a break-glass
         activation (docs/keys.md)
${rewrapHelp}`;

/** `keys rotate --overlap`: as CLEARANCE_KEY_OVERLAP. */
export const keyOverlapOption: WholeNumberOption = { flag: '--overlap', min: 0, max: 30 * 24 * 3600, unit: 'seconds', note: 'as CLEARANCE_KEY_OVERLAP' };

/** What each action takes (src/cli/usage.ts); the usage lines above say the same. */
export const keysUsage = {
  actions: {
    list: { options: ['json'], args: [] },
    status: { options: ['json'], args: [] },
    rotate: { options: ['alg', 'overlap', 'audit'], args: [], numbers: [keyOverlapOption] },
    retire: { options: [], args: ['KID'] },
    revoke: { options: ['compromised', 'reason'], args: ['KID'] },
    rewrap: { options: ['json'], args: [] },
  },
} as const satisfies Rule;

export async function keysCommand(
  ctx: Context,
  action: string | undefined,
  args: { json?: boolean; alg?: string; overlap?: string; kid?: string; audit?: boolean; compromised?: boolean; reason?: string },
  output: Output,
): Promise<number> {
  try {
    switch (action) {
      case 'list': {
        const keys = await ctx.keys.list();
        if (args.json) output.out(JSON.stringify(keys, null, 2));
        else for (const key of keys) output.out(describe(key));
        return exit.ok;
      }
      case 'status': {
        const status = await new KeySchedule(ctx).status();
        if (args.json) output.out(JSON.stringify(status, null, 2));
        else for (const line of describeStatus(status)) output.out(line);
        return exit.ok;
      }
      case 'rotate': {
        if (args.audit) {
          if (args.alg !== undefined || args.overlap !== undefined) {
            output.err('--audit takes no --alg or --overlap: audit keys are Ed25519 and sign at once');
            return exit.usage;
          }
          const rotated = await new AuditKeys(ctx.storage.db, resolveMasterKey(ctx.config).key, ctx.clock, auditKeyCustody(ctx)).rotate();
          if (!rotated) {
            output.err('another process rotated the audit key meanwhile; see clearance keys status');
            return exit.failed;
          }
          await recordAuditKeyRotation(ctx, rotated.previous.keyId, rotated.current.keyId, { scheduled: false }, cliAdmin());
          await assessAdminAction(ctx, { admin: cliAdmin(), action: 'keys.rotate' });
          output.out(`audit key ${rotated.current.keyId} signs from the sealer's next round; ${rotated.previous.keyId} is kept for verification`);
          return exit.ok;
        }
        const alg = args.alg ?? ctx.config.signingAlg;
        if (!(signingAlgs as readonly string[]).includes(alg)) {
          output.err(`--alg must be one of ${signingAlgs.join(', ')}`);
          return exit.usage;
        }
        // Digits only, as CLEARANCE_KEY_OVERLAP: Number() would also take '', '1e3' and '0x10'.
        const overlap = wholeNumber(keyOverlapOption, args.overlap) ?? ctx.config.keyOverlapSeconds;
        const key = await ctx.keys.rotate(alg as SigningAlg, overlap);
        await assessAdminAction(ctx, { admin: cliAdmin(), action: 'keys.rotate' });
        output.out(`created ${describe(key)}`);
        return exit.ok;
      }
      case 'retire': {
        if (!args.kid) {
          output.err('usage: clearance keys retire KID');
          return exit.usage;
        }
        const retired = await ctx.keys.retire(args.kid);
        await assessAdminAction(ctx, { admin: cliAdmin(), action: 'keys.retire' });
        output.out(`retired ${describe(retired)}`);
        return exit.ok;
      }
      case 'revoke':
        return await keysRevokeCommand(ctx, args, output);
      case 'rewrap':
        return await keysRewrapCommand(ctx, args, output);
      default:
        output.err(keysHelp);
        return exit.usage;
    }
  } catch (error) {
    if (error instanceof UsageError) {
      output.err(error.message);
      return exit.usage;
    }
    if (error instanceof KeyError || error instanceof AuditKeyError) {
      output.err(error.message);
      return exit.failed;
    }
    throw error;
  }
}

function describe(key: KeyInfo): string {
  const when = (ms: number) => new Date(ms).toISOString();
  const detail =
    key.state === 'next'
      ? `signs from ${when(key.activatesAt)}`
      : key.state === 'superseded'
        ? `retirable from ${when(key.retirableAt!)}`
        : key.state === 'retired'
          ? `retired ${when(key.retiredAt!)}`
          : key.state === 'compromised'
            ? `revoked as compromised ${when(key.compromisedAt!)}`
          : `since ${when(key.activatesAt)}`;
  return `${key.kid}  ${key.alg.padEnd(5)}  ${key.state.padEnd(10)}  ${detail}`;
}

/** `keys status` for people: the schedule, then one line per key. */
function describeStatus(status: ScheduleStatus): string[] {
  const when = (ms: number | undefined) => (ms === undefined ? 'never (schedule off)' : new Date(ms).toISOString());
  const age = (seconds: number) => (seconds >= 86_400 ? `${Math.floor(seconds / 86_400)}d` : seconds >= 3600 ? `${Math.floor(seconds / 3600)}h` : `${Math.floor(seconds / 60)}m`);
  const { tokenKeys, auditKeys, lease } = status;
  const lines = [
    `token-signing keys: ${tokenKeys.rotationDays ? `rotate every ${tokenKeys.rotationDays} days` : 'no scheduled rotation (CLEARANCE_KEY_ROTATION_DAYS=0)'}, ` +
      `published ${tokenKeys.activationLeadSeconds} s before signing (JWKS max-age ${tokenKeys.jwksMaxAgeSeconds} s)`,
    `  next rotation:   ${when(tokenKeys.nextRotationAt)}`,
    `  next retirement: ${tokenKeys.nextRetirementAt === undefined ? 'none due' : when(tokenKeys.nextRetirementAt)}`,
    ...tokenKeys.keys.map((key) => `  ${describe(key)}  age ${age(key.ageSeconds)}`),
    `audit checkpoint keys: ${auditKeys.rotationDays ? `rotate every ${auditKeys.rotationDays} days` : 'no scheduled rotation (CLEARANCE_AUDIT_KEY_ROTATION_DAYS=0)'}`,
    `  next rotation:   ${when(auditKeys.nextRotationAt)}`,
    ...auditKeys.keys.map((key) => `  ${key.keyId}  ${key.custody.padEnd(8)}  ${key.state.padEnd(9)}  created ${new Date(key.createdAt).toISOString()}  age ${age(key.ageSeconds)}`),
    lease
      ? `last step: ${lease.holder} at ${new Date(lease.acquiredAt).toISOString()}${lease.expiresAt > status.now ? ` (holds the lease until ${new Date(lease.expiresAt).toISOString()})` : ''}`
      : 'last step: none yet',
  ];
  return lines;
}
