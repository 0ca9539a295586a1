import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../../config.ts';
import { parseCertificateHeader } from '../../http/client-certificate.ts';

/**
 * The certificate a person's browser presented, as the sign-in sees it: `request.clientCertificate`
 * (src/http/client-certificate.ts) — from Clearance's own TLS listener, or from the
 * `CLEARANCE_CLIENT_CERT_HEADER` header only when the request came from one of
 * `CLEARANCE_TRUSTED_PROXIES`. That reader ignores the header from anyone else; for a sign-in an
 * ignored header is no mere absence but a forgery attempt (or a proxy left out of the list), so it
 * is told apart here: a header holding a certificate that the reader did not believe is
 * `forged_header` — from an address that is not a configured proxy, or on a TLS connection to
 * Clearance itself, where no proxy stands between.
 */
export type Presented = { kind: 'none' } | { kind: 'forged_header' } | { kind: 'certificate'; certificate: X509Certificate; via: 'tls' | 'proxy' };

export function presentedCertificate(config: Pick<Config, 'clientCertHeader'>, request: FastifyRequest): Presented {
  const header = config.clientCertHeader ? request.headers[config.clientCertHeader] : undefined;
  const sent = typeof header === 'string' && header !== '' ? header : Array.isArray(header) ? header.join(',') : undefined;
  const believed = request.clientCertificate?.certificate;
  const overTls = typeof (request.raw.socket as Partial<TLSSocket>).getPeerCertificate === 'function';
  if (overTls) {
    if (sent !== undefined) return { kind: 'forged_header' };
    return believed ? { kind: 'certificate', certificate: believed, via: 'tls' } : { kind: 'none' };
  }
  if (believed) return { kind: 'certificate', certificate: believed, via: 'proxy' };
  // Not believed: a header that holds a certificate came from an address that is no configured proxy.
  if (sent !== undefined && parseCertificateHeader(sent) !== undefined) return { kind: 'forged_header' };
  return { kind: 'none' };
}
