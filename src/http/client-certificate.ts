import { X509Certificate } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config.ts';

/** A client certificate and whether a trusted party validated its chain. */
export interface PresentedCertificate {
  certificate: X509Certificate;
  /** True when the TLS layer (our listener with a client CA, or the trusted proxy) validated the chain. */
  chainVerified: boolean;
  /**
   * From our own TLS listener: the other certificates of the peer's chain (what it sent, completed
   * from the listener's CA bundle), read on demand. A trust anchor's path is built from them and
   * verified link by link (src/certificates/path.ts): how Node linked them is not believed.
   */
  chain?: () => X509Certificate[];
}

/**
 * Finds the client certificate of a request: from our own TLS connection, or from the configured
 * header when, and only when, the request comes from a trusted proxy (RFC 8705 §2, RFC 9440).
 */
export function makeCertificateReader(config: Config): (request: FastifyRequest) => PresentedCertificate | undefined {
  const proxies = trustedProxyList(config.trustedProxies);
  return (request) => {
    const socket = request.raw.socket as Partial<TLSSocket>;
    if (typeof socket.getPeerCertificate === 'function') {
      const peer = socket.getPeerCertificate();
      if (peer && peer.raw) return { certificate: new X509Certificate(peer.raw), chainVerified: socket.authorized === true, chain: () => peerChain(socket as TLSSocket) };
      return undefined;
    }
    if (!config.clientCertHeader) return undefined;
    const remote = request.raw.socket.remoteAddress ?? '';
    // A certificate header from anyone but a configured proxy is forged by definition: ignore it.
    if (!isTrusted(proxies, remote)) return undefined;
    const header = request.headers[config.clientCertHeader];
    if (typeof header !== 'string' || header === '') return undefined;
    const certificate = parseCertificateHeader(header);
    return certificate && { certificate, chainVerified: true };
  };
}

/** Longest peer chain read; more than any real one. */
const maxChain = 10;

/** The certificates above the peer's own, following Node's issuerCertificate links (a self-signed one links to itself). */
function peerChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let current = socket.getPeerCertificate(true);
  while (chain.length < maxChain) {
    const issuer = current.issuerCertificate;
    if (!issuer?.raw || issuer === current || issuer.raw.equals(current.raw)) break;
    try {
      chain.push(new X509Certificate(issuer.raw));
    } catch {
      break;
    }
    current = issuer;
  }
  return chain;
}

/** RFC 9440 §2.2 (`:base64-DER:`) or a URL-encoded PEM (nginx's $ssl_client_escaped_cert). */
export function parseCertificateHeader(value: string): X509Certificate | undefined {
  try {
    const trimmed = value.trim();
    if (trimmed.startsWith(':') && trimmed.endsWith(':')) {
      return new X509Certificate(Buffer.from(trimmed.slice(1, -1), 'base64'));
    }
    return new X509Certificate(decodeURIComponent(trimmed));
  } catch {
    return undefined;
  }
}

function trustedProxyList(entries: string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, prefix] = entry.split('/');
    const family = isIP(address ?? '') === 6 ? 'ipv6' : 'ipv4';
    if (prefix) list.addSubnet(address!, Number(prefix), family);
    else list.addAddress(address!, family);
  }
  return list;
}

function isTrusted(list: BlockList, address: string): boolean {
  const mapped = address.startsWith('::ffff:') ? address.slice(7) : address;
  const family = isIP(mapped) === 6 ? 'ipv6' : 'ipv4';
  return isIP(mapped) !== 0 && list.check(mapped, family);
}
