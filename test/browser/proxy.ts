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

/** One response the slow proxy sent: which file, its Range header, and how many bytes went out. */
export interface Sent {
  path: string;
  range: string | null;
  status: number;
  bytes: number;
  done: boolean;
}

const SLICE = 8 * 1024;

/**
 * Forwards to `target`; files under `under` (except the manifest) trickle out at `bytesPerSecond`
 * per response: real bytes from the real server over a slow link, so a download can be paused
 * half-way. Logs each such response.
 */
export async function startSlowProxy(target: string, options: { under: string; bytesPerSecond: number }): Promise<{ url: string; log: Sent[]; close(): Promise<void> }> {
  const log: Sent[] = [];
  const proxy = await startProxy(target, (req, answer, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const slow = req.method === 'GET' && path.startsWith(options.under) && !path.endsWith('/manifest.json');
    if (!slow) return passThrough(req, answer, res);
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    const entry: Sent = { path: path.slice(options.under.length), range: (req.headers.range as string | undefined) ?? null, status: answer.statusCode ?? 0, bytes: 0, done: false };
    log.push(entry);
    res.on('close', () => {
      entry.done = true;
      answer.destroy();
    });
    void (async () => {
      try {
        for await (const chunk of answer as AsyncIterable<Buffer>) {
          for (let i = 0; i < chunk.length; i += SLICE) {
            if (res.destroyed) return;
            const part = chunk.subarray(i, i + SLICE);
            res.write(part);
            entry.bytes += part.length;
            await new Promise((resolve) => setTimeout(resolve, (part.length / options.bytesPerSecond) * 1000));
          }
        }
        res.end();
      } catch {
        res.destroy();
      }
    })();
  });
  return { ...proxy, log };
}
