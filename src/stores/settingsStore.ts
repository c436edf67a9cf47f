/**
 * Answer settings and the chosen backend/model, kept in localStorage. `null` means "the model's
 * own default" (from its bundle), so a new model brings its own defaults unless the user chose.
 */
import { create } from 'zustand';
import { createJSONStorage, persist } from 'zustand/middleware';
import type { BackendPreference, GenerationDefaults } from './engineTypes';

export const BUNDLED_MODEL_SOURCE = '/models/salmonn-tiny/';

export interface GenerationSettings {
  temperature: number | null;
  topP: number | null;
  maxNewTokens: number | null;
  repetitionPenalty: number | null;
  doSample: boolean | null;
  loraScale: number | null;
  /** Beams of beam search (1 = one sequence); deterministic answers only. */
  numBeams: number | null;
  /** Reasoning models only: most thought tokens before the answer is forced (absent or null: the model's default). */
  thinkingBudget?: number | null;
}

/** The beam counts offered in Settings (the model's default is added when it is not one of them). */
export const BEAM_CHOICES = [1, 2, 3, 4, 6, 8] as const;

export type GenerationKey = keyof GenerationSettings;

/**
 * A model download the user paused (bundles at an address only; a local folder cannot be resumed
 * after a reload). Kept across reloads: a paused download stays paused until the user resumes it.
 */
export interface SavedPausedDownload {
  source: string;
  label: string;
  backend: BackendPreference;
  variant?: string;
  loaded: number;
  total: number;
  /** 0–100 */
  percent: number;
}

interface SettingsStore extends GenerationSettings {
  backend: BackendPreference;
  /** The model to load at start-up (a URL, a site path or a Hugging Face repo id). */
  modelSource: string;
  pausedDownload: SavedPausedDownload | null;
  set<K extends GenerationKey>(key: K, value: GenerationSettings[K]): void;
  resetGeneration(): void;
  setBackend(backend: BackendPreference): void;
  setModelSource(source: string): void;
  setPausedDownload(paused: SavedPausedDownload | null): void;
}

const NO_OVERRIDES: GenerationSettings = {
  temperature: null,
  topP: null,
  maxNewTokens: null,
  repetitionPenalty: null,
  doSample: null,
  loraScale: null,
  numBeams: null,
  thinkingBudget: null,
};

export const useSettingsStore = create<SettingsStore>()(
  persist(
    (set) => ({
      ...NO_OVERRIDES,
      backend: 'auto',
      modelSource: BUNDLED_MODEL_SOURCE,
      pausedDownload: null,
      set: (key, value) => set({ [key]: value } as Partial<GenerationSettings>),
      resetGeneration: () => set(NO_OVERRIDES),
      setBackend: (backend) => set({ backend }),
      setModelSource: (modelSource) => set({ modelSource }),
      setPausedDownload: (pausedDownload) => set({ pausedDownload }),
    }),
    {
      name: 'hark-settings',
      version: 1,
      storage: createJSONStorage(() => localStorage),
      partialize: ({ temperature, topP, maxNewTokens, repetitionPenalty, doSample, loraScale, numBeams, thinkingBudget, backend, modelSource, pausedDownload }) => ({
        temperature,
        topP,
        maxNewTokens,
        repetitionPenalty,
        doSample,
        loraScale,
        numBeams,
        thinkingBudget,
        backend,
        modelSource,
        pausedDownload,
      }),
    },
  ),
);

/** The values an answer uses now: the user's choices over the model's defaults. */
export function effectiveGeneration(settings: GenerationSettings, defaults: GenerationDefaults) {
  const loraMax = Math.max(defaults.loraScale * 2, 0.0001);
  return {
    temperature: settings.temperature ?? defaults.temperature,
    topP: settings.topP ?? defaults.topP,
    maxNewTokens: settings.maxNewTokens ?? defaults.maxNewTokens,
    repetitionPenalty: settings.repetitionPenalty ?? defaults.repetitionPenalty,
    doSample: settings.doSample ?? defaults.doSample,
    loraScale: Math.min(settings.loraScale ?? defaults.loraScale, loraMax),
    numBeams: validBeams(settings.numBeams) ?? validBeams(defaults.numBeams) ?? 1,
    // Only a reasoning model has a thinking budget (its default comes from its bundle).
    ...(defaults.thinkingBudget !== undefined ? { thinkingBudget: settings.thinkingBudget ?? defaults.thinkingBudget } : {}),
  };
}

/** A beam count the engine takes (a whole number, 1 to 16), or null (settings saved before beams have none). */
function validBeams(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 16 ? value : null;
}

export type EffectiveGeneration = ReturnType<typeof effectiveGeneration>;
