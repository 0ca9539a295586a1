/**
 * A TCP proxy on a loopback port that can stop answering, for fault tests: a database that hangs
 * (a stalled disk, a SIGSTOPped server, a black-holed route) without stopping the real one.
 *
 *   const proxy = await startTcpProxy({ t, host: '127.0.0.1', port: 5432 });
 *   proxy.pause();    // bytes are no longer passed on, in either direction; connects hang too
 *   proxy.resume();   // everything held back flows again
 *   proxy.holdReplies();     // the server's bytes are held back; the client's still flow (and are
 *   proxy.releaseReplies();  // kept in `sent`): what a client writes before it has any answer
 *
 * A connection closed on one side is closed on the other, paused or not, as the kernel of a
 * stalled server would still do: the server's session ends when the client gives up on it.
 */
import { connect, createServer, type Socket } from 'node:net';
import type { TestContext } from 'node:test';

export interface TcpProxy {
  /** The port to connect to instead of the upstream one. */
  port: number;
  pause(): void;
  resume(): void;
  /** Holds back what the server sends until `releaseReplies`; what clients send still passes. */
  holdReplies(): void;
  releaseReplies(): void;
  /** Everything clients have sent through the proxy so far. */
  sent(): Buffer;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

export async function startTcpProxy(options: { host: string; port: number; t?: Pick<TestContext, 'after'> }): Promise<TcpProxy> {
  let paused = false;
  let holding = false;
  const held: (() => void)[] = [];
  const sent: Buffer[] = [];
  let accepted = 0;
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    if (paused) socket.pause();
  };
  const server = createServer((client) => {
    accepted++;
    const upstream = connect({ host: options.host, port: options.port });
    track(client);
    track(upstream);
    // Forward by hand (not pipe) so pause() holds data in the kernel buffers, like a stalled peer.
    client.on('data', (chunk: Buffer) => {
      sent.push(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => (holding ? held.push(() => client.write(chunk)) : client.write(chunk)));
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const proxy: TcpProxy = {
    port: (server.address() as { port: number }).port,
    pause() {
      paused = true;
      for (const socket of sockets) socket.pause();
    },
    resume() {
      paused = false;
      for (const socket of sockets) socket.resume();
    },
    holdReplies() {
      holding = true;
    },
    releaseReplies() {
      holding = false;
      for (const write of held.splice(0)) write();
    },
    sent: () => Buffer.concat(sent),
    get accepted() {
      return accepted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  options.t?.after(() => proxy.close());
  return proxy;
}
