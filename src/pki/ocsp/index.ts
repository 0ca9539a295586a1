import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicOCSPResponse, id_pkix_ocsp_basic, OCSPResponse, OCSPResponseStatus } from '@peculiar/asn1-ocsp';
import type { Context } from '../../context.ts';
import { answerOcsp } from './responder.ts';

/** How long an OCSP answer is valid (nextUpdate − thisUpdate): relying parties may cache it that long. */
export const ocspValiditySeconds = 300;

/**
 * Clearance's OCSP responder over its own records: every issuing authority is served, each by its
 * delegated responder (renewed before it expires, src/pki/authority.ts), from the same revocation
 * status Clearance's mTLS uses (src/pki/status.ts), so OCSP says `revoked` within the same second.
 */
export async function respondOcsp(ctx: Context, requestDer: Uint8Array): Promise<Buffer> {
  const authorities = (await ctx.pki.authorities.all()).filter((a) => a.role === 'issuing');
  return answerOcsp(requestDer, {
    issuers: authorities.map((a) => ({ id: a.id, certificate: new Uint8Array(a.certificate.rawData) })),
    async responderFor(issuerId) {
      const issuing = authorities.find((a) => a.id === issuerId)!;
      const { authority, key } = await ctx.pki.authorities.ocspResponder(issuing);
      return { certificate: new Uint8Array(authority.certificate.rawData), key };
    },
    status: (issuerId, serial) => ctx.pki.status.status(issuerId, serial),
    now: new Date(ctx.clock.now()),
    validitySeconds: ocspValiditySeconds,
  });
}

/**
 * The times a successful answer is valid between: its latest thisUpdate and earliest nextUpdate
 * (every SingleResponse of one answer has the same). Undefined for an unsigned error answer
 * (malformedRequest, unauthorized), which has none.
 */
export function ocspAnswerTimes(responseDer: Uint8Array): { thisUpdate: Date; nextUpdate: Date } | undefined {
  const response = AsnConvert.parse(responseDer, OCSPResponse);
  if (response.responseStatus !== OCSPResponseStatus.successful || response.responseBytes?.responseType !== id_pkix_ocsp_basic) return undefined;
  const { responses } = AsnConvert.parse(response.responseBytes.response.buffer, BasicOCSPResponse).tbsResponseData;
  const thisUpdates = responses.map((r) => r.thisUpdate.getTime());
  const nextUpdates = responses.flatMap((r) => (r.nextUpdate ? [r.nextUpdate.getTime()] : []));
  if (thisUpdates.length === 0 || nextUpdates.length !== responses.length) return undefined;
  return { thisUpdate: new Date(Math.max(...thisUpdates)), nextUpdate: new Date(Math.min(...nextUpdates)) };
}
