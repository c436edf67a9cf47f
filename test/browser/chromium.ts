/**
 * Launches Debian's Chromium through playwright-core (`npx playwright install` cannot download
 * browsers here). `--enable-unsafe-webgpu` turns on real WebGPU (SwiftShader, fp32 only, on a
 * machine without a GPU); the other flags keep Chromium from calling home, which this machine's
 * closed network would refuse and which our no-network assertions would otherwise see.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Request } from 'playwright-core';

export const CHROMIUM_PATH = process.env.HARK_CHROMIUM ?? '/usr/bin/chromium';

export const QUIET_FLAGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-domain-reliability',
  '--no-first-run',
  '--no-default-browser-check',
];

export interface LaunchOptions {
  webgpu?: boolean;
  args?: string[];
}

export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}. Install it with 'apt-get install -y chromium' ` +
        `(or set HARK_CHROMIUM to a Chromium/Chrome binary).`,
    );
  }
  const args = [...QUIET_FLAGS, ...(options.webgpu === false ? [] : ['--enable-unsafe-webgpu']), ...(options.args ?? [])];
  // playwright's launch() uses a fresh temporary profile (user-data-dir) for every browser.
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args });
}

export function isLocalUrl(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  if (protocol === 'data:' || protocol === 'blob:' || protocol === 'about:') return true;
  return hostname === 'localhost' || hostname === '[::1]' || hostname.startsWith('127.');
}

/** Records every request the context makes (pages, workers, service workers). */
export function recordRequests(context: BrowserContext): { urls: string[]; nonLocal(): string[] } {
  const urls: string[] = [];
  context.on('request', (request: Request) => urls.push(request.url()));
  return { urls, nonLocal: () => urls.filter((url) => !isLocalUrl(url)) };
}

/**
 * Console errors, failed responses (with their URL) and uncaught page errors. (ORT's
 * "VerifyEachNodeIsAssignedToAnEp" warning, once allowed here, is silenced by its log level in
 * src/engine/ortRuntime.ts and now counts.) Chromium's own console line for an HTTP error
 * carries no URL, so those are taken from the response event instead.
 */
export function collectConsoleErrors(context: BrowserContext): string[] {
  const errors: string[] = [];
  context.on('console', (message) => {
    const text = message.text();
    if (message.type() !== 'error') return;
    if (text.startsWith('Failed to load resource: the server responded with a status')) return;
    errors.push(text);
  });
  context.on('response', (response) => {
    if (response.status() >= 400) errors.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  context.on('weberror', (error) => errors.push(String(error.error())));
  return errors;
}

/**
 * Starts the app with a backend chosen in Settings, as a user who picked it would have: written
 * to the settings' localStorage entry before the app's scripts run, unless settings are already
 * stored (so a reload keeps whatever the page itself saved). Browser tests meant to exercise
 * WebGPU name it this way, since Automatic picks WebAssembly over a software adapter.
 */
export async function chooseBackendInSettings(context: BrowserContext, backend: 'auto' | 'webgpu' | 'wasm'): Promise<void> {
  await context.addInitScript((chosen) => {
    // Also runs in about:blank and other opaque documents, where localStorage throws.
    if (location.protocol !== 'http:' && location.protocol !== 'https:') return;
    if (localStorage.getItem('hark-settings') === null) {
      localStorage.setItem('hark-settings', JSON.stringify({ state: { backend: chosen }, version: 1 }));
    }
  }, backend);
}
