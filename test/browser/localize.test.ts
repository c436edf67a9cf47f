/**
 * "Where in the recording?" (issue 11) as a person uses it, in headless Chromium on the tiny
 * bundle with the Automatic backend (WebAssembly on this GPU-less machine): open a recording over
 * 30 s, type an event, press Find; the span highlighted on the waveform sits exactly where the
 * engine's [start, end] says (to the pixel), the evidence curve lies on the waveform's time axis
 * across the whole recording, "Play from here" plays from the span's start, and a new recording
 * clears the result. The tiny model's weights are random, so where it points means nothing: the
 * test checks that the UI shows the engine's answer faithfully, and that answer is the PyTorch
 * reference's (models/golden, same event, recording and precision).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GOLDEN_DIR, REPO_ROOT, goldenArray, loadGoldenIndex } from '../helpers/golden';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium } from './chromium';

const LONG_WAV = join(GOLDEN_DIR, 'audio', 'long_35s.wav');
const SHORT_WAV = join(GOLDEN_DIR, 'audio', 'one_second.wav');
const SCREENSHOTS = join(REPO_ROOT, 'test-results', 'screenshots');
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 360, height: 780 };
const EVENT = 'a dog barking';

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

/** Starts recording every text an element takes from now on (progress lines come and go fast). */
async function watchTexts(page: Page, testId: string): Promise<void> {
  await page.evaluate((id) => {
    const element = document.querySelector(`[data-testid="${id}"]`)!;
    const seen: string[] = [];
    (window as unknown as Record<string, string[]>)[`seen-${id}`] = seen;
    new MutationObserver(() => seen.push(element.textContent ?? '')).observe(element, { subtree: true, childList: true, characterData: true });
  }, testId);
}

async function textsSeen(page: Page, testId: string): Promise<string[]> {
  return page.evaluate((id) => (window as unknown as Record<string, string[]>)[`seen-${id}`] ?? [], testId);
}

/** Where the page put the highlight and the evidence, next to the numbers they stand for. */
interface Placement {
  start: number;
  end: number;
  confidence: number;
  duration: number;
  track: { left: number; width: number };
  span: { left: number; width: number };
  label: string;
}

async function placement(page: Page): Promise<Placement> {
  return page.evaluate(() => {
    const span = document.querySelector<HTMLElement>('[data-testid="found-span"]')!;
    const track = document.querySelector<HTMLElement>('.waveform-track')!.getBoundingClientRect();
    const rect = span.getBoundingClientRect();
    return {
      start: Number(span.dataset.start),
      end: Number(span.dataset.end),
      confidence: Number(span.dataset.confidence),
      duration: Number(document.querySelector<HTMLElement>('[data-testid="waveform"]')!.dataset.duration),
      track: { left: track.left, width: track.width },
      span: { left: rect.left, width: rect.width },
      label: span.getAttribute('aria-label') ?? '',
    };
  });
}

describe('Where in the recording? (issue 11)', () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: DESKTOP });
    errors = collectConsoleErrors(context);
    await chooseBackendInSettings(context, 'auto');
    page = await context.newPage();
    await page.goto(inject('devUrl'));
    expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
  });

  it('finds an event in a 35 s recording: the highlight is where the engine says, Play from here plays it, a new recording clears it', async () => {
    await page.getByTestId('audio-file-input').setInputFiles(LONG_WAV);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    expect(Number(await page.getByTestId('waveform').getAttribute('data-windows'))).toBe(2);
    await expect.poll(() => page.getByTestId('find-button').isEnabled()).toBe(true);

    // Type the event and press Enter in the field: the search runs, with its progress shown.
    await watchTexts(page, 'find-status');
    const input = page.getByTestId('find-input');
    await input.fill(EVENT);
    await input.press('Enter');
    expect(await waitForState(page, 'find', ['found', 'error', 'stopped'])).toBe('found');
    const progress = (await textsSeen(page, 'find-status')).filter((text) => /^Finding…/.test(text));
    expect(progress.some((text) => /^Finding… \d+ of \d+$/.test(text)), `progress lines seen: ${JSON.stringify(progress)}`).toBe(true);
    // Focus stays in the field the person typed in.
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('find-event');

    // The highlight holds the engine's numbers: the reference's for this event, recording and precision.
    const at = await placement(page);
    const variant = (await page.getByTestId('model-status').getAttribute('data-variant')) ?? '';
    expect(['fp32', 'int4']).toContain(variant);
    const reference = loadGoldenIndex().inputs.long_35s!.precisions[variant as 'fp32' | 'int4'].localization;
    expect(reference, `a reference localization for the ${variant} variant`).toBeDefined();
    expect(reference!.event).toBe(EVENT);
    expect(at.duration).toBeCloseTo(reference!.durationSeconds, 2);
    expect(at.start).toBeCloseTo(reference!.start, 3);
    expect(at.end).toBeCloseTo(reference!.end, 3);
    expect(at.confidence).toBeCloseTo(reference!.confidence, 3);
    // Placed on the track to the pixel.
    expect(Math.abs(at.span.left - (at.track.left + (at.start / at.duration) * at.track.width))).toBeLessThanOrEqual(1);
    expect(Math.abs(at.span.width - ((at.end - at.start) / at.duration) * at.track.width)).toBeLessThanOrEqual(1);
    expect(at.label).toMatch(new RegExp(`^Found: ${EVENT}, \\d:\\d\\d\\.\\d to \\d:\\d\\d\\.\\d, confidence \\d{1,3}%$`));
    // The same in words under the waveform, and for screen readers.
    const text = (await page.getByTestId('find-result-text').textContent()) ?? '';
    expect(text).toContain(`Found “${EVENT}” at`);
    expect(at.label).toContain(text.replace(/^.*? at /, '').split(' · ')[0]!.trim());
    await expect.poll(() => page.getByTestId('live-status').textContent()).toMatch(new RegExp(`^Found “${EVENT}” from [\\d.]+ seconds`));

    // Pressing the Find button instead: Stop takes its place while it runs, and focus follows
    // (Find, then Stop, then Find again; never <body>), and the same span is found again.
    await page.evaluate(() => {
      const find = document.querySelector('[data-testid="find"]')!;
      const seen: string[] = [];
      (window as unknown as Record<string, string[]>)['find-states'] = seen;
      new MutationObserver(() => seen.push(`${find.getAttribute('data-state')}:${(document.activeElement as HTMLElement | null)?.dataset.testid ?? document.activeElement?.tagName}`)).observe(find, {
        attributes: true,
        attributeFilter: ['data-state'],
      });
    });
    await page.getByTestId('find-button').click();
    await page.waitForFunction(() => ((window as unknown as Record<string, string[]>)['find-states'] ?? []).some((s) => s.startsWith('found')), undefined, { timeout: 60_000 });
    const states = await page.evaluate(() => (window as unknown as Record<string, string[]>)['find-states']!);
    expect(states[0], JSON.stringify(states)).toBe('finding:find-stop');
    expect(states.at(-1), JSON.stringify(states)).toBe('found:find-button');
    expect(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.testid)).toBe('find-button');
    const again = await placement(page);
    expect([again.start, again.end]).toEqual([at.start, at.end]);

    // The evidence: under the waveform, as wide as its track, over the whole recording.
    await page.getByTestId('toggle-evidence').click();
    expect(await page.getByTestId('toggle-evidence').getAttribute('aria-pressed')).toBe('true');
    const evidence = await page.evaluate(() => {
      const svg = document.querySelector<SVGSVGElement>('[data-testid="evidence-curve"]')!;
      const rect = svg.getBoundingClientRect();
      const track = document.querySelector('.waveform-track')!.getBoundingClientRect();
      const xs = (svg.querySelector('path')!.getAttribute('d') ?? '').split(/[ML]/).filter((s) => s.trim()).map((pair) => Number(pair.trim().split(' ')[0]));
      return { left: rect.left, width: rect.width, top: rect.top, trackLeft: track.left, trackWidth: track.width, trackBottom: track.bottom, viewBox: svg.getAttribute('viewBox'), xs };
    });
    expect(Math.abs(evidence.left - evidence.trackLeft)).toBeLessThanOrEqual(1);
    expect(Math.abs(evidence.width - evidence.trackWidth)).toBeLessThanOrEqual(1);
    expect(evidence.top).toBeGreaterThanOrEqual(evidence.trackBottom - 1);
    expect(evidence.viewBox).toBe(`0 0 ${at.duration} 1`);
    // One point per audio token within the recording (the second window's padding is left out):
    // 88 per 30 s window, so the curve reaches into the second window, up to the end.
    const tokenTimes = [...goldenArray(reference!.times).data].filter((t) => t <= at.duration);
    expect(evidence.xs.length).toBe(tokenTimes.length);
    expect(evidence.xs.length).toBeGreaterThan(88);
    expect(Math.min(...evidence.xs)).toBeCloseTo(tokenTimes[0]!, 3);
    expect(Math.max(...evidence.xs)).toBeCloseTo(tokenTimes.at(-1)!, 3);
    expect(Math.max(...evidence.xs)).toBeGreaterThan(at.duration - 1);

    await page.screenshot({ path: join(SCREENSHOTS, 'localize-found-1280.png'), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.waitForTimeout(150);
    await page.screenshot({ path: join(SCREENSHOTS, 'localize-found-360.png'), fullPage: true });
    expect(await page.evaluate(() => document.documentElement.scrollWidth), 'at 360 px').toBeLessThanOrEqual(PHONE.width);
    // At phone width the highlight still sits where the engine says.
    const narrow = await placement(page);
    expect(Math.abs(narrow.span.left - (narrow.track.left + (narrow.start / narrow.duration) * narrow.track.width))).toBeLessThanOrEqual(1);
    expect(Math.abs(narrow.span.width - ((narrow.end - narrow.start) / narrow.duration) * narrow.track.width)).toBeLessThanOrEqual(1);
    await page.setViewportSize(DESKTOP);

    // Play from here: the recording plays from the span's start.
    await page.getByTestId('play-found').click();
    const played = await page.waitForFunction(
      () => {
        const audio = document.querySelector<HTMLAudioElement>('[data-testid="waveform"] audio')!;
        return !audio.paused && audio.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA ? { currentTime: audio.currentTime, paused: audio.paused } : false;
      },
      undefined,
      { timeout: 10_000, polling: 'raf' },
    );
    const playback = (await played.jsonValue()) as { currentTime: number; paused: boolean };
    expect(playback.paused).toBe(false);
    expect(playback.currentTime).toBeGreaterThanOrEqual(at.start - 1e-3);
    expect(playback.currentTime).toBeLessThan(at.start + 1);
    expect(await page.getByRole('button', { name: 'Pause' }).count()).toBe(1);
    await page.getByRole('button', { name: 'Pause' }).click();

    // Another recording: what was found in the last one is gone.
    await page.getByTestId('audio-file-input').setInputFiles(SHORT_WAV);
    await expect.poll(() => page.getByTestId('found-span').count()).toBe(0);
    expect(await page.getByTestId('find-result').count()).toBe(0);
    expect(await page.getByTestId('evidence-curve').count()).toBe(0);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    expect(await page.getByTestId('find-input').inputValue()).toBe(EVENT);

    expect(errors).toEqual([]);
  });
});
