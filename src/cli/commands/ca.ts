import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import type { Context } from '../../context.ts';
import { CustodyError, type CustodyKeyType } from '../../pki/custody/custody.ts';
import { initCa, PkiError } from '../../pki/authority.ts';
import { publishCrl } from '../../pki/crl.ts';
import { PkiRefusal, requestCertificate } from '../../pki/issuance.ts';
import { parseDuration } from '../../pki/profiles.ts';
import { revokeCertificate, revocationReasons, RevocationError } from '../../pki/revocation.ts';
import { exit, type Output } from '../output.ts';
import { UsageError, wholeNumber, type WholeNumberOption } from '../numbers.ts';
import type { Rule } from '../usage.ts';
import { cliAdmin } from '../../risk/intrusion.ts';

export const caHelp = `Usage: clearance ca init --name NAME [--organization ORG] [--key-type EC-P256|Ed25519|RSA-3072]
                        (--root-key-out FILE --passphrase-file FILE | --pkcs11)
                        [--intermediate-custody software|pkcs11] [--root-days N] [--intermediate-days N]
       clearance ca issue --profile PROFILE --holder ID --csr FILE [--lifetime 8h] [-o FILE]
       clearance ca revoke SERIAL --reason REASON
       clearance ca list [--json]
       clearance ca root [-o FILE]
       clearance ca crl [-o FILE]

init     creates the CA: a root (path length 1) whose private key is written to --root-key-out
         (a new file), encrypted (PKCS#8, AES-256-CBC) with the passphrase in --passphrase-file
         (at least 12 characters), and never stored
         — or generated in the PKCS#11 token (--pkcs11; CLEARANCE_PKCS11_MODULE, _TOKEN, _PIN) —
         and the online issuing intermediate (path length 0) whose key is in custody (software by
         default: sealed with the master key). Prints both certificates' subjects, SHA-256
         fingerprints and expiry. Refused when the CA exists. Defaults: EC-P256, root 3650 days,
         intermediate 1825 days (--root-days, --intermediate-days: 1 to 9125).
issue    a certificate of PROFILE for ID from a PKCS#10 request (its proof of possession checked),
         with every rule of POST /pki/certificates; a profile with approval: required opens the
         approval request instead and prints its id. Writes the certificate and chain (PEM) to
         -o FILE or standard output; --lifetime (8h, 30m, or seconds) within the profile's.
revoke   revokes a certificate (REASON: ${Object.keys(revocationReasons).join(', ')});
         Clearance's mTLS refuses it at once, OCSP answers revoked, the CRL is published anew.
list     every certificate the CA issued: serial, profile, holder, expiry, status.
root     the root certificate (PEM), the trust anchor relying parties install; to -o FILE or
         standard output.
crl      the issuing CA's current CRL (made anew when due): DER to -o FILE, else PEM on standard
         output.`;

/** `ca init --root-days`, `--intermediate-days`: the certificates' lifetimes. */
export const rootDaysOption: WholeNumberOption = { flag: '--root-days', min: 1, max: 9125, unit: 'days' };
export const intermediateDaysOption: WholeNumberOption = { flag: '--intermediate-days', min: 1, max: 9125, unit: 'days' };

/** What each action takes (src/cli/usage.ts); the usage lines above say the same. */
export const caUsage = {
  actions: {
    init: {
      options: ['name', 'organization', 'key-type', 'root-key-out', 'passphrase-file', 'pkcs11', 'intermediate-custody', 'root-days', 'intermediate-days'],
      args: [],
      numbers: [rootDaysOption, intermediateDaysOption],
    },
    issue: { options: ['profile', 'holder', 'csr', 'lifetime', 'output'], args: [] },
    revoke: { options: ['reason'], args: ['SERIAL'] },
    list: { options: ['json'], args: [] },
    root: { options: ['output'], args: [] },
    crl: { options: ['output'], args: [] },
  },
} as const satisfies Rule;

export interface CaArgs {
  action: string | undefined;
  target: string | undefined;
  name?: string;
  organization?: string;
  keyType?: string;
  rootKeyOut?: string;
  passphraseFile?: string;
  pkcs11?: boolean;
  intermediateCustody?: string;
  rootDays?: string;
  intermediateDays?: string;
  profile?: string;
  holder?: string;
  csr?: string;
  lifetime?: string;
  output?: string;
  reason?: string;
  json?: boolean;
}

export async function caCommand(ctx: Context, args: CaArgs, output: Output): Promise<number> {
  try {
    switch (args.action) {
      case 'init':
        return await init(ctx, args, output);
      case 'issue':
        return await issue(ctx, args, output);
      case 'revoke': {
        if (!args.target || !args.reason) {
          output.err('usage: clearance ca revoke SERIAL --reason REASON');
          return exit.usage;
        }
        const revoked = await revokeCertificate(ctx, { serial: args.target, reason: args.reason, actor: cliAdmin() });
        output.out(`revoked ${revoked.serial} (${revoked.reason}) at ${new Date(revoked.revokedAt).toISOString()}`);
        return exit.ok;
      }
      case 'list':
        return await list(ctx, args, output);
      case 'root': {
        const root = (await ctx.pki.authorities.all()).find((a) => a.role === 'root');
        if (!root) throw new PkiError('the CA is not initialised: run `clearance ca init`');
        if (args.output) writeFileSync(args.output, root.pem);
        else output.out(root.pem.trimEnd());
        return exit.ok;
      }
      case 'crl': {
        const { authority } = await ctx.pki.authorities.issuing();
        const der = await publishCrl(ctx, authority.id);
        if (args.output) writeFileSync(args.output, der);
        else output.out(`-----BEGIN X509 CRL-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END X509 CRL-----`.replace('\n\n', '\n'));
        return exit.ok;
      }
      default:
        output.err(caHelp);
        return exit.usage;
    }
  } catch (error) {
    if (error instanceof UsageError) return usage(output, error.message);
    if (error instanceof PkiError || error instanceof PkiRefusal || error instanceof RevocationError || error instanceof CustodyError) {
      output.err(error.message);
      return exit.failed;
    }
    throw error;
  }
}

async function init(ctx: Context, args: CaArgs, output: Output): Promise<number> {
  const keyType = (args.keyType ?? 'EC-P256') as CustodyKeyType;
  if (!['EC-P256', 'Ed25519', 'RSA-3072'].includes(keyType)) return usage(output, '--key-type must be EC-P256, Ed25519 or RSA-3072');
  if (!args.name) return usage(output, '--name is required (e.g. --name "Example Broker Workloads")');
  if (Boolean(args.pkcs11) === (args.rootKeyOut !== undefined)) return usage(output, 'give either --root-key-out FILE with --passphrase-file FILE, or --pkcs11');
  let root: { custody: 'export'; passphrase: string } | { custody: 'pkcs11' } = { custody: 'pkcs11' };
  if (args.rootKeyOut !== undefined) {
    if (!args.passphraseFile) return usage(output, '--root-key-out needs --passphrase-file: the root key is never written unencrypted');
    let passphrase: string;
    try {
      passphrase = readFileSync(args.passphraseFile, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      return usage(output, `cannot read ${args.passphraseFile}: ${(error as Error).message}`);
    }
    if (passphrase.length < 12) return usage(output, 'the passphrase must be at least 12 characters');
    root = { custody: 'export', passphrase };
  }
  const intermediateCustody = (args.intermediateCustody ?? 'software') as 'software' | 'pkcs11';
  if (!['software', 'pkcs11'].includes(intermediateCustody)) return usage(output, '--intermediate-custody must be software or pkcs11');
  const rootDays = wholeNumber(rootDaysOption, args.rootDays) ?? 3650;
  const intermediateDays = wholeNumber(intermediateDaysOption, args.intermediateDays) ?? 1825;
  // The root key's file is made first (new, owner-only): a path that exists or cannot be written
  // must stop the init while nothing is stored — once the CA is, this file is the key's only copy.
  let keyFile: number | undefined;
  if (args.rootKeyOut !== undefined) {
    try {
      keyFile = openSync(args.rootKeyOut, 'wx', 0o600);
    } catch (error) {
      return usage(output, `cannot write the root key to ${args.rootKeyOut}: ${(error as Error).message} (it must be a new file)`);
    }
  }
  let result: Awaited<ReturnType<typeof initCa>>;
  try {
    result = await initCa(ctx.storage.db, ctx.pki.custodies, ctx.clock, {
      name: args.name,
      ...(args.organization ? { organization: args.organization } : {}),
      root,
      intermediateCustody,
      keyType,
      rootLifetimeDays: rootDays,
      intermediateLifetimeDays: intermediateDays,
    });
  } catch (error) {
    // No CA, no key: the empty file goes.
    if (keyFile !== undefined) {
      closeSync(keyFile);
      unlinkSync(args.rootKeyOut!);
    }
    throw error;
  }
  // The key first: once the CA is stored, this file is its only copy.
  let keyWritten = true;
  if (keyFile !== undefined) {
    try {
      writeFileSync(keyFile, result.encryptedRootKey!);
      fsyncSync(keyFile);
    } catch (error) {
      // Shown rather than lost (it is encrypted with the passphrase).
      keyWritten = false;
      output.err(`the CA is created, but its root key could not be written to ${args.rootKeyOut}: ${(error as Error).message}`);
      output.err('here it is, encrypted with your passphrase: keep it offline');
      output.out(result.encryptedRootKey!.trimEnd());
    } finally {
      closeSync(keyFile);
    }
  }
  ctx.pki.authorities.invalidate();
  const fingerprint = (der: ArrayBuffer) => createHash('sha256').update(Buffer.from(der)).digest('hex');
  await ctx.audit.record({
    type: 'pki.ca_initialised',
    actor: cliAdmin(),
    details: {
      control: 'financial',
      root: { subject: result.root.subject, sha256: fingerprint(result.root.rawData), custody: result.rootKeyRef ? 'pkcs11' : 'exported' },
      issuing: { subject: result.intermediate.subject, sha256: fingerprint(result.intermediate.rawData), custody: intermediateCustody },
      key_type: keyType,
    },
  });
  if (!keyWritten) return exit.failed;
  output.out(`root       ${result.root.subject}  sha256 ${fingerprint(result.root.rawData)}  until ${result.root.notAfter.toISOString()}`);
  output.out(`           key ${result.rootKeyRef ? `in the PKCS#11 token (${result.rootKeyRef})` : `written encrypted to ${args.rootKeyOut}; keep it offline`}`);
  output.out(`issuing    ${result.intermediate.subject}  sha256 ${fingerprint(result.intermediate.rawData)}  until ${result.intermediate.notAfter.toISOString()}`);
  output.out(`           key in ${intermediateCustody} custody (${result.intermediateKeyRef})`);
  output.out('relying parties trust the root: clearance ca root -o root.pem');
  return exit.ok;
}

async function issue(ctx: Context, args: CaArgs, output: Output): Promise<number> {
  if (!args.profile || !args.holder || !args.csr) return usage(output, 'usage: clearance ca issue --profile PROFILE --holder ID --csr FILE [--lifetime 8h] [-o FILE]');
  const lifetime = args.lifetime === undefined ? undefined : parseDuration(/^\d+$/.test(args.lifetime) ? Number(args.lifetime) : args.lifetime);
  if (args.lifetime !== undefined && lifetime === undefined) return usage(output, '--lifetime is a duration such as 8h or 30m');
  let csr: string;
  try {
    csr = readFileSync(args.csr, 'utf8');
  } catch (error) {
    return usage(output, `cannot read ${args.csr}: ${(error as Error).message}`);
  }
  // Before the certificate is issued: a chain that cannot be written would leave one nobody holds.
  const unwritable = args.output === undefined ? undefined : writeProblem(args.output);
  if (unwritable) {
    output.err(unwritable);
    return exit.failed;
  }
  const outcome = await requestCertificate(ctx, {
    profile: args.profile,
    csr,
    holder: args.holder,
    requestedBy: cliAdmin(),
    requesterType: 'client',
    ...(lifetime !== undefined ? { lifetimeSeconds: lifetime } : {}),
  });
  if (outcome.status === 'pending_approval') {
    output.out(`profile ${args.profile} needs approval: approval request ${outcome.approvalRequest} (certificate request ${outcome.requestId}), until ${new Date(outcome.expiresAt).toISOString()}`);
    return exit.ok;
  }
  if (args.output) writeFileSync(args.output, outcome.chainPem);
  else output.out(outcome.chainPem.trimEnd());
  output.err(`issued ${outcome.serial} (${outcome.profile}) for ${outcome.holder} until ${new Date(outcome.notAfter).toISOString()}`);
  return exit.ok;
}

async function list(ctx: Context, args: CaArgs, output: Output): Promise<number> {
  const rows = await ctx.storage.db
    .selectFrom('pki_certificates')
    .select(['serial', 'profile', 'holder', 'not_after', 'status', 'revoked_at', 'revocation_reason', 'renewed_from'])
    .orderBy('created_at')
    .execute();
  const now = ctx.clock.now();
  const view = rows.map((r) => ({
    serial: r.serial,
    profile: r.profile,
    holder: r.holder,
    not_after: new Date(Number(r.not_after)).toISOString(),
    status: r.status === 'revoked' ? 'revoked' : Number(r.not_after) < now ? 'expired' : 'valid',
    ...(r.revoked_at !== null ? { revoked_at: new Date(Number(r.revoked_at)).toISOString() } : {}),
    ...(r.renewed_from ? { renewed_from: r.renewed_from } : {}),
  }));
  if (args.json) output.out(JSON.stringify(view, null, 2));
  else for (const c of view) output.out(`${c.serial}  ${c.profile.padEnd(18)}  ${c.holder.padEnd(20)}  ${c.status.padEnd(7)}  until ${c.not_after}`);
  return exit.ok;
}

function usage(output: Output, message: string): number {
  output.err(message);
  return exit.usage;
}


/** Why `path` cannot be written (a missing folder, no permission), found by opening it without truncating; undefined when it can. */
function writeProblem(path: string): string | undefined {
  const existed = existsSync(path);
  try {
    closeSync(openSync(path, 'a'));
  } catch (error) {
    return `cannot write ${path}: ${(error as Error).message}`;
  }
  if (!existed) unlinkSync(path);
  return undefined;
}
