import { connect, type Socket } from 'node:net';

/**
 * The load generator's HTTP/1.1 client: keep-alive connections over node:net, each request's
 * bytes written at once, each answer read just far enough to know its status and where it ends.
 *
 * Why not undici: the load generator shares this 2-core machine with the server under test, so
 * whatever it spends per request is taken from the server (and from node-oidc-provider in `peer`,
 * and from PostgreSQL, and from a second worker). undici's Pool cost about 200-300 µs of CPU per
 * request here; this client costs a fraction of that (docs/performance.md, "A lighter load
 * generator"). It speaks only what the scenarios need: POST with a body, answers with
 * `Content-Length` or chunked bodies, one request in flight per connection.
 */

/** One answer: its status and body. */
export interface LeanResponse {
  status: number;
  body: Buffer;
}

/** A request's bytes, made once (`leanRequest`) and written as they are. */
export type LeanRequest = Buffer;

/** The bytes of `POST path` with `body` and `headers` (Host and Content-Length are added). */
export function leanRequest(origin: string, path: string, body: string, headers: Record<string, string>): LeanRequest {
  const url = new URL(origin);
  const payload = Buffer.from(body, 'utf8');
  let head = `POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Length: ${payload.length}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), payload]);
}

const headEnd = Buffer.from('\r\n\r\n');
const chunkedEnd = Buffer.from('\r\n0\r\n\r\n');

/**
 * One keep-alive connection with at most one request in flight. `send` writes a request and
 * calls `done` with its answer, or with an Error when the connection fails or closes first.
 */
class LeanConnection {
  readonly #socket: Socket;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #done: ((result: LeanResponse | Error) => void) | undefined;
  #closed = false;

  /** Resolves once the TCP connection is up (rejects if it fails first). */
  readonly connected: Promise<void>;

  constructor(host: string, port: number) {
    this.#socket = connect({ host, port, noDelay: true });
    this.connected = new Promise((resolve, reject) => {
      this.#socket.once('connect', resolve);
      this.#socket.once('error', reject);
      this.#socket.once('close', () => reject(new Error('the connection closed before it was up')));
    });
    this.connected.catch(() => undefined); // a failure reaches `send`'s caller too
    this.#socket.on('data', (chunk: Buffer) => this.#read(chunk));
    const fail = (error?: Error) => {
      this.#closed = true;
      this.#finish(error ?? new Error('the server closed the connection'));
    };
    this.#socket.on('error', fail);
    this.#socket.on('close', () => fail());
  }

  get idle(): boolean {
    return this.#done === undefined && !this.#closed;
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(request: LeanRequest, done: (result: LeanResponse | Error) => void): void {
    if (this.#closed) return done(new Error('the connection is closed'));
    this.#done = done;
    this.#socket.write(request);
  }

  close(): void {
    this.#closed = true;
    this.#socket.destroy();
  }

  #read(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    const data = this.#pending.length === 1 ? chunk : Buffer.concat(this.#pending, this.#pendingBytes);
    const end = data.indexOf(headEnd);
    if (end < 0) return this.#keep(data);
    const head = data.toString('latin1', 0, end);
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    let total: number;
    let body: Buffer;
    if (length) {
      total = end + 4 + Number(length[1]);
      if (data.length < total) return this.#keep(data);
      body = data.subarray(end + 4, total);
    } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      const last = data.indexOf(chunkedEnd, end + 2);
      if (last < 0) return this.#keep(data);
      total = last + chunkedEnd.length;
      body = unchunk(data.subarray(end + 4, total));
    } else {
      this.#socket.destroy();
      return this.#finish(new Error(`an answer with neither Content-Length nor chunked: ${head.split('\r\n')[0]}`));
    }
    if (data.length > total) {
      this.#socket.destroy();
      return this.#finish(new Error('the server sent more than one answer'));
    }
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#finish({ status, body });
  }

  #keep(data: Buffer): void {
    this.#pending = [data];
    this.#pendingBytes = data.length;
  }

  #finish(result: LeanResponse | Error): void {
    const done = this.#done;
    this.#done = undefined;
    done?.(result);
  }
}

/** The body of a chunked answer (RFC 9112 §7.1), without extensions or trailers. */
function unchunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const line = data.indexOf('\r\n', at);
    const size = parseInt(data.toString('latin1', at, line), 16);
    if (!(size > 0)) return Buffer.concat(parts);
    parts.push(data.subarray(line + 2, line + 2 + size));
    at = line + 2 + size + 2;
  }
}

/**
 * Up to `connections` keep-alive connections to `origin`; requests beyond them wait in order for
 * the next free one. A connection that fails is replaced.
 */
export class LeanPool {
  readonly #host: string;
  readonly #port: number;
  readonly #connections: LeanConnection[] = [];
  readonly #size: number;
  readonly #queue: { request: LeanRequest; done: (result: LeanResponse | Error) => void }[] = [];

  constructor(origin: string, connections: number) {
    const url = new URL(origin);
    if (url.protocol !== 'http:') throw new Error(`the lean client speaks http only, not ${url.protocol}`);
    this.#host = url.hostname;
    this.#port = Number(url.port || 80);
    this.#size = connections;
  }

  /**
   * Opens every connection the pool may use and waits until each is up, as a long-running client
   * has them: a latency measure then does not count TCP handshakes, which the pool would otherwise
   * make at the start and whenever a stall keeps every open connection busy.
   */
  async open(): Promise<void> {
    while (this.#connections.length < this.#size) this.#connections.push(new LeanConnection(this.#host, this.#port));
    await Promise.all(this.#connections.map((connection) => connection.connected));
  }

  /** Sends `request` on a free connection (or once one is free); `done` gets the answer or an Error. */
  send(request: LeanRequest, done: (result: LeanResponse | Error) => void): void {
    const connection = this.#free();
    if (connection) this.#dispatch(connection, request, done);
    else this.#queue.push({ request, done });
  }

  /** `send` as a promise. */
  request(request: LeanRequest): Promise<LeanResponse> {
    return new Promise((resolve, reject) => this.send(request, (result) => (result instanceof Error ? reject(result) : resolve(result))));
  }

  close(): void {
    for (const connection of this.#connections) connection.close();
    this.#connections.length = 0;
  }

  #free(): LeanConnection | undefined {
    for (let i = 0; i < this.#connections.length; i++) {
      const connection = this.#connections[i]!;
      if (connection.closed) this.#connections.splice(i--, 1);
      else if (connection.idle) return connection;
    }
    if (this.#connections.length >= this.#size) return undefined;
    const connection = new LeanConnection(this.#host, this.#port);
    this.#connections.push(connection);
    return connection;
  }

  #dispatch(connection: LeanConnection, request: LeanRequest, done: (result: LeanResponse | Error) => void): void {
    connection.send(request, (result) => {
      done(result);
      const next = this.#queue.shift();
      if (!next) return;
      // A failed connection is closed: the next request goes on a new one.
      const free = connection.idle ? connection : this.#free();
      if (free) this.#dispatch(free, next.request, next.done);
      else this.#queue.unshift(next);
    });
  }
}
