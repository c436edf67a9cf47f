#!/usr/bin/env node
/**
 * Renders the app icons in public/icons/ from the logo (public/favicon.svg) with headless Chromium
 * (playwright-core + Debian's chromium, as the browser tests use), so they are made here, not
 * downloaded. Run: `node scripts/make-icons.mjs` (only needed when the logo changes).
 *
 * - icon-192.png, icon-512.png: the logo as is (rounded square, transparent corners), purpose "any";
 * - maskable-192.png, maskable-512.png: full-bleed background with the bars inside the 80 % safe
 *   zone (the bars span the middle 50 %), purpose "maskable";
 * - apple-touch-icon.png (180 px): full-bleed, opaque (iOS adds its own rounded corners).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const root = new URL('..', import.meta.url).pathname;
const logo = readFileSync(join(root, 'public', 'favicon.svg'), 'utf8');
const fullBleed = logo.replace(/<rect([^>]*?)\s+rx="[^"]*"/, '<rect$1');

const icons = [
  { file: 'icon-192.png', size: 192, svg: logo },
  { file: 'icon-512.png', size: 512, svg: logo },
  { file: 'maskable-192.png', size: 192, svg: fullBleed },
  { file: 'maskable-512.png', size: 512, svg: fullBleed },
  { file: 'apple-touch-icon.png', size: 180, svg: fullBleed },
];

const browser = await chromium.launch({ executablePath: process.env.HARK_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const page = await browser.newPage({ deviceScaleFactor: 1 });
  for (const { file, size, svg } of icons) {
    await page.setViewportSize({ width: size, height: size });
    const sized = svg.replace('<svg ', `<svg width="${size}" height="${size}" `);
    await page.setContent(`<!doctype html><style>html,body{margin:0;background:transparent}svg{display:block}</style>${sized}`);
    const png = await page.screenshot({ omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
    writeFileSync(join(root, 'public', 'icons', file), png);
    console.log(`public/icons/${file} ${size}x${size} (${png.length} bytes)`);
  }
} finally {
  await browser.close();
}
