import { BlockList, isIP } from 'node:net';

/**
 * Where an IP address leads, for the SSRF rules of remote fetches (docs/federation.md):
 * - `public`: a global unicast address; always allowed.
 * - `private`: this machine, its networks or special-purpose ranges (loopback, RFC 1918, link-local,
 *   CGNAT, unique local, documentation, ...); allowed only when the partner's profile sets
 *   `allow_private_network: true`.
 * - `never`: no useful or a dangerous destination whatever the profile says (unspecified, multicast,
 *   broadcast, reserved, the cloud metadata services).
 */
export type AddressCategory = 'public' | 'private' | 'never';

export interface AddressClass {
  category: AddressCategory;
  /** What the range is, for error messages: `loopback`, `private network (RFC 1918)`, ... */
  label: string;
}

interface Range {
  network: string;
  prefix: number;
  category: Exclude<AddressCategory, 'public'>;
  label: string;
}

/** IPv4 special-purpose ranges (RFC 6890 and the IANA registry); the first match wins. */
const ipv4Ranges: Range[] = [
  { network: '169.254.169.254', prefix: 32, category: 'never', label: 'cloud metadata service' },
  { network: '255.255.255.255', prefix: 32, category: 'never', label: 'broadcast' },
  { network: '0.0.0.0', prefix: 8, category: 'never', label: 'unspecified ("this network")' },
  { network: '224.0.0.0', prefix: 4, category: 'never', label: 'multicast' },
  { network: '240.0.0.0', prefix: 4, category: 'never', label: 'reserved' },
  { network: '127.0.0.0', prefix: 8, category: 'private', label: 'loopback' },
  { network: '10.0.0.0', prefix: 8, category: 'private', label: 'private network (RFC 1918)' },
  { network: '172.16.0.0', prefix: 12, category: 'private', label: 'private network (RFC 1918)' },
  { network: '192.168.0.0', prefix: 16, category: 'private', label: 'private network (RFC 1918)' },
  { network: '169.254.0.0', prefix: 16, category: 'private', label: 'link-local' },
  { network: '100.64.0.0', prefix: 10, category: 'private', label: 'shared address space (CGNAT, RFC 6598)' },
  { network: '192.0.0.0', prefix: 24, category: 'private', label: 'IETF protocol assignments' },
  { network: '192.0.2.0', prefix: 24, category: 'private', label: 'documentation' },
  { network: '198.51.100.0', prefix: 24, category: 'private', label: 'documentation' },
  { network: '203.0.113.0', prefix: 24, category: 'private', label: 'documentation' },
  { network: '198.18.0.0', prefix: 15, category: 'private', label: 'benchmarking' },
  { network: '192.88.99.0', prefix: 24, category: 'private', label: '6to4 relay anycast' },
];

/**
 * IPv6 special-purpose ranges; the first match wins. The forms that embed an IPv4 address
 * (IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are classified by the IPv4
 * address they carry, before this table (`classifyAddress`).
 */
const ipv6Ranges: Range[] = [
  { network: 'fd00:ec2::254', prefix: 128, category: 'never', label: 'cloud metadata service' },
  { network: '::', prefix: 128, category: 'never', label: 'unspecified' },
  { network: '::1', prefix: 128, category: 'private', label: 'loopback' },
  { network: 'ff00::', prefix: 8, category: 'never', label: 'multicast' },
  { network: '::', prefix: 96, category: 'private', label: 'IPv4-compatible IPv6 (deprecated)' },
  { network: '64:ff9b:1::', prefix: 48, category: 'private', label: 'local-use NAT64' },
  { network: '100::', prefix: 64, category: 'private', label: 'discard-only' },
  { network: '2001:db8::', prefix: 32, category: 'private', label: 'documentation' },
  { network: '2001::', prefix: 32, category: 'private', label: 'Teredo tunnel' },
  { network: '2001::', prefix: 23, category: 'private', label: 'IETF protocol assignments' },
  { network: 'fc00::', prefix: 7, category: 'private', label: 'unique local (private network)' },
  { network: 'fe80::', prefix: 10, category: 'private', label: 'link-local' },
  { network: 'fec0::', prefix: 10, category: 'private', label: 'site-local (deprecated)' },
];

/** One BlockList per range, so the first match tells which range (a BlockList only says yes or no). */
const v4 = ipv4Ranges.map((range) => ({ range, list: blockList(range, 'ipv4') }));
const v6 = ipv6Ranges.map((range) => ({ range, list: blockList(range, 'ipv6') }));
const globalUnicast = blockList({ network: '2000::', prefix: 3, category: 'private', label: '' }, 'ipv6');

function blockList(range: Range, family: 'ipv4' | 'ipv6'): BlockList {
  const list = new BlockList();
  list.addSubnet(range.network, range.prefix, family);
  return list;
}

/**
 * Classifies an IP address (v4 or v6, with or without an IPv6 zone). Anything that is not an IP
 * address is `never`. IPv4 addresses carried in IPv6 forms are classified as the IPv4 address
 * they reach, so `::ffff:127.0.0.1` or `::ffff:7f00:1` is loopback, not public.
 */
export function classifyAddress(address: string): AddressClass {
  const plain = address.replace(/%.*$/, '');
  const family = isIP(plain);
  if (family === 4) return classify4(plain);
  if (family !== 6) return { category: 'never', label: 'not an IP address' };
  const bytes = ipv6Bytes(plain);
  if (!bytes) return { category: 'never', label: 'not an IP address' };
  const embedded = embeddedIpv4(bytes);
  if (embedded) {
    const inner = classify4(embedded.address);
    return inner.category === 'public' ? inner : { category: inner.category, label: `${inner.label} (${embedded.form})` };
  }
  for (const { range, list } of v6) if (list.check(plain, 'ipv6')) return { category: range.category, label: range.label };
  if (!globalUnicast.check(plain, 'ipv6')) return { category: 'never', label: 'outside global unicast (2000::/3)' };
  return { category: 'public', label: 'public' };
}

function classify4(address: string): AddressClass {
  for (const { range, list } of v4) if (list.check(address, 'ipv4')) return { category: range.category, label: range.label };
  return { category: 'public', label: 'public' };
}

/** The IPv4 address an IPv6 address carries: IPv4-mapped (RFC 4291 §2.5.5.2), NAT64 (RFC 6052), 6to4 (RFC 3056). */
function embeddedIpv4(bytes: Uint8Array): { address: string; form: string } | undefined {
  const dotted = (at: number) => [...bytes.subarray(at, at + 4)].join('.');
  const zeros = (from: number, to: number) => bytes.subarray(from, to).every((b) => b === 0);
  if (zeros(0, 10) && bytes[10] === 0xff && bytes[11] === 0xff) return { address: dotted(12), form: 'IPv4-mapped IPv6' };
  if (bytes[0] === 0x00 && bytes[1] === 0x64 && bytes[2] === 0xff && bytes[3] === 0x9b && zeros(4, 12)) {
    return { address: dotted(12), form: 'NAT64' };
  }
  if (bytes[0] === 0x20 && bytes[1] === 0x02) return { address: dotted(2), form: '6to4' };
  return undefined;
}

/** The 16 bytes of a textual IPv6 address (RFC 4291 §2.2), including a trailing dotted IPv4 part. */
export function ipv6Bytes(text: string): Uint8Array | undefined {
  let head = text;
  const tail: number[] = [];
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const octets = v4.slice(1).map(Number);
    if (octets.some((o) => o > 255)) return undefined;
    tail.push((octets[0]! << 8) | octets[1]!, (octets[2]! << 8) | octets[3]!);
    head = text.slice(0, v4.index);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16)));
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const left = parse(halves[0]!);
  const right = [...(halves.length === 2 ? parse(halves[1]!) : []), ...tail];
  const fill = 8 - left.length - right.length;
  if (halves.length === 1 ? fill !== 0 : fill < 0) return undefined;
  const groups = [...left, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...right];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}
