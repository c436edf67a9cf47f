/**
 * The app shows only the controls a model has: the LoRA scale slider (and the LoRA scale in an
 * answer's settings) for a model with LoRA (SALMONN), none for a model without (ALARM's Qwen3).
 * The real <SettingsPanel/> and <Chat/> rendered by React (react-dom/server) from the real model
 * and conversation stores, as the app mounts them.
 */
import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { afterEach, describe, expect, it } from 'vitest';
import type { ModelInfo } from '../../src/stores/engineTypes';
import { useConversationStore, type ChatMessage } from '../../src/stores/conversationStore';
import { useModelStore } from '../../src/stores/modelStore';
import { Chat } from '../../src/ui/Chat';
import { SettingsPanel } from '../../src/ui/SettingsPanel';

function modelInfo(hasLora: boolean): ModelInfo {
  return {
    name: hasLora ? 'salmonn-tiny' : 'alarm-tiny',
    label: hasLora ? 'SALMONN' : 'ALARM',
    description: '',
    randomWeights: true,
    variant: 'fp32',
    backend: 'wasm',
    backendReason: 'WebAssembly (CPU) was chosen in Settings.',
    backendAdvice: null,
    prefill: { chunk: null, check: 'not-needed', maxError: null, checkMs: null, summary: '' },
    decode: { captured: false, embeddingInStep: false, summary: 'Each answer token is an ordinary decoder run on WebAssembly.' },
    tasks: { asr: 'Recognize the speech.' },
    audioMarker: hasLora ? '<Speech><SpeechHere></Speech>' : '<AudioHere>',
    defaults: {
      maxNewTokens: 200, doSample: false, temperature: 1, topK: 0, topP: 0.9, repetitionPenalty: 1, stopTokenIds: [2],
      loraScale: hasLora ? 4 : 0, seed: 0, numBeams: 1, lengthPenalty: 1,
    },
    maxPositions: 2048,
    localization: null,
    reasoning: null,
    capabilities: {
      hasLora,
      encoders: [{ name: 'whisper', type: 'whisper' }],
      fusion: hasLora ? 'window-qformer' : 'sum',
      llm: hasLora ? 'llama' : 'qwen3',
      localizes: hasLora,
    },
    loadMs: 1,
    storedOnDevice: true,
  };
}

const answer: ChatMessage = {
  id: 2,
  role: 'assistant',
  text: 'A dog barks.',
  status: 'done',
  stats: { tokens: 4, timeToFirstTokenMs: 10, tokensPerSecond: 5, promptTokens: 100, stopReason: null, totalMs: 100 },
  error: null,
  model: 'Tiny · wasm',
  loraScale: 0,
  settings: { loraScale: 0, doSample: false, temperature: 1, topP: 0.9, maxNewTokens: 200, repetitionPenalty: 1, seed: 0, numBeams: 1 },
};

// Server rendering reads a zustand store through getInitialState (useSyncExternalStore's server
// snapshot), so the state goes into that object too, as it would into the live one.
function setModel(info: ModelInfo | null): void {
  const state = { info, status: info ? ('ready' as const) : ('idle' as const) };
  useModelStore.setState(state);
  Object.assign(useModelStore.getInitialState(), state);
}
function setMessages(messages: ChatMessage[]): void {
  useConversationStore.setState({ messages });
  Object.assign(useConversationStore.getInitialState(), { messages });
}
const settingsMarkup = () => renderToStaticMarkup(createElement(SettingsPanel));
const chatMarkup = () => renderToStaticMarkup(createElement(Chat));

describe('controls follow what the model has', () => {
  afterEach(() => {
    setModel(null);
    setMessages([]);
  });

  it('a model with LoRA gets the LoRA scale slider and its scale in an answer\'s settings', () => {
    setModel(modelInfo(true));
    expect(settingsMarkup()).toContain('data-testid="lora-scale"');
    setMessages([{ id: 1, role: 'user', text: 'What is it?', label: null }, answer]);
    expect(chatMarkup()).toContain('data-testid="answer-settings">LoRA scale 0.00 · greedy');
  });

  it('a model without LoRA gets neither', () => {
    setModel(modelInfo(false));
    const markup = settingsMarkup();
    expect(markup).not.toContain('lora-scale');
    expect(markup).not.toContain('LoRA');
    // the rest of the settings are still there
    expect(markup).toContain('Repetition penalty');
    setMessages([{ id: 1, role: 'user', text: 'What is it?', label: null }, answer]);
    const chat = chatMarkup();
    expect(chat).toContain('data-testid="answer-settings">greedy (always the most likely word) · at most 200 new tokens');
    expect(chat).not.toContain('LoRA');
  });
});
