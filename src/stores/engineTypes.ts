/**
 * Engine types as the UI sees them, derived from the worker client's signatures so that the UI
 * and the stores never import src/engine directly (see test/unit/architecture.test.ts).
 */
import type { EngineClient } from '../engineClient';

export type ModelInfo = Awaited<ReturnType<EngineClient['loadModel']>>;
export type AudioInfo = Awaited<ReturnType<EngineClient['setAudio']>>['info'];
export type AnswerResult = Awaited<ReturnType<EngineClient['ask']>>;
export type TokenEvent = Parameters<NonNullable<Parameters<EngineClient['ask']>[2]>>[0];
export type ProgressInfo = Parameters<NonNullable<Parameters<EngineClient['loadModel']>[2]>>[0];
export type ResumeTurn = Parameters<EngineClient['resumeConversation']>[0][number];
export type BundleSummary = Awaited<ReturnType<EngineClient['listModels']>>[number];
export type BackendPreference = NonNullable<NonNullable<Parameters<EngineClient['loadModel']>[1]>['backend']>;
export type Backend = ModelInfo['backend'];
export type GenerationDefaults = ModelInfo['defaults'];
export type StopReason = AnswerResult['stats']['stopReason'];
export type ClassifyResult = Awaited<ReturnType<EngineClient['classify']>>;
/** One label of a classify() answer, with its probability (the labels' probabilities sum to 1). */
export type LabelProbability = ClassifyResult['choices'][number];
export type LocalizationResult = Awaited<ReturnType<EngineClient['localize']>>;
export type LocalizeOptions = NonNullable<Parameters<EngineClient['localize']>[1]>;
export type LocalizeProgress = Parameters<NonNullable<Parameters<EngineClient['localize']>[2]>>[0];
/** The loaded model's localization settings; null when its bundle has no steering probe. */
export type LocalizationDefaults = ModelInfo['localization'];

/** A HarkError after its trip over the worker boundary (a real HarkError, matched by shape). */
export interface EngineError {
  name: 'HarkError';
  code: string;
  message: string;
  details?: Record<string, string | number | boolean>;
}

export function isEngineError(error: unknown): error is EngineError {
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as { name?: unknown }).name === 'HarkError' &&
    typeof (error as { code?: unknown }).code === 'string' &&
    typeof (error as { message?: unknown }).message === 'string'
  );
}

export function errorCode(error: unknown): string | undefined {
  return isEngineError(error) ? error.code : undefined;
}

/** A message a person can read: the engine's own message, or a generic wrapper. */
export function errorMessage(error: unknown, fallback = 'Something went wrong'): string {
  if (isEngineError(error)) return error.message;
  if (error instanceof Error && error.message) return error.message;
  if (typeof error === 'string' && error) return error;
  return `${fallback}.`;
}
