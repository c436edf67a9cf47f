/**
 * Faults (issue 13): what the platform can do to Hark mid-work, each tried through the real app in
 * Chromium and ended with a specific message and a working app.
 *
 * - The engine's worker dies (closed from inside, as a crash or an out-of-memory kill would end
 *   it) or throws an error nothing catches: the UI notices, starts a new worker, loads the model
 *   again from this device's cache (no model file is fetched), keeps the conversation and the
 *   recording, re-reads the conversation and answers the next question as a follow-up.
 * - The WebGPU device is lost mid-answer (destroyed from inside the worker, as a driver reset would
 *   end it): the answer stops with a message saying so, the engine comes back on WebGPU and answers.
 * - A graph-captured decode step's replay differs from an ordinary run (the token id written for it
 *   is changed on its way to the GPU): the engine's check catches it, the answer is unchanged and
 *   the device report says answer tokens now run as ordinary runs, and why.
 * - Cancel everywhere (WebGPU, GPU buffers counted with a wrapper on createBuffer/destroy inside
 *   the worker): Stop while a long recording is listened to, Stop while the model reads a long
 *   prompt, a new recording while an answer streams, a model download paused; never a stuck busy
 *   state, and no GPU buffers left behind by any of it.
 *
 * Nothing is mocked: the faults are injected into the real worker with Playwright's worker handles.
 */
import type { Browser, BrowserContext, Page, Worker as PwWorker } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium } from './chromium';
import { startSlowProxy } from './proxy';

const DESKTOP = { width: 1280, height: 900 };

interface OpenedApp {
  context: BrowserContext;
  page: Page;
  errors: string[];
}

/**
 * The app on `backend`. WebGPU runs the fp32 variant (int4 decoder steps take seconds on the
 * software adapter here): the app starts with its download paused, as a person who had chosen it
 * would have left it, and the test resumes it.
 */
async function openApp(browser: Browser, backend: 'wasm' | 'webgpu', url = inject('devUrl')): Promise<OpenedApp> {
  const context = await browser.newContext({ viewport: DESKTOP });
  const errors = collectConsoleErrors(context);
  if (backend === 'webgpu') {
    await context.addInitScript(() => {
      if (location.protocol !== 'http:' || localStorage.getItem('hark-settings') !== null) return;
      const paused = { source: '/models/salmonn-tiny/', label: '/models/salmonn-tiny/', backend: 'webgpu', variant: 'fp32', loaded: 0, total: 0, percent: 0 };
      localStorage.setItem('hark-settings', JSON.stringify({ state: { backend: 'webgpu', pausedDownload: paused }, version: 1 }));
    });
  }
  await chooseBackendInSettings(context, backend);
  const page = await context.newPage();
  // Every engine worker gets the GPU buffer counter (and a handle on its GPUDevice) as it starts.
  page.on('worker', (worker) => {
    if (worker.url().includes('engine.worker')) void worker.evaluate(installGpuCounters).catch(() => {});
  });
  await page.goto(url);
  await page.getByTestId('model-status').waitFor({ timeout: 60_000 });
  return { context, page, errors };
}

/**
 * Runs inside the engine worker: counts the GPU buffers onnxruntime creates and destroys (a
 * wrapper on GPUDevice.prototype.createBuffer and GPUBuffer.prototype.destroy) and keeps the
 * GPUDevice it uses, so a test can destroy it.
 */
function installGpuCounters(): void {
  const scope = self as unknown as { harkGpu?: { live: Set<GPUBuffer>; created: number; destroyed: number; device: GPUDevice | null } };
  if (scope.harkGpu || typeof GPUDevice === 'undefined') return;
  const gpu = { live: new Set<GPUBuffer>(), created: 0, destroyed: 0, device: null as GPUDevice | null };
  scope.harkGpu = gpu;
  const create = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor) {
    const buffer = create.call(this, descriptor);
    gpu.device = this;
    gpu.live.add(buffer);
    gpu.created += 1;
    return buffer;
  };
  const destroy = GPUBuffer.prototype.destroy;
  GPUBuffer.prototype.destroy = function (this: GPUBuffer) {
    if (gpu.live.delete(this)) gpu.destroyed += 1;
    return destroy.call(this);
  };
}

/** GPU buffers the worker's onnxruntime created and has not destroyed. */
async function liveBuffers(worker: PwWorker): Promise<{ live: number; created: number; destroyed: number }> {
  return worker.evaluate(() => {
    const gpu = (self as unknown as { harkGpu: { live: Set<unknown>; created: number; destroyed: number } }).harkGpu;
    return { live: gpu.live.size, created: gpu.created, destroyed: gpu.destroyed };
  });
}

/** A mono 8-bit 4 kHz WAV of a slowly swelling tone: long recordings in few bytes. */
function toneWav(seconds: number, rate = 4000): Buffer {
  const n = Math.round(seconds * rate);
  const wav = Buffer.alloc(44 + n);
  wav.write('RIFF', 0);
  wav.writeUInt32LE(36 + n, 4);
  wav.write('WAVE', 8);
  wav.write('fmt ', 12);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20);
  wav.writeUInt16LE(1, 22);
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate, 28);
  wav.writeUInt16LE(1, 32);
  wav.writeUInt16LE(8, 34);
  wav.write('data', 36);
  wav.writeUInt32LE(n, 40);
  for (let i = 0; i < n; i++) wav[44 + i] = 128 + Math.round(60 * Math.sin(i / 9) * Math.abs(Math.sin(i / (rate * 20))));
  return wav;
}

const since = (t: number) => `${((performance.now() - t) / 1000).toFixed(1)} s`;

async function waitForState(page: Page, testId: string, states: string[], timeout = 120_000): Promise<string> {
  const handle = await page.waitForFunction(
    ([id, wanted]) => {
      const state = document.querySelector(`[data-testid="${id}"]`)?.getAttribute('data-state') ?? '';
      return (wanted as string[]).includes(state) ? state : false;
    },
    [testId, states] as const,
    { timeout, polling: 100 },
  );
  return (await handle.jsonValue()) as string;
}

async function setMaxNewTokens(page: Page, value: number): Promise<void> {
  const input = page.getByTestId('setting-max-new-tokens');
  await input.fill(String(value));
  await input.blur();
}

/** Asks from inside the page (the main thread may be too busy for Playwright's own fill/press). */
async function ask(page: Page, question: string): Promise<void> {
  await page.evaluate((value) => {
    const box = document.querySelector<HTMLTextAreaElement>('#question')!;
    Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value')!.set!.call(box, value);
    box.dispatchEvent(new Event('input', { bubbles: true }));
    box.focus();
    box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
  }, question);
}

async function clickInPage(page: Page, testId: string): Promise<void> {
  await page.evaluate((id) => document.querySelector<HTMLButtonElement>(`[data-testid="${id}"]`)!.click(), testId);
}

/** The app's engine worker (the newest one: a restart replaces it). */
async function engineWorker(page: Page, not?: PwWorker): Promise<PwWorker> {
  const find = () => page.workers().filter((w) => w.url().includes('engine.worker') && w !== not);
  await expect.poll(() => find().length, { timeout: 60_000 }).toBeGreaterThan(0);
  return find().at(-1)!;
}

/** The app's error banner: its scope and text. */
async function banner(page: Page): Promise<{ scope: string | null; text: string }> {
  const alert = page.getByTestId('error-message');
  await alert.waitFor({ timeout: 30_000 });
  return { scope: await alert.getAttribute('data-scope'), text: (await alert.textContent()) ?? '' };
}

/**
 * After a restart: the model loaded again in the new worker (its note is cleared while it loads,
 * then says why it was loaded again) and the recording heard again.
 */
async function recovered(page: Page, expected: RegExp, recording = true): Promise<void> {
  await expect.poll(async () => ((await page.getByTestId('model-note').count()) > 0 ? page.getByTestId('model-note').textContent() : ''), { timeout: 120_000 }).toMatch(expected);
  expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
  if (recording) expect(await waitForState(page, 'audio-status', ['ready', 'error', 'stopped'])).toBe('ready');
}

describe('faults: the engine worker dies, the GPU is lost', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('a worker that dies mid-answer, or throws, is replaced: the model comes back from this device, the conversation is re-read and the next question answered', { timeout: 240_000 }, async () => {
    const started = performance.now();
    const { context, page, errors } = await openApp(browser, 'wasm');
    try {
      // The worker dies while the model loads: the load is made again in a new worker.
      const loading = await engineWorker(page);
      expect(await waitForState(page, 'model-status', ['loading', 'ready', 'error'], 60_000)).toBe('loading');
      // Close it once the load reports progress: the worker is then running (its life lock, asked
      // for before the load, was answered). A worker closed before it ever answered is not seen to
      // die (no event reaches the page), which made this test flaky under load; see the note in
      // src/engineClient.ts's lifeLock.
      await expect
        .poll(async () => ((await page.getByTestId('model-progress').count()) > 0 ? page.getByTestId('model-progress').getAttribute('aria-valuetext') : 'gone'), { timeout: 60_000 })
        .not.toBe('Starting');
      await loading.evaluate(() => self.close());
      await recovered(page, /^Restarted after the engine stopped unexpectedly: the model was loaded again from this device on WebAssembly\.$/, false);
      console.log(`[faults] crash: model loaded again after a crash mid-load, ${since(started)}`);

      await page.getByTestId('sample-speech').click();
      expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
      expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
      await setMaxNewTokens(page, 3);
      await page.getByTestId('preset-asr').click();
      expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
      const firstAnswer = await page.getByTestId('answer-1').textContent();
      const recording = await page.getByTestId('recording-meta').textContent();

      // The worker closes itself mid-answer (what a crash or an out-of-memory kill looks like from the page).
      await setMaxNewTokens(page, 2000);
      const fetched: string[] = [];
      context.on('request', (request) => fetched.push(request.url()));
      const first = await engineWorker(page);
      await ask(page, 'Tell me a long story.');
      expect(await waitForState(page, 'answer-2', ['streaming', 'done', 'error'])).toBe('streaming');
      await first.evaluate(() => self.close());
      expect(await waitForState(page, 'answer-2', ['done', 'stopped', 'error'], 30_000)).toBe('error');
      const said =
        'The engine stopped unexpectedly (its worker was closed). Hark restarted it and is loading the model again from this device; your conversation and recording are kept. Ask again when the model is ready.';
      expect(await page.locator('.answer-error').last().textContent()).toBe(said);
      expect(await banner(page)).toEqual({ scope: 'answer', text: `The question could not be answered. ${said}` });
      expect(await waitForState(page, 'model-status', ['loading', 'ready'], 10_000)).toBeTruthy();
      await recovered(page, /^Restarted after the engine stopped unexpectedly: the model was loaded again from this device on WebAssembly\.$/);
      const second = await engineWorker(page, first);
      expect(second).not.toBe(first);
      // From this device's cache: no model graph was downloaded again.
      expect(fetched.filter((url) => /\.onnx(_data)?$/.test(new URL(url).pathname))).toEqual([]);
      // The conversation and the recording are as they were.
      expect(await page.getByTestId('answer-1').textContent()).toBe(firstAnswer);
      expect(await page.getByTestId('recording-meta').textContent()).toBe(recording);

      // The next question is a follow-up: the new engine re-read the conversation first, so only
      // the question is fed (the first prompt held the recording's 88 audio tokens).
      await setMaxNewTokens(page, 3);
      await ask(page, 'And what else?');
      expect(await waitForState(page, 'answer-3', ['done', 'stopped', 'error'])).toBe('done');
      expect(await page.locator('.thread-divider', { hasText: 'could not be re-read' }).count()).toBe(0);
      const promptTokens = Number(await page.getByTestId('answer-3').getAttribute('data-prompt-tokens'));
      expect(promptTokens).toBeGreaterThan(0);
      expect(promptTokens).toBeLessThan(88);

      // An error nothing catches inside the worker, while it is idle: the same recovery.
      // (Asking cleared the message about the first crash.)
      expect(await page.getByTestId('error-message').count()).toBe(0);
      await second.evaluate(() => {
        setTimeout(() => {
          throw new Error('injected fault');
        }, 0);
      });
      const thrown = await banner(page);
      expect(thrown.scope).toBe('engine');
      expect(thrown.text).toMatch(
        /^The engine stopped unexpectedly \(an error inside it: (Uncaught )?Error: injected fault\)\. Hark restarted it and is loading the model again from this device; your conversation and recording are kept\. Ask again when the model is ready\.$/,
      );
      await recovered(page, /^Restarted after the engine stopped unexpectedly/);
      await engineWorker(page, second);
      await ask(page, 'Anything more?');
      expect(await waitForState(page, 'answer-4', ['done', 'stopped', 'error'])).toBe('done');
      expect(Number(await page.getByTestId('answer-4').getAttribute('data-prompt-tokens'))).toBeLessThan(88);
      expect(await page.getByTestId('answer-1').textContent()).toBe(firstAnswer);
    } finally {
      await context.close();
    }
    // The injected error is reported by the worker's own console; nothing else may be.
    expect(errors.filter((e) => !e.includes('injected fault'))).toEqual([]);
    console.log(`[faults] worker crash: ${since(started)}`);
  });

  it('WebGPU: Stop while the model reads the prompt leaves no GPU buffer behind; the GPU lost mid-answer is said, the engine comes back on WebGPU and answers, the conversation kept; a captured replay that differs is caught and shown', { timeout: 600_000 }, async () => {
    const started = performance.now();
    const { context, page, errors } = await openApp(browser, 'webgpu');
    try {
      await page.getByTestId('model-resume').click();
      await page.getByTestId('sample-speech').click();
      expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
      expect(await page.getByTestId('model-status').getAttribute('data-backend')).toBe('webgpu');
      expect(await page.getByTestId('model-status').getAttribute('data-variant')).toBe('fp32');
      expect(await page.getByTestId('backend-reason').textContent()).toBe('Running on WebGPU. WebGPU was chosen in Settings.');
      // WebGPU forced on a software adapter: the settings say WebAssembly is likely much faster here.
      if ((await page.getByTestId('software-adapter').textContent())?.startsWith('yes')) {
        expect(await page.getByTestId('backend-advice').textContent()).toMatch(/^Faster here: WebGPU here is a software renderer.*WebAssembly \(CPU\) is likely much faster on this device\. Choose Automatic or WebAssembly in Settings\.$/);
      }
      console.log(`[faults] gpu: model ready after ${since(started)}`);
      expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
      console.log(`[faults] gpu: model + recording ready after ${since(started)}`);
      const worker = await engineWorker(page);
      await setMaxNewTokens(page, 1);
      await page.getByTestId('preset-asr').click();
      expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
      const baseline = await liveBuffers(worker);
      console.log(`[faults] gpu: first answer after ${since(started)}; buffers ${JSON.stringify(baseline)}`);

      // Stop while the model reads the first prompt (the recording's 88 audio tokens and the
      // question, fed in chunks of 31 on this adapter): it stops between chunks, releasing the
      // half-built KV cache, instead of reading to the end. Three times over: the GPU buffers
      // alive after each round (stop, then the same question answered) stay the same.
      const rounds: number[] = [];
      for (let round = 0; round < 3; round++) {
        await page.getByTestId('new-conversation').click();
        await expect.poll(() => page.getByTestId('answer-1').count()).toBe(0);
        await ask(page, 'What is this?');
        expect(await waitForState(page, 'answer-1', ['waiting', 'streaming', 'done'])).toBe('waiting');
        // A short wait, so the prompt is being read: on an idle machine the whole 1-token answer took
        // 0.3 s here, and a 1 s wait let it finish before the Stop (CI saw the button gone).
        await page.waitForTimeout(100);
        let t = performance.now();
        await clickInPage(page, 'stop-button');
        expect(await waitForState(page, 'answer-1', ['stopped', 'done', 'error'], 60_000)).toBe('stopped');
        const stopMs = performance.now() - t;
        expect(await page.getByTestId('answer-1').getAttribute('data-tokens')).toBe('0');
        expect(await page.locator('.bubble.assistant').last().textContent()).toContain('Stopped before the first word.');
        // Nothing is busy: the same question again is read to the end and answered.
        t = performance.now();
        await ask(page, 'What is this?');
        expect(await waitForState(page, 'answer-2', ['done', 'stopped', 'error'])).toBe('done');
        const answerMs = performance.now() - t;
        const after = await liveBuffers(worker);
        rounds.push(after.live);
        console.log(`[faults] gpu: round ${round + 1}: prefill stopped in ${stopMs.toFixed(0)} ms, a whole 1-token answer took ${answerMs.toFixed(0)} ms; buffers ${JSON.stringify(after)}`);
        // Stopping is quicker than answering; below 1 s the 100 ms polling of the states cannot tell.
        expect(stopMs).toBeLessThan(Math.max(answerMs * 0.6, 1000));
      }
      expect(rounds[2]).toBeLessThanOrEqual(rounds[0]!);
      expect(rounds[1]).toBeLessThanOrEqual(rounds[0]!);

      const firstAnswer = await page.getByTestId('answer-2').textContent();
      const recording = await page.getByTestId('recording-meta').textContent();
      await setMaxNewTokens(page, 40);
      await ask(page, 'Tell me a long story.');
      expect(await waitForState(page, 'answer-3', ['streaming', 'done', 'error'])).toBe('streaming');
      // What a driver reset or a GPU process crash does to the page: the device is lost.
      expect(await worker.evaluate(() => {
        const gpu = (self as unknown as { harkGpu?: { device: GPUDevice | null } }).harkGpu;
        gpu?.device?.destroy();
        return Boolean(gpu?.device);
      })).toBe(true);
      expect(await waitForState(page, 'answer-3', ['done', 'stopped', 'error'], 60_000)).toBe('error');
      const said = /^The GPU stopped working \(the browser reported the WebGPU device lost: .+\)\. Hark restarted the engine and is loading the model again; your conversation and recording are kept\. Ask again when the model is ready\.$/;
      expect(await page.locator('.answer-error').last().textContent()).toMatch(said);
      const alert = await banner(page);
      expect(alert.scope).toBe('answer');
      expect(alert.text.replace(/^The question could not be answered\. /, '')).toMatch(said);
      await recovered(page, /^Restarted after the GPU stopped working: the model was loaded again from this device on WebGPU\.$/);
      expect(await page.getByTestId('model-status').getAttribute('data-backend')).toBe('webgpu');
      console.log(`[faults] gpu: recovered after ${since(started)}`);

      await setMaxNewTokens(page, 1);
      await ask(page, 'And then?');
      expect(await waitForState(page, 'answer-4', ['done', 'stopped', 'error'])).toBe('done');
      // A follow-up: the new engine re-read the conversation (only the question is fed).
      expect(Number(await page.getByTestId('answer-4').getAttribute('data-prompt-tokens'))).toBeLessThan(88);
      expect(await page.getByTestId('answer-2').textContent()).toBe(firstAnswer);
      expect(await page.getByTestId('recording-meta').textContent()).toBe(recording);

      // A captured decode step whose replay differs from an ordinary run of the same token (here
      // the token id written for it is changed on its way to the GPU) is caught by the engine's
      // check: the answer is the one given without the fault, and the device report says that
      // answer tokens now run as ordinary runs, and why.
      expect(await page.getByTestId('decode-capture').getAttribute('data-captured')).toBe('true');
      await setMaxNewTokens(page, 3);
      const askAfresh = async () => {
        await page.getByTestId('new-conversation').click();
        await expect.poll(() => page.getByTestId('answer-1').count()).toBe(0);
        await ask(page, 'What is this?');
        expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
        expect(await page.getByTestId('answer-1').getAttribute('data-tokens')).toBe('3');
        return page.getByTestId('answer-1').textContent();
      };
      const unfaulted = await askAfresh();
      const recoveredWorker = await engineWorker(page, worker);
      await recoveredWorker.evaluate(() => {
        // Only the captured step writes a lone int64 (its token id); ORT's own uploads are bytes.
        const write = GPUQueue.prototype.writeBuffer;
        GPUQueue.prototype.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource | SharedArrayBuffer, ...rest: number[]) {
          const wrong = data instanceof BigInt64Array && data.length === 1 ? BigInt64Array.of(data[0]! + 1n) : data;
          return write.call(this, buffer, offset, wrong as BufferSource, ...rest);
        } as typeof write;
      });
      expect(await askAfresh()).toBe(unfaulted);
      expect(await page.getByTestId('decode-capture').getAttribute('data-captured')).toBe('false');
      expect(await page.getByTestId('decode-capture').textContent()).toMatch(
        /^Answer tokens now run as ordinary decoder runs: graph capture stopped during an answer \(a replayed decode step differed from an ordinary run of the same token \(logits off by .+\)\)\. Answers stay the same, only slower; loading the model again tries capture again\.$/,
      );
      console.log(`[faults] gpu: a differing replay caught: ${await page.getByTestId('decode-capture').textContent()}`);
    } finally {
      await context.close();
    }
    expect(errors).toEqual([]);
    console.log(`[faults] gpu: ${since(started)}`);
  });
});

describe('cancel everywhere (WebAssembly): nothing stays busy', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('stops a model download, listening to a long recording, an answer before its first word, and an answer replaced by a new recording', { timeout: 300_000 }, async () => {
    const started = performance.now();
    // Slow enough that the pause lands before the 4.4 MB have arrived: the pause, clicked once 5 %
    // was shown, has come after 0.9 MB here and after 2.4 MB (at 1.5 MB/s per file, 3 at a time)
    // in firstUse.test.ts; at 3 MB/s per file a later one would find the download complete.
    const proxy = await startSlowProxy(inject('devUrl'), { under: '/models/salmonn-tiny/', bytesPerSecond: 600_000 });
    const { context, page, errors } = await openApp(browser, 'wasm', proxy.url);
    try {
      // A model download, stopped (paused) partway: nothing is busy, and it resumes to a working model.
      await page.waitForFunction(() => (document.querySelector<HTMLProgressElement>('progress[aria-label="Model download progress"]')?.value ?? 0) >= 5, null, { timeout: 60_000, polling: 50 });
      await page.getByTestId('model-pause').click();
      expect(await waitForState(page, 'model-status', ['paused', 'ready', 'error'], 30_000)).toBe('paused');
      await page.getByTestId('model-resume').click();
      expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
      console.log(`[faults] cancel: model ready after ${since(started)}`);

      // Stop while a 2-minute recording is listened to (4 windows): it stops after the window in hand.
      await page.getByTestId('audio-file-input').setInputFiles({ name: 'two-minutes.wav', mimeType: 'audio/wav', buffer: toneWav(120) });
      expect(await waitForState(page, 'audio-status', ['encoding', 'ready', 'error'])).toBe('encoding');
      await page.waitForFunction(() => /window 2 of 4/.test(document.querySelector('[data-testid="audio-status"]')?.textContent ?? ''), null, { timeout: 60_000, polling: 20 });
      let t = performance.now();
      await clickInPage(page, 'encode-stop');
      expect(await waitForState(page, 'audio-status', ['stopped', 'ready', 'error'], 30_000)).toBe('stopped');
      console.log(`[faults] cancel: listening stopped in ${since(t)}`);
      expect(await page.getByTestId('audio-status').textContent()).toBe('Listening was stopped, so there is nothing to ask about yet.Listen again');
      await ask(page, 'What is this?');
      await expect.poll(() => page.locator('#composer-help').textContent()).toBe('Listening to the recording was stopped: press “Listen again” (or open another recording), then ask.');

      // Listen again; then Stop right after asking, before the first word.
      await clickInPage(page, 'encode-again');
      expect(await waitForState(page, 'audio-status', ['ready', 'error', 'stopped'])).toBe('ready');
      await setMaxNewTokens(page, 1);
      expect(await page.getByTestId('question-input').inputValue()).toBe('What is this?');
      await page.evaluate(async () => {
        const box = document.querySelector<HTMLTextAreaElement>('#question')!;
        box.focus();
        box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
        for (let i = 0; i < 400; i++) {
          const stop = document.querySelector<HTMLButtonElement>('[data-testid="stop-button"]');
          if (stop) return stop.click();
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        throw new Error('no Stop button after asking');
      });
      expect(await waitForState(page, 'answer-1', ['stopped', 'done', 'error'], 60_000)).toBe('stopped');
      expect(await page.getByTestId('answer-1').getAttribute('data-tokens')).toBe('0');
      await ask(page, 'What is this?');
      expect(await waitForState(page, 'answer-2', ['done', 'stopped', 'error'])).toBe('done');

      // A new recording dropped while an answer streams: asked first, the answer stops, the new one is heard and answered.
      await setMaxNewTokens(page, 2000);
      await ask(page, 'Tell me a long story.');
      expect(await waitForState(page, 'answer-3', ['streaming', 'done', 'error'])).toBe('streaming');
      page.once('dialog', (dialog) => void dialog.accept());
      await page.getByTestId('audio-file-input').setInputFiles({ name: 'short.wav', mimeType: 'audio/wav', buffer: toneWav(5) });
      await expect.poll(() => page.getByTestId('recording-meta').textContent(), { timeout: 60_000 }).toContain('short.wav');
      expect(await page.locator('.thread-divider').first().textContent()).toBe(
        'The answer to “Tell me a long story.” was stopped when you opened “short.wav”; what it wrote is kept in History.',
      );
      expect(await waitForState(page, 'audio-status', ['ready', 'error', 'stopped'])).toBe('ready');
      await setMaxNewTokens(page, 1);
      await ask(page, 'What is this?');
      expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
    } finally {
      await context.close();
      await proxy.close();
    }
    expect(errors).toEqual([]);
    console.log(`[faults] cancel: ${since(started)}`);
  });
});
