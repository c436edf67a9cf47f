/**
 * What `HarkEngine.localize` takes and returns (and what crosses the worker boundary).
 * The method is documented in models/salmonn/localize.py; every default comes from the bundle's
 * manifest (`localization`), and every option here overrides it for one request.
 */

export interface LocalizeOptions {
  /** Width of the returned interval in seconds (clipped to the recording). */
  widthSeconds?: number;
  /** Steering strength: alpha · v is added at the last position, then rescaled to its norm. */
  alpha?: number;
  /** Centred moving average over this many audio tokens (odd; 1 = none). */
  smoothTokens?: number;
  /** LoRA scale for every run (default: the model's default). */
  loraScale?: number;
}

export interface LocalizeProgress {
  /** Graph runs done so far, of `total` (2 prompt runs + 3 probe runs). */
  done: number;
  total: number;
  /** What runs now, for a status line. */
  stage: 'focus prompt' | 'neutral prompt' | 'steering' | 'read-out';
}

export interface LocalizeRequest extends LocalizeOptions {
  signal?: AbortSignal;
  onProgress?: (progress: LocalizeProgress) => void;
  /** Diagnostics (parity tests): also return the steering vector, [layers × hidden]. */
  captureVector?: boolean;
}

export interface CurvePoint {
  /** Centre of the audio token, seconds from the start of the recording. */
  time: number;
  /** Smoothed steered − unsteered attention on that token (mean over heads and probed layers). */
  delta: number;
}

export interface LocalizationResult {
  /** The event the user asked about, as given. */
  event: string;
  /** Seconds. */
  start: number;
  end: number;
  /** Share of the positive Δ mass inside [start, end], 0..1. */
  confidence: number;
  /** Δ per audio token, in time order. */
  curve: CurvePoint[];
  /** What was used (after defaults). */
  layers: number[];
  alpha: number;
  widthSeconds: number;
  smoothTokens: number;
  loraScale: number;
  /** Wall time of the whole request. */
  ms: number;
}

/** The bundle's localization settings (manifest `localization`), as ModelInfo.localization reports them. */
export interface LocalizationDefaults {
  /** Probed layers (consecutive, later half of the stack). */
  layers: number[];
  alpha: number;
  widthSeconds: number;
  smoothTokens: number;
  /** The focus instruction; `{event}` stands for the user's text. */
  focusInstruction: string;
  /** The neutral instruction (also the query that is read out). */
  neutralInstruction: string;
}
