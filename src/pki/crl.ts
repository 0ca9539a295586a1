import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import type { Context } from '../context.ts';
import { skiOf } from './build.ts';
import { custodySigner } from './custody/webcrypto-adapter.ts';
import { PkiError } from './authority.ts';
import * as x509 from './x509.ts';

/** A CRL is valid for an hour and made anew when less than half of that is left, or on revocation. */
export const crlValidityMs = 3600_000;
const crlRefreshMs = crlValidityMs / 2;
/** thisUpdate is a minute before the CRL is made, as certificates are backdated. */
const backdateMs = 60_000;

/**
 * The current CRL of issuing authority `authorityId` (RFC 5280 §5), DER: the stored one while it
 * has more than half its validity left, else a new one (and always with `force`, after a
 * revocation). It lists every revoked certificate until a CRL issued after it expired has listed
 * it, carries the CRL number (which only grows: a conditional update, so two nodes making one at
 * once keep one) and the authority key identifier, and is signed by the issuing CA's key in custody.
 */
export async function publishCrl(ctx: Context, authorityId: string, options: { force?: boolean } = {}): Promise<Buffer> {
  // Another node may publish between this one's read and write; its CRL may predate a revocation
  // this node just committed, so this node makes its own again rather than use theirs.
  for (let attempt = 0; attempt < 5; attempt++) {
    const der = await publishOnce(ctx, authorityId, options);
    if (der) return der;
  }
  throw new PkiError(`the CRL of ${authorityId} kept changing while it was made; try again`);
}

async function publishOnce(ctx: Context, authorityId: string, options: { force?: boolean }): Promise<Buffer | undefined> {
  const db = ctx.storage.db;
  const now = ctx.clock.now();
  const stored = await db.selectFrom('pki_crls').selectAll().where('authority_id', '=', authorityId).executeTakeFirst();
  if (stored && !options.force && Number(stored.next_update) - now > crlRefreshMs) return Buffer.from(stored.crl, 'base64');
  const authority = await ctx.pki.authorities.byId(authorityId);
  if (!authority || authority.role !== 'issuing' || !authority.keyRef) throw new PkiError(`no issuing authority ${authorityId}`);
  const key = await ctx.pki.custodies.load(authority.keyRef);
  const listedUntil = stored ? Number(stored.this_update) - backdateMs : 0;
  const revoked = await db
    .selectFrom('pki_certificates')
    .select(['serial', 'revoked_at', 'revocation_reason'])
    .where('authority_id', '=', authorityId)
    .where('status', '=', 'revoked')
    // RFC 5280 §3.3: an entry MUST NOT be removed until it appears on one CRL issued beyond the
    // certificate's validity period. The previous CRL (this one replaces exactly it: the
    // conditional update below) listed every entry revoked before it was made; it was issued
    // beyond the validity of those that had expired by then. Only those are left out now.
    .where((eb) => eb.or([eb('not_after', '>=', listedUntil), eb('revoked_at', '>=', listedUntil)]))
    .orderBy('revoked_at')
    .execute();
  const number = Number(stored?.crl_number ?? 0) + 1;
  const { crypto, signingKey, signingAlgorithm } = custodySigner(key);
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: authority.certificate.subjectName,
      // A minute back, as certificates are: a relying party a little behind still accepts it at once.
      thisUpdate: new Date(now - backdateMs),
      nextUpdate: new Date(now + crlValidityMs),
      entries: revoked.map((r) => ({ serialNumber: r.serial, revocationDate: new Date(Number(r.revoked_at)), reason: Number(r.revocation_reason ?? 0) as x509.X509CrlReason })),
      extensions: [
        // RFC 5280 §5.2.1 and §5.2.3: conforming CRL issuers MUST include both.
        new x509.AuthorityKeyIdentifierExtension(skiOf(authority.certificate), false),
        new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(number))),
      ],
      signingKey,
      signingAlgorithm,
    },
    crypto,
  );
  const der = Buffer.from(crl.rawData);
  const row = { authority_id: authorityId, crl_number: number, this_update: now, next_update: now + crlValidityMs, crl: der.toString('base64') };
  const written = stored
    ? await db.updateTable('pki_crls').set(row).where('authority_id', '=', authorityId).where('crl_number', '=', stored.crl_number).executeTakeFirst()
    : await db.insertInto('pki_crls').values(row).onConflict((oc) => oc.column('authority_id').doNothing()).executeTakeFirst();
  const count = 'numUpdatedRows' in written ? written.numUpdatedRows : (written as { numInsertedOrUpdatedRows?: bigint }).numInsertedOrUpdatedRows;
  return Number(count ?? 0) === 1 ? der : undefined;
}
