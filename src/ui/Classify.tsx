/**
 * "Classify": ask a question whose answer must be one of a few labels (an emotion, speech or not,
 * how many speakers…). The model scores every label; the chosen one enters the conversation as
 * the answer, with a bar per label under it (LabelBars). The request goes through the
 * conversation store, so it waits its turn in the engine lane like any answer.
 */
import { useId, useState } from 'react';
import { useAudioStore } from '../stores/audioStore';
import { useConversationStore, type LabelChoice } from '../stores/conversationStore';
import { useLocalizeStore } from '../stores/localizeStore';
import { useModelStore } from '../stores/modelStore';
import { LABEL_PRESETS, formatLabels, formatPercent, parseLabels } from './classifyLabels';

const CUSTOM = 'custom';

/** Why Classify cannot run now, in words that say what to do; null when it can. */
function classifyBlockedReason(state: { answering: boolean; finding: boolean; modelStatus: string; audioStatus: string; hasRecording: boolean }): string | null {
  if (state.answering) return 'Wait for the answer being written to finish (or stop it), then press Classify.';
  if (state.finding) return 'Wait for the search in the recording to finish, then press Classify.';
  if (state.modelStatus !== 'ready') return state.modelStatus === 'loading' || state.modelStatus === 'idle' ? 'The model is loading: Classify works once it is ready.' : 'No model is loaded: load one under Models, then classify.';
  if (!state.hasRecording) return 'There is nothing to classify yet: record, open a file or pick a sample first.';
  if (state.audioStatus === 'error') return 'The model could not listen to this recording: open another one, then classify.';
  if (state.audioStatus === 'stopped') return 'Listening to the recording was stopped: press “Listen again”, then classify.';
  if (state.audioStatus !== 'ready') return 'The recording is being prepared: Classify works once it is ready.';
  return null;
}

export function Classify() {
  const classify = useConversationStore((s) => s.classify);
  const stop = useConversationStore((s) => s.stop);
  const answering = useConversationStore((s) => s.phase !== 'idle');
  const finding = useLocalizeStore((s) => s.phase !== 'idle');
  const modelStatus = useModelStore((s) => s.status);
  const audioStatus = useAudioStore((s) => s.status);
  const hasRecording = useAudioStore((s) => s.recording !== null);
  const first = LABEL_PRESETS[0]!;
  const [question, setQuestion] = useState(first.question);
  const [labelText, setLabelText] = useState(formatLabels(first.labels));
  const [questionMissing, setQuestionMissing] = useState(false);
  const ids = useId();

  const parsed = parseLabels(labelText);
  // The preset shown is the one whose labels are in the field; anything else is the person's own set.
  const presetKey = LABEL_PRESETS.find((p) => formatLabels(p.labels) === labelText.trim())?.key ?? CUSTOM;
  const blocked = classifyBlockedReason({ answering, finding, modelStatus, audioStatus, hasRecording });

  const pickPreset = (key: string) => {
    const preset = LABEL_PRESETS.find((p) => p.key === key);
    if (!preset) return;
    setQuestion(preset.question);
    setLabelText(formatLabels(preset.labels));
    setQuestionMissing(false);
  };

  const submit = () => {
    if (blocked || parsed.labels === null) return;
    if (question.trim() === '') {
      setQuestionMissing(true);
      document.getElementById(`${ids}-question`)?.focus();
      return;
    }
    const preset = LABEL_PRESETS.find((p) => p.key === presetKey);
    void classify(question, parsed.labels, { label: preset ? `Classify: ${preset.name}` : 'Classify' });
  };

  let status: string;
  let state: string;
  if (parsed.error !== null) {
    status = parsed.error;
    state = 'invalid';
  } else if (questionMissing && question.trim() === '') {
    status = 'Type the question first, for example “What emotion does the speaker express?”.';
    state = 'invalid';
  } else if (blocked) {
    status = blocked;
    state = 'blocked';
  } else {
    status = `The answer will be one of these ${parsed.labels.length} labels, each shown with its probability.`;
    state = 'ready';
  }

  return (
    <details className="classify" data-testid="classify">
      <summary data-testid="classify-toggle">Classify: answer from a set of labels</summary>
      <p className="muted small">
        Pick a label set or type your own labels: the model scores every label as the answer to your question, and the most likely one becomes the
        answer, with each label’s probability under it.
      </p>
      <form
        className="classify-form"
        aria-label="Classify the recording"
        onSubmit={(event) => {
          event.preventDefault();
          submit();
        }}
        onKeyDown={(event) => {
          // As in the question box: Escape stops the answer being chosen (or written).
          if (event.key === 'Escape' && answering) {
            event.preventDefault();
            stop();
          }
        }}
      >
        <label htmlFor={`${ids}-preset`}>Label set</label>
        <select id={`${ids}-preset`} data-testid="classify-preset" value={presetKey} onChange={(event) => pickPreset(event.target.value)}>
          {LABEL_PRESETS.map((preset) => (
            <option key={preset.key} value={preset.key}>
              {preset.name}
            </option>
          ))}
          <option value={CUSTOM} disabled={presetKey !== CUSTOM}>
            Your own labels
          </option>
        </select>
        <label htmlFor={`${ids}-question`}>Question</label>
        <input
          id={`${ids}-question`}
          type="text"
          data-testid="classify-question"
          value={question}
          autoComplete="off"
          maxLength={500}
          aria-invalid={questionMissing && question.trim() === ''}
          aria-describedby={`${ids}-status`}
          onChange={(event) => setQuestion(event.target.value)}
        />
        <label htmlFor={`${ids}-labels`}>Labels, separated by commas</label>
        <input
          id={`${ids}-labels`}
          type="text"
          data-testid="classify-labels"
          value={labelText}
          autoComplete="off"
          spellCheck={false}
          aria-invalid={parsed.error !== null}
          aria-describedby={`${ids}-status`}
          onChange={(event) => setLabelText(event.target.value)}
        />
        {/* aria-disabled, not disabled: a disabled button loses keyboard focus (to <body>) while the
            answer it started is being chosen; this one keeps it, and says why it waits. */}
        <button
          type="submit"
          className="button primary"
          data-testid="classify-button"
          aria-disabled={blocked !== null || parsed.error !== null}
          aria-describedby={`${ids}-status`}
        >
          Classify
        </button>
      </form>
      <p id={`${ids}-status`} className={state === 'invalid' ? 'classify-status error' : 'classify-status muted small'} data-testid="classify-status" data-state={state}>
        {status}
      </p>
    </details>
  );
}

/** A bar per label with its probability in words ("happy 62%"), in the order the labels were given. */
export function LabelBars({ choices, chosen }: { choices: LabelChoice[]; chosen: string }) {
  return (
    <ul className="label-bars" role="list" aria-label="Probability of each label" data-testid="label-bars">
      {choices.map((choice) => (
        <li
          key={choice.label}
          className={choice.label === chosen ? 'label-bar chosen' : 'label-bar'}
          data-testid="label-bar"
          data-label={choice.label}
          data-probability={choice.probability}
        >
          <span className="label-bar-name">{choice.label}</span>{' '}
          <span className="label-bar-track" aria-hidden="true">
            <span className="label-bar-fill" style={{ width: `${Math.min(100, Math.max(0, choice.probability * 100))}%` }} />
          </span>
          <span className="label-bar-value">{formatPercent(choice.probability)}</span>
        </li>
      ))}
    </ul>
  );
}
