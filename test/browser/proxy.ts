/** A local HTTP proxy in front of a test server, for shaping what the browser receives. */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Answers one request from the upstream response (default: headers and body as they are). */
export type Relay = (req: IncomingMessage, upstream: IncomingMessage, res: ServerResponse) => void;

export const passThrough: Relay = (_req, upstream, res) => {
  res.writeHead(upstream.statusCode ?? 502, upstream.headers);
  upstream.pipe(res);
};

export async function startProxy(target: string, relay: Relay = passThrough): Promise<{ url: string; close(): Promise<void> }> {
  const upstream = new URL(target);
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const forward = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
      (answer) => relay(req, answer, res),
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
