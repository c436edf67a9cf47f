/** A local HTTP proxy in front of a test server, for shaping what the browser receives. */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Answers one request from the upstream response (default: headers and body as they are). */
export type Relay = (req: IncomingMessage, upstream: IncomingMessage, res: ServerResponse) => void;

export const passThrough: Relay = (_req, upstream, res) => {
  res.writeHead(upstream.statusCode ?? 502, upstream.headers);
  upstream.pipe(res);
};

export interface ProxyOptions {
  /** The path asked of the upstream server for a request (default: the same). */
  rewrite?: (url: string) => string;
  /** The request headers sent upstream (default: the browser's). */
  headers?: (req: IncomingMessage) => IncomingMessage['headers'];
}

export async function startProxy(target: string, relay: Relay = passThrough, options: ProxyOptions = {}): Promise<{ url: string; close(): Promise<void> }> {
  const upstream = new URL(target);
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = options.rewrite ? options.rewrite(req.url ?? '/') : req.url;
    const headers = options.headers ? options.headers(req) : req.headers;
    const forward = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path, headers: { ...headers, host: upstream.host } },
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

/** What a faulty proxy does to one file (matched by the path the browser asked for). */
export type Fault =
  /** Sends the headers (full Content-Length) and this many bytes, then (1.5 s later) cuts the connection. */
  | { cutAfter: number }
  /** Flips one byte in the middle: right length, wrong SHA-256. */
  | { flip: true }
  /** Sends this many bytes fewer, as a complete response (Content-Length to match). */
  | { shortBy: number };

/** One request through the faulty proxy. */
export interface Logged {
  method: string;
  /** As the browser asked for it (before any rewrite). */
  path: string;
  /** The browser's Range header (also when the proxy dropped it). */
  range: string | null;
  status: number;
  /** Body bytes sent to the browser. */
  bytes: number;
  fault?: string;
}

/**
 * A proxy in front of `target` that logs every request and plays network faults on demand:
 * `faults` (path → fault, used once), `ignoreRange` (path prefixes whose Range headers are dropped
 * on the way, as by a server without range support) and `mirrors` (`/m1/` → `/models/`: the same
 * bundle under other addresses, so each is a new download with its own store key).
 */
export async function startFaultyProxy(
  target: string,
  options: { mirrors?: string[] } = {},
): Promise<{ url: string; log: Logged[]; faults: Map<string, Fault>; ignoreRange: Set<string>; close(): Promise<void> }> {
  const log: Logged[] = [];
  const faults = new Map<string, Fault>();
  const ignoreRange = new Set<string>();
  const mirrors = options.mirrors ?? [];
  const pathOf = (url: string | undefined): string => (url ?? '/').split('?')[0]!;
  const rangeDropped = (path: string): boolean => [...ignoreRange].some((prefix) => path.startsWith(prefix));
  const proxy = await startProxy(
    target,
    (req, upstream, res) => {
      const path = pathOf(req.url);
      const entry: Logged = { method: req.method ?? '', path, range: (req.headers.range as string | undefined) ?? null, status: upstream.statusCode ?? 0, bytes: 0 };
      log.push(entry);
      const fault = faults.get(path);
      if (!fault || req.method !== 'GET') {
        upstream.on('data', (chunk: Buffer) => (entry.bytes += chunk.length));
        return passThrough(req, upstream, res);
      }
      faults.delete(path);
      entry.fault = JSON.stringify(fault);
      const chunks: Buffer[] = [];
      upstream.on('data', (chunk: Buffer) => chunks.push(chunk));
      upstream.on('end', () => {
        let body = Buffer.concat(chunks);
        const headers = { ...upstream.headers };
        if ('flip' in fault) {
          body = Buffer.from(body);
          body[body.length >> 1] = body[body.length >> 1]! ^ 0xff;
        } else if ('shortBy' in fault) {
          body = body.subarray(0, Math.max(0, body.length - fault.shortBy));
          headers['content-length'] = String(body.length);
          delete headers['content-range'];
        }
        res.writeHead(upstream.statusCode ?? 502, headers);
        if ('cutAfter' in fault) {
          const part = body.subarray(0, fault.cutAfter);
          entry.bytes = part.length;
          // Let the bytes reach the browser and its reader (a stream that errors drops what is
          // still queued), then drop the connection mid-body: a link that stalls, then breaks.
          res.write(part, () => setTimeout(() => res.socket?.destroy(), 1500));
          return;
        }
        entry.bytes = body.length;
        res.end(body);
      });
    },
    {
      rewrite: (url) => {
        const mirror = mirrors.find((m) => url.startsWith(m));
        return mirror ? `/models/${url.slice(mirror.length)}` : url;
      },
      // Uncompressed, as model files are served: byte counts and faults then apply to the file itself.
      headers: (req) => {
        const { range, 'accept-encoding': _encoding, ...rest } = req.headers;
        return rangeDropped(pathOf(req.url)) || range === undefined ? rest : { ...rest, range };
      },
    },
  );
  return { ...proxy, log, faults, ignoreRange };
}
