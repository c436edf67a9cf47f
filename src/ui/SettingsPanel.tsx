/** Answer settings (persisted) and the backend choice. */
import { useEffect, useId, useState } from 'react';
import { useDeviceStore } from '../stores/deviceStore';
import type { BackendPreference } from '../stores/engineTypes';
import { useModelStore } from '../stores/modelStore';
import { BEAM_CHOICES, effectiveGeneration, useSettingsStore, type GenerationKey } from '../stores/settingsStore';
import { BackendAdvice } from './BackendAdvice';
import { backendName } from './format';

interface SliderProps {
  label: string;
  settingKey: Exclude<GenerationKey, 'doSample' | 'numBeams'>;
  value: number;
  defaultValue: number;
  min: number;
  max: number;
  step: number;
  digits: number;
  disabled?: boolean;
  help?: string;
  testId?: string;
}

function Slider({ label, settingKey, value, defaultValue, min, max, step, digits, disabled, help, testId }: SliderProps) {
  const id = useId();
  const set = useSettingsStore((s) => s.set);
  const isDefault = Math.abs(value - defaultValue) < step / 2;
  return (
    <div className="field">
      <div className="field-row">
        <label htmlFor={id}>{label}</label>
        <span className="field-value" aria-hidden="true">
          {value.toFixed(digits)}
        </span>
      </div>
      <input
        id={id}
        type="range"
        min={min}
        max={max}
        step={step}
        value={value}
        disabled={disabled}
        data-testid={testId}
        aria-describedby={help ? `${id}-help` : undefined}
        aria-valuetext={value.toFixed(digits)}
        onChange={(event) => set(settingKey, Number(event.target.value))}
      />
      <div className="field-row small muted">
        {help ? <span id={`${id}-help`}>{help}</span> : <span />}
        {!isDefault && (
          <button type="button" className="link-button" onClick={() => set(settingKey, null)}>
            Reset to {defaultValue.toFixed(digits)}
          </button>
        )}
      </div>
    </div>
  );
}

const MAX_TOKENS_LIMIT = 4096;

/** What is wrong with a typed number of tokens, or null when it is a whole number in range. */
export function maxTokensProblem(raw: string): string | null {
  const text = raw.trim();
  if (text === '') return 'Enter a number of tokens.';
  const n = Number(text);
  if (!Number.isFinite(n)) return `“${text}” is not a number.`;
  if (!Number.isInteger(n)) return `${text} is not a whole number.`;
  if (n < 1) return `${n} is too few: the least is 1.`;
  if (n > MAX_TOKENS_LIMIT) return `${n} is too many: the most is ${MAX_TOKENS_LIMIT}.`;
  return null;
}

function MaxTokens({ value, defaultValue }: { value: number; defaultValue: number }) {
  const id = useId();
  const set = useSettingsStore((s) => s.set);
  const [text, setText] = useState(String(value));
  useEffect(() => setText(String(value)), [value]);
  const problem = maxTokensProblem(text);
  return (
    <div className="field">
      <div className="field-row">
        <label htmlFor={id}>Max new tokens</label>
        {value !== defaultValue && (
          <button type="button" className="link-button small" onClick={() => set('maxNewTokens', null)}>
            Reset to {defaultValue}
          </button>
        )}
      </div>
      <input
        id={id}
        type="number"
        inputMode="numeric"
        min={1}
        max={MAX_TOKENS_LIMIT}
        step={1}
        value={text}
        data-testid="setting-max-new-tokens"
        aria-invalid={problem !== null}
        aria-describedby={`${id}-help${problem ? ` ${id}-problem` : ''}`}
        onChange={(event) => {
          setText(event.target.value);
          // Only a value in range is used; anything else is explained below and not applied.
          if (maxTokensProblem(event.target.value) === null) set('maxNewTokens', Number(event.target.value));
        }}
      />
      {problem && (
        <span id={`${id}-problem`} className="small field-problem" aria-live="polite" data-testid="max-new-tokens-problem">
          {problem} Answers use {value} until it is fixed.
        </span>
      )}
      <span id={`${id}-help`} className="small muted">
        The longest answer, in tokens (a token is about ¾ of a word): 1 to {MAX_TOKENS_LIMIT}.
      </span>
    </div>
  );
}

/** Beam search's width: the model's default unless chosen; deterministic answers only. */
function Beams({ value, defaultValue, sampling }: { value: number; defaultValue: number; sampling: boolean }) {
  const id = useId();
  const set = useSettingsStore((s) => s.set);
  const choices = [...new Set<number>([...BEAM_CHOICES, defaultValue])].sort((a, b) => a - b);
  return (
    <div className="field">
      <div className="field-row">
        <label htmlFor={id}>Beams</label>
        {value !== defaultValue && (
          <button type="button" className="link-button small" onClick={() => set('numBeams', null)}>
            Reset to {defaultValue}
          </button>
        )}
      </div>
      <select
        id={id}
        value={value}
        disabled={sampling}
        data-testid="setting-beams"
        aria-describedby={`${id}-help`}
        // The model's own value is stored as "the model's default", so another model brings its own.
        onChange={(event) => set('numBeams', Number(event.target.value) === defaultValue ? null : Number(event.target.value))}
      >
        {choices.map((n) => (
          <option key={n} value={n}>
            {n === defaultValue ? `${n} (model default)` : n}
          </option>
        ))}
      </select>
      <span id={`${id}-help`} className="small muted">
        {sampling && <span className="block" data-testid="beams-sampling-note">Sampling is on: beams apply to deterministic answers only.</span>}
        Beam search keeps the most likely answers-in-progress (SALMONN keeps 4) and returns the best one; more beams are slower. With 1 beam, each
        word is simply the most likely one.
      </span>
    </div>
  );
}

const THINKING_BUDGET_LIMIT = 32768;

/** What is wrong with a typed thinking budget, or null when it is a whole number from 0. */
export function thinkingBudgetProblem(raw: string): string | null {
  const text = raw.trim();
  if (text === '') return 'Enter a number of tokens (0 skips thinking).';
  const n = Number(text);
  if (!Number.isFinite(n)) return `“${text}” is not a number.`;
  if (!Number.isInteger(n)) return `${text} is not a whole number.`;
  if (n < 0) return `${n} is too few: the least is 0 (no thinking).`;
  if (n > THINKING_BUDGET_LIMIT) return `${n} is too many: the most is ${THINKING_BUDGET_LIMIT}.`;
  return null;
}

/** Reasoning models only: how many tokens the model may think before it must answer. */
function ThinkingBudget({ value, defaultValue }: { value: number; defaultValue: number }) {
  const id = useId();
  const set = useSettingsStore((s) => s.set);
  const [text, setText] = useState(String(value));
  useEffect(() => setText(String(value)), [value]);
  const problem = thinkingBudgetProblem(text);
  return (
    <div className="field">
      <div className="field-row">
        <label htmlFor={id}>Thinking budget</label>
        {value !== defaultValue && (
          <button type="button" className="link-button small" onClick={() => set('thinkingBudget', null)}>
            Reset to {defaultValue}
          </button>
        )}
      </div>
      <input
        id={id}
        type="number"
        inputMode="numeric"
        min={0}
        max={THINKING_BUDGET_LIMIT}
        step={1}
        value={text}
        data-testid="setting-thinking-budget"
        aria-invalid={problem !== null}
        aria-describedby={`${id}-help${problem ? ` ${id}-problem` : ''}`}
        onChange={(event) => {
          setText(event.target.value);
          if (thinkingBudgetProblem(event.target.value) === null) set('thinkingBudget', Number(event.target.value));
        }}
      />
      {problem && (
        <span id={`${id}-problem`} className="small field-problem" aria-live="polite" data-testid="thinking-budget-problem">
          {problem} Answers use {value} until it is fixed.
        </span>
      )}
      <span id={`${id}-help`} className="small muted">
        This model thinks before it answers; its thoughts are shown folded under the answer. After this many thought
        tokens it is told to stop thinking and answer (0: answer at once).
      </span>
    </div>
  );
}

function BackendChoice() {
  const backend = useSettingsStore((s) => s.backend);
  const info = useModelStore((s) => s.info);
  const status = useModelStore((s) => s.status);
  const load = useModelStore((s) => s.load);
  const device = useDeviceStore((s) => s.state);
  const webgpuAvailable = device.status === 'ready' ? device.report.webgpu.available : true;
  const autoReason = device.status === 'ready' ? `${backendName(device.report.recommended)}. ${device.report.recommendationReason}` : null;
  const options: { value: BackendPreference; label: string; disabled?: boolean }[] = [
    { value: 'auto', label: 'Automatic' },
    { value: 'webgpu', label: 'WebGPU', disabled: !webgpuAvailable },
    { value: 'wasm', label: 'WebAssembly (CPU)' },
  ];
  // Says what runs now, or what is being loaded, in the same words as the header and the device
  // report: "Automatic would use …" only where Automatic is what was chosen.
  const backendNote = (): string => {
    if (info && status === 'ready') return `Running on ${backendName(info.backend)}. ${info.backendReason}`;
    const loading = status === 'loading';
    if (backend !== 'auto') return `${loading ? 'Loading the model on' : 'Chosen:'} ${backendName(backend)}.`;
    if (autoReason) return `${loading ? 'Loading the model with Automatic, which uses' : 'Automatic would use'} ${autoReason}`;
    return 'Checking this device…';
  };
  return (
    <fieldset className="field backend" data-testid="backend-setting">
      <legend>Backend</legend>
      <div className="segmented">
        {options.map((option) => (
          <label key={option.value} className={option.disabled ? 'disabled' : undefined}>
            <input
              type="radio"
              name="backend"
              value={option.value}
              checked={backend === option.value}
              disabled={option.disabled || status === 'loading'}
              onChange={() => {
                useSettingsStore.getState().setBackend(option.value);
                void load(undefined, { backend: option.value });
              }}
            />
            <span>{option.label}</span>
          </label>
        ))}
      </div>
      <p className="small muted" data-testid="backend-reason">
        {backendNote()}
      </p>
      {info && status === 'ready' && <BackendAdvice advice={info.backendAdvice} testId="backend-advice" />}
      <p className="small muted">Changing the backend reloads the model.</p>
    </fieldset>
  );
}

export function SettingsPanel() {
  const info = useModelStore((s) => s.info);
  const settings = useSettingsStore();
  const defaults = info?.defaults ?? {
    temperature: 1,
    topP: 0.9,
    maxNewTokens: 200,
    repetitionPenalty: 1,
    doSample: false,
    loraScale: 1,
    topK: 0,
    seed: 0,
    stopTokenIds: [],
    numBeams: 1,
    lengthPenalty: 1,
  };
  const values = effectiveGeneration(settings, defaults);
  const loraMax = Math.max(0.1, defaults.loraScale * 2);
  const loraStep = loraMax / 40;
  const samplingId = useId();

  return (
    <section className="panel-section" aria-labelledby="settings-heading">
      <h2 id="settings-heading" className="section-title">
        Answer settings
      </h2>
      {/* Only models with LoRA (SALMONN) have a scale to set; for the others it would do nothing. */}
      {(info?.capabilities.hasLora ?? true) && (
        <Slider
          label="LoRA scale"
          settingKey="loraScale"
          value={values.loraScale}
          defaultValue={defaults.loraScale}
          min={0}
          max={loraMax}
          step={loraStep}
          digits={2}
          testId="lora-scale"
          help="Lower values can wake up abilities such as storytelling (SALMONN's activation tuning)."
        />
      )}
      <MaxTokens value={values.maxNewTokens} defaultValue={defaults.maxNewTokens} />
      {info?.reasoning && values.thinkingBudget !== undefined && (
        <ThinkingBudget value={values.thinkingBudget} defaultValue={info.reasoning.defaultThinkingBudget} />
      )}
      <div className="field checkbox">
        <input
          id={samplingId}
          type="checkbox"
          checked={values.doSample}
          data-testid="setting-sampling"
          onChange={(event) => settings.set('doSample', event.target.checked)}
        />
        <label htmlFor={samplingId}>
          Sampling
          <span className="small muted block">
            {values.doSample
              ? 'Varied answers: a new draw every time.'
              : values.numBeams > 1
                ? `Off: the best of ${values.numBeams} candidate answers (repeatable).`
                : 'Off: always the most likely next word (repeatable).'}
          </span>
        </label>
      </div>
      {/* A reasoning model decodes one sequence (its thinking budget is enforced on it): no beams. */}
      {!info?.reasoning && <Beams value={values.numBeams} defaultValue={defaults.numBeams} sampling={values.doSample} />}
      <Slider
        label="Temperature"
        settingKey="temperature"
        value={values.temperature}
        defaultValue={defaults.temperature}
        min={0.05}
        max={2}
        step={0.05}
        digits={2}
        disabled={!values.doSample}
        help="Higher is more adventurous (sampling only)."
      />
      <Slider
        label="Top-p"
        settingKey="topP"
        value={values.topP}
        defaultValue={defaults.topP}
        min={0.05}
        max={1}
        step={0.05}
        digits={2}
        disabled={!values.doSample}
        help="Sample only from the most likely words that cover this share (sampling only)."
      />
      <Slider
        label="Repetition penalty"
        settingKey="repetitionPenalty"
        value={values.repetitionPenalty}
        defaultValue={defaults.repetitionPenalty}
        min={1}
        max={2}
        step={0.05}
        digits={2}
        help="Above 1 discourages repeating words."
      />
      <BackendChoice />
      <button type="button" className="button subtle small" data-testid="reset-answer-settings" onClick={() => settings.resetGeneration()}>
        Reset to the model’s defaults
      </button>
    </section>
  );
}
