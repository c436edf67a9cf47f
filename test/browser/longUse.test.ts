/**
 * Long use (issue 13): what many questions and a 10-minute recording do to Hark over time.
 *
 * 1. Many consecutive questions through the real engine worker (the app's own entry point and
 *    client, via the engine harness page) in Chromium on WebGPU: follow-ups, new conversations and
 *    three different recordings. At checkpoints the worker's JS heap (after a forced garbage
 *    collection, read through the DevTools protocol attached to the worker) and the GPU buffers
 *    onnxruntime holds (a wrapper on createBuffer/destroy installed inside the worker before the
 *    model loads) are measured; both must stay flat within the bounds below. The question count
 *    comes from HARK_LONG_USE_QUESTIONS (default 30 for CI); `npm run test:long-use` runs 100.
 * 2. A 10-minute recording through the app's UI (WebAssembly): encoding progress shown and
 *    advancing, Stop during encoding (nothing stays busy, the recording is kept), Listen again,
 *    then a question answered with a streamed answer.
 *
 * Nothing is mocked: the real model (the tiny bundle), onnxruntime-web and the worker.
 */
import type { Browser, BrowserContext, CDPSession, Page, Worker as PwWorker } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium } from './chromium';

/**
 * Questions in the WebGPU run: 12 in `npm test`, 100 in `npm run test:long-use`. On the software
 * adapter here each recording costs over a minute to encode (one 30 s window of Whisper) and the
 * first prompt of a conversation 6–20 s, so CI runs one recording and the full run three. Measured
 * here (2 shared cores): 12 questions 2.5–4 min, most of it the model load, the one encode and the
 * first prompt; 100 questions about 11 min.
 */
const QUESTIONS = Number(process.env.HARK_LONG_USE_QUESTIONS ?? 12);
const RECORDINGS = QUESTIONS >= 30 ? 3 : 1;
/**
 * Measured after this many questions (every kernel compiled, every pool warm: two conversations
 * begun, follow-ups made) and every as many after: 4 in CI, 10 in the full run.
 */
const CHECKPOINT_EVERY = Math.max(4, Math.min(10, Math.floor(QUESTIONS / 3)));
const BASELINE_AFTER = CHECKPOINT_EVERY;
/**
 * Flatness bounds against the baseline checkpoint. GPU buffers: onnxruntime's WebGPU allocator
 * keeps freed buffers in size buckets for reuse and the KV cache is one buffer per layer sized for
 * the conversation, so the count may move by a few, never by one per question (a leak of one
 * buffer per question would add 8 by question 12 in CI and 90 by question 100). Their bytes: the
 * same slack in size (the tiny model's KV cache of a conversation is well under 1 MB), so a leaked
 * encoder output or a cache kept per conversation shows even when it is one buffer.
 */
const MAX_EXTRA_GPU_BUFFERS = 4;
const MAX_GPU_GROWTH_BYTES = 8 * 1024 * 1024;
/**
 * Worker JS heap after GC: 4 MB of slack for V8's own caches (a 128 kB leak per question, one
 * vocabulary-sized logits row, would exceed it by question 42). Array buffers (the heap's backing
 * stores, onnxruntime's wasm memory among them, which never shrinks): 8 MB.
 */
const MAX_HEAP_GROWTH_BYTES = 4 * 1024 * 1024;
const MAX_ARRAY_BUFFER_GROWTH_BYTES = 8 * 1024 * 1024;
/** Decode steps take ~0.5 s each on a software WebGPU adapter: short answers keep the run short. */
const MAX_NEW_TOKENS = 2;

/** A 16-bit mono WAV, 16 kHz, of `seconds` from `sample(t)` in [-1, 1]. */
function wav(seconds: number, sample: (t: number) => number, rate = 16000): Buffer {
  const n = Math.round(seconds * rate);
  const out = Buffer.alloc(44 + 2 * n);
  out.write('RIFF', 0);
  out.writeUInt32LE(36 + 2 * n, 4);
  out.write('WAVE', 8);
  out.write('fmt ', 12);
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20);
  out.writeUInt16LE(1, 22);
  out.writeUInt32LE(rate, 24);
  out.writeUInt32LE(rate * 2, 28);
  out.writeUInt16LE(2, 32);
  out.writeUInt16LE(16, 34);
  out.write('data', 36);
  out.writeUInt32LE(2 * n, 40);
  for (let i = 0; i < n; i++) out.writeInt16LE(Math.round(32767 * Math.max(-1, Math.min(1, sample(i / rate)))), 44 + 2 * i);
  return out;
}

/** A deterministic noise source (the same recordings every run). */
function noise(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  };
}

/**
 * Three different recordings, 1–3 s: a vowel-like buzz with a moving pitch (speech-like), a
 * chord of tones, and noise bursts (short ones keep encoding cheap: every clip is one window).
 */
function recordings(): { name: string; wav: Buffer }[] {
  const hiss = noise(7);
  return [
    {
      name: 'speech-like',
      wav: wav(2.5, (t) => {
        const pitch = 120 + 40 * Math.sin(2 * Math.PI * 1.5 * t);
        const syllables = Math.max(0, Math.sin(2 * Math.PI * 3 * t));
        let v = 0;
        for (let h = 1; h <= 12; h++) v += Math.sin(2 * Math.PI * pitch * h * t) / h * (h === 5 || h === 6 ? 2 : 1);
        return 0.25 * syllables * v;
      }),
    },
    { name: 'chord', wav: wav(1.5, (t) => 0.2 * (Math.sin(2 * Math.PI * 440 * t) + Math.sin(2 * Math.PI * 554 * t) + Math.sin(2 * Math.PI * 659 * t))) },
    { name: 'noise-bursts', wav: wav(3, (t) => (Math.floor(t * 4) % 2 === 0 ? 0.5 * hiss() : 0.02 * hiss())) },
  ];
}

/** Questions and follow-ups, reused round-robin (their lengths differ, so do the prompts). */
const FIRST_QUESTIONS = ['What is happening in this recording?', 'Describe the sound.', 'Is anyone speaking here? If so, what do they say?', 'What kind of place could this be recorded in?'];
const FOLLOW_UPS = ['And then?', 'Why do you think so?', 'Say more about the loudest part.', 'Is it music?', 'How long does it last?'];

/** What question `index` (0-based) of `total` does: which recording, and whether it opens a conversation. */
function longUseStep(index: number, total: number, recordings: number): { recording: number; opens: 'recording' | 'conversation' | null } {
  const recordingOf = (i: number) => Math.min(recordings - 1, Math.floor((i * recordings) / total));
  const recording = recordingOf(index);
  const firstOfRecording = index === 0 || recordingOf(index - 1) !== recording;
  if (firstOfRecording) return { recording, opens: 'recording' };
  // A new conversation every 5 questions; the rest are follow-ups.
  return { recording, opens: index % 5 === 0 ? 'conversation' : null };
}

/**
 * The DevTools protocol inside the engine worker: the page's session auto-attaches to its workers
 * (the non-flattened mode, since Playwright's CDPSession cannot address a child session), and
 * commands travel as Target.sendMessageToTarget.
 */
class WorkerDevtools {
  private next = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private sessionId: string | null = null;

  private constructor(private readonly cdp: CDPSession) {}

  static async attach(page: Page, urlPart: string): Promise<WorkerDevtools> {
    const cdp = await page.context().newCDPSession(page);
    const devtools = new WorkerDevtools(cdp);
    cdp.on('Target.attachedToTarget', (event) => {
      if (event.targetInfo.type === 'worker' && event.targetInfo.url.includes(urlPart)) devtools.sessionId = event.sessionId;
    });
    cdp.on('Target.receivedMessageFromTarget', (event) => {
      const message = JSON.parse(event.message) as { id?: number; result?: unknown; error?: { message: string } };
      const waiting = message.id === undefined ? undefined : devtools.pending.get(message.id);
      if (!waiting) return;
      devtools.pending.delete(message.id!);
      if (message.error) waiting.reject(new Error(message.error.message));
      else waiting.resolve(message.result);
    });
    await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
    await expect.poll(() => devtools.sessionId, { timeout: 30_000 }).not.toBeNull();
    return devtools;
  }

  send<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.next++;
    const reply = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    // A message that cannot be delivered (the worker gone) fails the call instead of leaving it waiting.
    this.cdp.send('Target.sendMessageToTarget', { sessionId: this.sessionId!, message: JSON.stringify({ id, method, params }) }).catch((error: Error) => {
      this.pending.get(id)?.reject(error);
      this.pending.delete(id);
    });
    return reply as Promise<T>;
  }

  /** The worker's JS heap after two full garbage collections (so checkpoints compare). */
  async heapAfterGc(): Promise<{ usedSize: number; totalSize: number; backingStorageSize?: number }> {
    await this.send('HeapProfiler.collectGarbage');
    await this.send('HeapProfiler.collectGarbage');
    return this.send('Runtime.getHeapUsage');
  }
}

/**
 * Runs inside the engine worker before the model loads: counts the GPU buffers created and
 * destroyed (a wrapper on GPUDevice.prototype.createBuffer and GPUBuffer.prototype.destroy) and
 * the bytes of those alive. Weak references only, so the counting keeps nothing alive.
 */
function installGpuBufferCounter(): void {
  type Counter = { created: number; destroyed: number; liveBytes: number; tracked: WeakMap<GPUBuffer, number> };
  const scope = self as unknown as { harkGpuBuffers?: Counter };
  if (scope.harkGpuBuffers || typeof GPUDevice === 'undefined') return;
  const counter: Counter = { created: 0, destroyed: 0, liveBytes: 0, tracked: new WeakMap() };
  scope.harkGpuBuffers = counter;
  const create = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor) {
    const buffer = create.call(this, descriptor);
    counter.tracked.set(buffer, descriptor.size);
    counter.created += 1;
    counter.liveBytes += descriptor.size;
    return buffer;
  };
  const destroy = GPUBuffer.prototype.destroy;
  GPUBuffer.prototype.destroy = function (this: GPUBuffer) {
    const size = counter.tracked.get(this);
    if (size !== undefined) {
      counter.tracked.delete(this);
      counter.destroyed += 1;
      counter.liveBytes -= size;
    }
    return destroy.call(this);
  };
}

interface GpuBufferCounts {
  created: number;
  destroyed: number;
  liveBytes: number;
}

async function gpuBuffers(worker: PwWorker): Promise<GpuBufferCounts> {
  return worker.evaluate(() => {
    const { created, destroyed, liveBytes } = (self as unknown as { harkGpuBuffers: GpuBufferCounts }).harkGpuBuffers;
    return { created, destroyed, liveBytes };
  });
}

interface Checkpoint {
  question: number;
  heapUsedMB: number;
  heapTotalMB: number;
  arrayBuffersMB: number;
  liveBuffers: number;
  liveBufferMB: number;
  created: number;
  destroyed: number;
  seconds: number;
}

const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 100) / 100;

describe('long use', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it(`${QUESTIONS} questions through the worker on WebGPU (follow-ups, new conversations, ${RECORDINGS === 3 ? 'three recordings' : 'one recording'}): JS heap and GPU buffers stay flat`, { timeout: 1_800_000 }, async () => {
    const started = performance.now();
    const seconds = () => Math.round((performance.now() - started) / 100) / 10;
    const context: BrowserContext = await browser.newContext();
    const errors = collectConsoleErrors(context);
    const page = await context.newPage();
    page.on('worker', (worker) => {
      if (worker.url().includes('engine.worker')) void worker.evaluate(installGpuBufferCounter).catch(() => {});
    });
    try {
      await page.goto(new URL('/test/browser/harness/engine.html', inject('devUrl')).href);
      await page.waitForFunction(() => window.harkEngineHarness?.ready === true);
      const engineWorker = () => page.workers().find((w) => w.url().includes('engine.worker'));
      await expect.poll(engineWorker, { timeout: 30_000 }).toBeTruthy();
      const worker = engineWorker()!;
      // The counter must be in place before onnxruntime creates its first buffer.
      await expect.poll(() => worker.evaluate(() => 'harkGpuBuffers' in self), { timeout: 30_000 }).toBe(true);
      const devtools = await WorkerDevtools.attach(page, 'engine.worker');

      // fp32: int4 decoder steps take seconds each on the software adapter here.
      const info = await page.evaluate(() => window.harkEngineHarness.client.loadModel('/models/salmonn-tiny/', { backend: 'webgpu', variant: 'fp32' }));
      expect(info.backend).toBe('webgpu');
      console.log(`[long use] model loaded on WebGPU after ${seconds()} s; buffers ${JSON.stringify(await gpuBuffers(worker))}`);

      const clips = recordings().map((clip) => ({ name: clip.name, base64: clip.wav.toString('base64') }));
      const checkpoints: Checkpoint[] = [];
      const measure = async (question: number) => {
        const heap = await devtools.heapAfterGc();
        const buffers = await gpuBuffers(worker);
        checkpoints.push({
          question,
          heapUsedMB: mb(heap.usedSize),
          heapTotalMB: mb(heap.totalSize),
          arrayBuffersMB: mb(heap.backingStorageSize ?? 0),
          liveBuffers: buffers.created - buffers.destroyed,
          liveBufferMB: mb(buffers.liveBytes),
          created: buffers.created,
          destroyed: buffers.destroyed,
          seconds: seconds(),
        });
        console.log(`[long use] after question ${question}: ${JSON.stringify(checkpoints.at(-1))}`);
      };

      let firstPromptTokens = 0;
      for (let index = 0; index < QUESTIONS; index++) {
        const step = longUseStep(index, QUESTIONS, RECORDINGS);
        const clip = clips[step.recording]!;
        const question = step.opens ? FIRST_QUESTIONS[index % FIRST_QUESTIONS.length]! : FOLLOW_UPS[index % FOLLOW_UPS.length]!;
        const answer = await page.evaluate(
          async ({ clip, opens, question, maxNewTokens }) => {
            const { client } = window.harkEngineHarness;
            let t = performance.now();
            if (opens === 'recording') {
              const bytes = Uint8Array.from(atob(clip.base64), (c) => c.charCodeAt(0));
              await client.setAudio(bytes);
            } else if (opens === 'conversation') {
              await client.newConversation();
            }
            const openMs = performance.now() - t;
            t = performance.now();
            let streamed = '';
            let events = 0;
            const result = await client.ask(question, { maxNewTokens, doSample: false }, (event) => {
              events += 1;
              streamed = event.text;
            });
            const ms = { open: openMs, ask: performance.now() - t, prefill: result.stats.prefillMs, decode: result.stats.decodeMs };
            return { turn: result.turn, tokens: result.ids.length, events, streamed, text: result.text, promptTokens: result.stats.promptTokens, ms };
          },
          { clip, opens: step.opens, question, maxNewTokens: MAX_NEW_TOKENS },
        );
        if (process.env.HARK_LONG_USE_VERBOSE) console.log(`[long use] question ${index + 1} (${step.opens ?? 'follow-up'}, ${answer.promptTokens} prompt tokens): ${JSON.stringify(answer.ms)}`);
        // Each answer streamed its tokens and continued the conversation it belongs to.
        expect(answer.tokens).toBeGreaterThan(0);
        expect(answer.events).toBe(answer.tokens);
        expect(answer.streamed).toBe(answer.text);
        if (step.opens) {
          expect(answer.turn).toBe(1);
          // The first prompt of a conversation holds the recording's 88 audio tokens.
          expect(answer.promptTokens).toBeGreaterThan(88);
          firstPromptTokens = answer.promptTokens;
        } else {
          expect(answer.turn).toBeGreaterThan(1);
          // A follow-up feeds only its own turn: the cache holds the rest.
          expect(answer.promptTokens).toBeLessThan(firstPromptTokens);
        }
        const done = index + 1;
        if (done >= BASELINE_AFTER && (done % CHECKPOINT_EVERY === 0 || done === QUESTIONS)) await measure(done);
      }

      const totals = await gpuBuffers(worker);
      console.log(`[long use] ${QUESTIONS} questions (${RECORDINGS} recording${RECORDINGS === 1 ? '' : 's'}) on WebGPU in ${seconds()} s, baseline after question ${BASELINE_AFTER}; GPU buffers created ${totals.created}, destroyed ${totals.destroyed}:`);
      console.table(checkpoints);
      const [baseline, ...later] = checkpoints;
      expect(baseline, `at least ${BASELINE_AFTER} questions are needed for a baseline`).toBeDefined();
      for (const point of later) {
        expect(point.liveBuffers, `live GPU buffers after question ${point.question}`).toBeLessThanOrEqual(baseline!.liveBuffers + MAX_EXTRA_GPU_BUFFERS);
        expect(point.liveBufferMB - baseline!.liveBufferMB, `live GPU buffer growth (MB) after question ${point.question}`).toBeLessThanOrEqual(mb(MAX_GPU_GROWTH_BYTES));
        expect(point.heapUsedMB - baseline!.heapUsedMB, `worker JS heap growth (MB) after question ${point.question}`).toBeLessThanOrEqual(mb(MAX_HEAP_GROWTH_BYTES));
        expect(point.arrayBuffersMB - baseline!.arrayBuffersMB, `worker array buffer growth (MB) after question ${point.question}`).toBeLessThanOrEqual(mb(MAX_ARRAY_BUFFER_GROWTH_BYTES));
      }
    } finally {
      await context.close();
    }
    expect(errors).toEqual([]);
  });
});

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

/** Types a question and presses Enter from inside the page (the main thread may be busy for Playwright's own fill/press). */
async function askInPage(page: Page, question: string): Promise<void> {
  await page.evaluate((value) => {
    const box = document.querySelector<HTMLTextAreaElement>('#question')!;
    Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value')!.set!.call(box, value);
    box.dispatchEvent(new Event('input', { bubbles: true }));
    box.focus();
    box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
  }, question);
}

/** The listening progress on screen: the window named in the status and the progress bar's value. */
async function listeningProgress(page: Page): Promise<{ window: number; of: number; value: number | null; timing: string }> {
  return page.evaluate(() => {
    const status = document.querySelector('[data-testid="audio-status"]');
    const match = /window (\d+) of (\d+)/.exec(status?.textContent ?? '');
    const bar = status?.querySelector('progress');
    return {
      window: Number(match?.[1] ?? 0),
      of: Number(match?.[2] ?? 0),
      // An indeterminate bar (no estimate yet) has no value attribute.
      value: bar?.hasAttribute('value') ? bar.value : null,
      timing: document.querySelector('[data-testid="encode-time"]')?.textContent ?? '',
    };
  });
}

/** Ten minutes of speech-like sound (a buzz with moving pitch in syllables, with pauses and some hiss), 16 kHz mono. */
function tenMinutes(): Buffer {
  const hiss = noise(11);
  return wav(600, (t) => {
    const pitch = 110 + 30 * Math.sin(2 * Math.PI * 0.7 * t) + 20 * Math.sin(2 * Math.PI * 0.13 * t);
    const syllables = Math.max(0, Math.sin(2 * Math.PI * 3.3 * t)) * (Math.floor(t / 4) % 5 === 4 ? 0 : 1);
    const phase = 2 * Math.PI * pitch * t;
    return 0.3 * syllables * (Math.sin(phase) + 0.5 * Math.sin(2 * phase) + 0.4 * Math.sin(5 * phase)) + 0.01 * hiss();
  });
}

describe('a 10-minute recording through the app (WebAssembly)', () => {
  let browser: Browser;
  let folder: string;
  beforeAll(async () => {
    browser = await launchChromium();
    folder = mkdtempSync(join(tmpdir(), 'hark-long-recording-'));
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    if (folder) rmSync(folder, { recursive: true, force: true });
  });

  // WebAssembly: on the software WebGPU adapter here one 30 s window takes over a minute to encode,
  // so the 20 windows of 10 minutes would take about half an hour; on WebAssembly they take seconds.
  it('shows listening progress, stops when asked (nothing stays busy, the recording and the waiting question kept), listens again and answers, streamed', { timeout: 600_000 }, async () => {
    const started = performance.now();
    const since = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
    const file = join(folder, 'ten-minutes.wav');
    writeFileSync(file, tenMinutes());
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const errors = collectConsoleErrors(context);
    await chooseBackendInSettings(context, 'wasm');
    const page = await context.newPage();
    try {
      await page.goto(inject('devUrl'));
      expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
      expect(await page.getByTestId('model-status').getAttribute('data-backend')).toBe('wasm');
      const maxTokens = page.getByTestId('setting-max-new-tokens');
      await maxTokens.fill('3');
      await maxTokens.blur();
      console.log(`[long recording] model ready after ${since()}`);

      // Opened as a person would, through the file picker.
      await page.getByTestId('audio-file-input').setInputFiles(file);
      expect(await waitForState(page, 'audio-status', ['encoding', 'ready', 'error'])).toBe('encoding');
      await expect.poll(() => page.getByTestId('recording-meta').textContent(), { timeout: 30_000 }).toContain('ten-minutes.wav');
      const listenStarted = performance.now();

      // A question asked while it is listened to waits for it.
      await askInPage(page, 'What is said in this recording?');
      await expect.poll(() => page.getByTestId('queued-question').textContent()).toBe('“What is said in this recording?” will be sent when the recording is ready. Cancel');

      // Progress: the window named advances through the 20 windows and the bar fills.
      await page.waitForFunction(() => /window [2-9] of 20/.test(document.querySelector('[data-testid="audio-status"]')?.textContent ?? ''), null, { timeout: 120_000, polling: 20 });
      const early = await listeningProgress(page);
      await page.waitForFunction((seen) => {
        const match = /window (\d+) of 20/.exec(document.querySelector('[data-testid="audio-status"]')?.textContent ?? '');
        return Number(match?.[1] ?? 0) >= seen + 2;
      }, early.window, { timeout: 120_000, polling: 20 });
      const later = await listeningProgress(page);
      console.log(`[long recording] progress ${JSON.stringify(early)} then ${JSON.stringify(later)} after ${((performance.now() - listenStarted) / 1000).toFixed(1)} s of listening`);
      expect(early.of).toBe(20);
      expect(later.window).toBeGreaterThan(early.window);
      expect(later.value).not.toBeNull();
      expect(later.value!).toBeGreaterThan(early.value ?? 0);
      expect(later.value!).toBeLessThan(1);
      expect(later.timing).toMatch(/^ · (about .+|almost done|\d+ s so far)$/);

      // Stop while listening: it stops after the window in hand, and nothing stays busy.
      const stopAt = performance.now();
      await page.evaluate(() => document.querySelector<HTMLButtonElement>('[data-testid="encode-stop"]')!.click());
      expect(await waitForState(page, 'audio-status', ['stopped', 'ready', 'error'], 60_000)).toBe('stopped');
      console.log(`[long recording] stopped ${((performance.now() - stopAt) / 1000).toFixed(1)} s after Stop, in window ${(await listeningProgress(page)).window || later.window} of 20`);
      expect(await page.getByTestId('audio-status').getAttribute('aria-busy')).toBe('false');
      expect(await page.getByTestId('audio-status').textContent()).toBe('Listening was stopped, so there is nothing to ask about yet.Listen again');
      expect(await waitForState(page, 'model-status', ['ready', 'error'], 5_000)).toBe('ready');
      expect(await page.getByTestId('recording-meta').textContent()).toContain('ten-minutes.wav');
      // The waiting question is kept, and the note says what it waits for.
      expect(await page.getByTestId('queued-question').textContent()).toBe('“What is said in this recording?” will be sent once the recording has been listened to: press “Listen again” (or open another recording). Cancel');
      expect(await page.locator('.bubble.assistant').count()).toBe(0);

      // Listen again, to the end: the waiting question is then sent and answered, streamed.
      await page.evaluate(() => {
        const seen: string[] = [];
        (window as unknown as { answerStates: string[] }).answerStates = seen;
        new MutationObserver(() => {
          const state = document.querySelector('[data-testid="answer-1"]')?.getAttribute('data-state');
          if (state && seen.at(-1) !== state) seen.push(state);
        }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
      });
      const again = performance.now();
      await page.getByTestId('encode-again').click();
      expect(await waitForState(page, 'audio-status', ['encoding', 'ready', 'error'])).toBe('encoding');
      expect(await waitForState(page, 'audio-status', ['ready', 'error', 'stopped'], 480_000)).toBe('ready');
      const listenedMs = performance.now() - again;
      expect(await page.getByTestId('audio-status').textContent()).toBe('Ready: 1760 audio tokens in 20 windows. Ask below.');
      expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
      expect(await page.locator('.bubble.user .bubble-text').first().textContent()).toBe('What is said in this recording?');
      const states = await page.evaluate(() => (window as unknown as { answerStates: string[] }).answerStates);
      expect(states).toContain('streaming');
      expect(states.at(-1)).toBe('done');
      const answer = page.getByTestId('answer-1');
      expect(Number(await answer.getAttribute('data-tokens'))).toBeGreaterThan(0);
      // The whole recording is in the prompt: 20 windows of 88 audio tokens.
      expect(Number(await answer.getAttribute('data-prompt-tokens'))).toBeGreaterThan(1760);
      console.log(`[long recording] listened to all 10 minutes in ${(listenedMs / 1000).toFixed(1)} s; answered (${await answer.getAttribute('data-tokens')} tokens, states ${states.join(' → ')}) after ${since()}`);

      // A follow-up continues the conversation (only its own turn is fed).
      await askInPage(page, 'And at the end?');
      expect(await waitForState(page, 'answer-2', ['done', 'stopped', 'error'])).toBe('done');
      expect(Number(await page.getByTestId('answer-2').getAttribute('data-prompt-tokens'))).toBeLessThan(88);
    } finally {
      await context.close();
    }
    expect(errors).toEqual([]);
    console.log(`[long recording] ${since()}`);
  });
});
