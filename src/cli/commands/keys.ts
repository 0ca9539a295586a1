import { signingAlgs, type SigningAlg } from '../../config.ts';
import type { Context } from '../../context.ts';
import { KeyError, type KeyInfo } from '../../keys/keystore.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { exit, type Output } from '../output.ts';

export const keysHelp = `Usage: clearance keys list [--json]
       clearance keys rotate [--alg ES256|EdDSA|PS256] [--overlap SECONDS]
       clearance keys retire KID

list     every signing key with its state:
           next        published in JWKS, signs from its activation time
           active      the key that signs now
           superseded  no longer signs; kept in JWKS while tokens it signed may be valid
           retirable   superseded for longer than the longest token lifetime (3600 s + 60 s)
           retired     removed from JWKS
rotate   creates a key, publishes it in JWKS at once, and makes it the signing key after the
         overlap (default CLEARANCE_KEY_OVERLAP, 600 s) so verifiers' JWKS caches have it first
retire   removes a retirable key from JWKS; refused for any other state`;

export async function keysCommand(
  ctx: Context,
  action: string | undefined,
  args: { json?: boolean; alg?: string; overlap?: string; kid?: string },
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
      case 'rotate': {
        const alg = args.alg ?? ctx.config.signingAlg;
        if (!(signingAlgs as readonly string[]).includes(alg)) {
          output.err(`--alg must be one of ${signingAlgs.join(', ')}`);
          return exit.usage;
        }
        const overlap = args.overlap === undefined ? ctx.config.keyOverlapSeconds : Number(args.overlap);
        if (!Number.isInteger(overlap) || overlap < 0) {
          output.err('--overlap must be a whole number of seconds');
          return exit.usage;
        }
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
      default:
        output.err(keysHelp);
        return exit.usage;
    }
  } catch (error) {
    if (error instanceof KeyError) {
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
          : `since ${when(key.activatesAt)}`;
  return `${key.kid}  ${key.alg.padEnd(5)}  ${key.state.padEnd(10)}  ${detail}`;
}
