/**
 * Model output is never rendered as HTML. The answer text is put into the real conversation store,
 * exactly where the engine's streamed tokens land (`messages[].text`), and the real <Chat/> is
 * rendered by React (react-dom/server: the same element tree the app mounts, as markup). The
 * markup must hold the hostile text only as escaped text: no <img>, no onerror attribute, no
 * javascript: link, no <script>; so a browser building the DOM from it has nothing to run.
 * (Chosen over a special tokenizer bundle: the tokenizer only produces a string, and the
 * rendering path from the store's string to the page is what decides whether it becomes HTML.)
 */
import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { useConversationStore, type ChatMessage } from '../../src/stores/conversationStore';
import { Chat } from '../../src/ui/Chat';

const HOSTILE = [
  '<img src=x onerror="window.__pwned=1">',
  '<script>window.__pwned=1</script>',
  '<a href="javascript:window.__pwned=1">click me</a>',
  'javascript:window.__pwned=1',
  '[click](javascript:window.__pwned=1)',
  '<svg onload=window.__pwned=1>',
  '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
  '"><img src=x onerror=alert(1)>',
].join('\n');

function answer(text: string, status: 'streaming' | 'done'): ChatMessage {
  return {
    id: 2,
    role: 'assistant',
    text,
    status,
    stats: { tokens: 12, timeToFirstTokenMs: 10, tokensPerSecond: 5, promptTokens: 100, stopReason: null, totalMs: 100 },
    error: null,
    model: 'Tiny · wasm',
    loraScale: 4,
  };
}

function renderChat(messages: ChatMessage[]): string {
  // Server rendering reads a zustand store through getInitialState (useSyncExternalStore's server
  // snapshot), so the messages go into that state object, as they would into the live one.
  useConversationStore.setState({ messages });
  Object.assign(useConversationStore.getInitialState(), { messages });
  return renderToStaticMarkup(createElement(Chat));
}

/** The markup with every text node removed: what the browser would turn into elements and attributes. */
function tagsOnly(markup: string): string {
  return markup.replace(/>[^<]*</g, '><');
}

describe('model output is shown as text, never as HTML', () => {
  for (const status of ['streaming', 'done'] as const) {
    it(`an answer (${status}) with tags and javascript: links`, () => {
      const markup = renderChat([{ id: 1, role: 'user', text: HOSTILE, label: null }, answer(HOSTILE, status)]);
      // The text is there, escaped, twice (the question and the answer) …
      expect(markup.split('&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;').length - 1).toBe(2);
      expect(markup).toContain('&lt;script&gt;window.__pwned=1&lt;/script&gt;');
      expect(markup).toMatch(/class="bubble-text answer-text"[^>]*>(<span[^>]*>)?&lt;img src=x onerror=/); // by AnswerText
      // … and none of it became an element, an attribute or a link.
      const tags = tagsOnly(markup);
      expect(tags).not.toMatch(/<(img|script|iframe)\b/i);
      expect(tags).not.toMatch(/<svg[^>]*onload/i); // the app's own icons are <svg>, without handlers
      expect(tags).not.toMatch(/\son(error|load)=/i);
      expect(tags).not.toMatch(/href="javascript:/i);
      expect(markup).not.toMatch(/<a [^>]*href="javascript:/i);
    });
  }

  it('the check itself sees HTML when there is some (it can fail)', () => {
    expect(tagsOnly('<p>x<img src=x onerror="a"></p>')).toMatch(/<img\b/);
    expect(tagsOnly('<p>&lt;img src=x&gt;</p>')).not.toMatch(/<img\b/);
  });

  it('no UI code injects HTML (no dangerouslySetInnerHTML, innerHTML or insertAdjacentHTML)', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const root = join(import.meta.dirname, '..', '..', 'src');
    const files = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(ts|tsx)$/.test(f));
    expect(files.length).toBeGreaterThan(20);
    for (const file of files) {
      expect(readFileSync(join(root, file), 'utf8'), file).not.toMatch(/dangerouslySetInnerHTML|\.innerHTML\s*=|outerHTML\s*=|insertAdjacentHTML|document\.write\(/);
    }
  });
});
