/**
 * The Content-Security-Policy of the production build (the dev server has none: Vite's HMR client
 * and React refresh need inline script).
 *
 * - No inline script and no eval: scripts only from the site itself; `'wasm-unsafe-eval'` lets
 *   onnxruntime-web and hash-wasm compile WebAssembly (it allows nothing else).
 * - `connect-src`: the site itself and the hosts models may be downloaded from — Hugging Face (its
 *   `resolve/` URLs redirect to `*.hf.co` / `*.huggingface.co` CDNs) by default, plus the hosts
 *   named at build time in `HARK_MODEL_HOSTS` (space- or comma-separated origins, e.g.
 *   `HARK_MODEL_HOSTS="https://models.example.com" npm run build`). A model address on any other
 *   host is refused by the app before it fetches anything, with a message saying so (see
 *   `modelHostAllowed`).
 * - Delivered three ways: a `<meta http-equiv>` written into `index.html` at build time (any static
 *   host), the same policy as an HTTP header from `vite preview` (meta policies do not reach
 *   workers, and `frame-ancestors` works only as a header), and added by the service worker to
 *   everything it serves, so after the first visit the engine worker runs under it on any host.
 *
 * Used by vite.config.ts (Node), src/sw.ts and the model store (browser): no imports.
 */

/** Where models may come from by default: Hugging Face and the CDNs its `resolve/` URLs redirect to. */
export const DEFAULT_MODEL_HOSTS = ['https://huggingface.co', 'https://*.huggingface.co', 'https://*.hf.co'];

/** `HARK_MODEL_HOSTS` → origins (`https://host[:port]`, `https://*.host`); throws on anything else. */
export function parseModelHosts(value: string | undefined): string[] {
  const hosts = (value ?? '').split(/[\s,]+/).filter((h) => h !== '');
  for (const host of hosts) {
    if (!/^https?:\/\/(\*\.)?[a-z0-9.-]+(:\d+)?$/i.test(host)) {
      throw new Error(`HARK_MODEL_HOSTS: "${host}" is not an origin such as https://models.example.com or https://*.example.com (no path, no trailing slash).`);
    }
  }
  return hosts;
}

/** The directives, in order. `header`: also those that only work as an HTTP header. */
export function contentSecurityPolicy(modelHosts: readonly string[], options: { header?: boolean } = {}): string {
  const directives: [string, string][] = [
    ['default-src', "'self'"],
    ['script-src', "'self' 'wasm-unsafe-eval'"],
    ['worker-src', "'self'"],
    ['connect-src', ["'self'", ...modelHosts].join(' ')],
    ['img-src', "'self' data: blob:"],
    ['media-src', "'self' blob:"],
    ['style-src', "'self'"],
    ['font-src', "'self'"],
    ['manifest-src', "'self'"],
    ['object-src', "'none'"],
    ['base-uri', "'self'"],
    ['form-action', "'none'"],
  ];
  if (options.header) directives.push(['frame-ancestors', "'none'"]);
  return directives.map(([name, value]) => `${name} ${value}`).join('; ');
}

/** Set by the production build (vite.config.ts): the model hosts of its `connect-src`. */
declare const __HARK_MODEL_HOSTS__: string[] | undefined;

/** The model hosts the build's policy allows, or null where no policy applies (dev server, tests). */
export function policyModelHosts(): string[] | null {
  return typeof __HARK_MODEL_HOSTS__ === 'undefined' ? null : __HARK_MODEL_HOSTS__;
}

/** Whether `url`'s origin matches one of the policy's sources ('self' = `selfOrigin`). */
export function hostAllowed(url: string, selfOrigin: string, hosts: readonly string[]): boolean {
  let target: URL;
  try {
    target = new URL(url, selfOrigin);
  } catch {
    return false;
  }
  if (target.origin === new URL(selfOrigin).origin) return true;
  return hosts.some((host) => {
    const match = /^(https?):\/\/(\*\.)?([^:/]+)(?::(\d+))?$/i.exec(host);
    if (!match) return false;
    const [, scheme, wildcard, name, port] = match;
    if (target.protocol !== `${scheme!.toLowerCase()}:`) return false;
    if ((target.port || '') !== (port ?? '')) return false;
    const hostname = target.hostname.toLowerCase();
    const base = name!.toLowerCase();
    return wildcard ? hostname.endsWith(`.${base}`) : hostname === base;
  });
}

/** The origin(s) a model source string downloads from (Hugging Face repos: huggingface.co). */
export function sourceOrigin(source: string, selfOrigin: string): string {
  const text = source.trim();
  if (/^https?:\/\//i.test(text) || /^\.{0,2}\//.test(text)) {
    try {
      return new URL(text, selfOrigin).origin;
    } catch {
      return selfOrigin;
    }
  }
  return 'https://huggingface.co';
}

/**
 * Null when the build's policy lets the app download `source`; else a message saying what to do.
 * (Where no policy applies, everything is allowed.)
 */
export function modelHostRefusal(source: string, selfOrigin: string, hosts: readonly string[] | null = policyModelHosts()): string | null {
  if (hosts === null) return null;
  const origin = sourceOrigin(source, selfOrigin);
  if (hostAllowed(origin + '/', selfOrigin, hosts)) return null;
  const allowed = ['this site', ...hosts.map((h) => h.replace(/^https?:\/\//, ''))].join(', ');
  return (
    `This copy of Hark may only download models from ${allowed} (its security policy), so it cannot load ${source}. ` +
    `Download that model's folder and add it with “Open a model folder…”, or ask whoever runs this site to add ${origin} ` +
    `(HARK_MODEL_HOSTS when building it).`
  );
}
