/** The conversation about the recording: task presets, the question box, streamed answers. */
import { useEffect, useMemo, useRef, useState, type KeyboardEvent } from 'react';
import { useAudioStore } from '../stores/audioStore';
import { useConversationStore, withoutAudioSlot, type ChatMessage } from '../stores/conversationStore';
import { useHistoryStore } from '../stores/historyStore';
import { useLocalizeStore } from '../stores/localizeStore';
import { useModelStore } from '../stores/modelStore';
import { useNoticeStore } from '../stores/noticeStore';
import { answerStatsParts, decodingSummary } from '../stores/beams';
import { AnswerText } from './AnswerText';
import { Classify, LabelBars } from './Classify';
import { formatMs } from './format';
import { QUESTION_BOX_ID, focusQuestionBox } from './focus';
import { confirmDelete } from './HistoryPanel';
import { DownloadIcon, PlusIcon, SendIcon, StopIcon, TrashIcon } from './Icons';
import { fillPrompt, taskPresets, type TaskPreset } from './tasks';

type Assistant = Extract<ChatMessage, { role: 'assistant' }>;

const STOP_REASONS: Record<string, string> = {
  'stop-token': 'finished',
  'max-tokens': 'reached the length limit',
  cancelled: 'stopped',
  'context-full': 'conversation is full',
};

function AnswerMeta({ message }: { message: Assistant }) {
  const { stats } = message;
  const parts: string[] = [];
  if (message.choices) {
    // A label-set answer generates nothing: what it was chosen from, and how long it took.
    parts.push(`chosen from ${message.choices.length} labels`);
    if (stats.totalMs !== null) parts.push(`took ${formatMs(stats.totalMs)}`);
    return (
      <p className="answer-meta" data-testid="answer-stats">
        {parts.join(' · ')}
      </p>
    );
  }
  parts.push(...answerStatsParts(stats, message.status, formatMs));
  if (stats.stopReason) parts.push(STOP_REASONS[stats.stopReason] ?? stats.stopReason);
  return (
    <p className="answer-meta" data-testid="answer-stats">
      {parts.join(' · ')}
    </p>
  );
}

/**
 * "LoRA scale 0.50 · greedy · at most 200 new tokens · repetition penalty 1.00"; without the LoRA
 * scale for a model that has no LoRA (the scale did nothing).
 */
function describeSettings(message: Assistant, hasLora: boolean): string {
  const settings = message.settings;
  if (!settings) return `LoRA scale ${message.loraScale.toFixed(2)} (the other settings of this older answer were not recorded)`;
  const decoding = decodingSummary(settings);
  const thinking = settings.thinkingBudget !== undefined ? ` · thinking budget ${settings.thinkingBudget} tokens` : '';
  return `${hasLora ? `LoRA scale ${settings.loraScale.toFixed(2)} · ` : ''}${decoding} · at most ${settings.maxNewTokens} new tokens${thinking} · repetition penalty ${settings.repetitionPenalty.toFixed(2)}${message.model ? ` · ${message.model}` : ''}`;
}

/** Copy, Regenerate (the last answer) and the settings that produced it, under a finished answer. */
function AnswerActions({ message, isLast, busy }: { message: Assistant; isLast: boolean; busy: boolean }) {
  const regenerate = useConversationStore((s) => s.regenerate);
  const hasLora = useModelStore((s) => s.info?.capabilities.hasLora ?? true);
  const announce = useNoticeStore((s) => s.announce);
  const showError = useNoticeStore((s) => s.showError);
  const [copied, setCopied] = useState(false);
  const copy = () => {
    if (!navigator.clipboard?.writeText) {
      showError('answer', new Error('This browser does not let the page copy: select the answer’s text and copy it yourself.'));
      return;
    }
    navigator.clipboard.writeText(message.text).then(
      () => {
        setCopied(true);
        announce('The answer was copied.');
        setTimeout(() => setCopied(false), 2000);
      },
      () => showError('answer', new Error('The browser refused to copy: select the answer’s text and copy it yourself.')),
    );
  };
  return (
    <div className="answer-actions">
      <button type="button" className="link-button small" data-testid="copy-answer" disabled={message.text === ''} onClick={copy}>
        {copied ? 'Copied' : 'Copy'}
      </button>
      {/* Regenerate asks again in words; a label-set answer is asked again with Classify. */}
      {isLast && !message.choices && (
        <button
          type="button"
          className="link-button small"
          data-testid="regenerate-answer"
          disabled={busy}
          aria-description="Asks the same question again with the current settings, in place of this answer"
          onClick={() => void regenerate()}
        >
          Regenerate
        </button>
      )}
      <details className="answer-settings small">
        <summary>Settings</summary>
        <p className="muted" data-testid="answer-settings">
          {describeSettings(message, hasLora)}
        </p>
      </details>
    </div>
  );
}

/**
 * A reasoning model's thoughts: while it thinks they stream here (open, under the still-empty
 * answer), then they fold away under the answer as "Thoughts · N tokens" (a native
 * <details>/<summary>: Enter or Space opens it, screen readers announce it as collapsed).
 */
function Thoughts({ message, answerNumber }: { message: Assistant; answerNumber: number }) {
  if (message.thoughts === undefined) return null;
  const live = (message.status === 'waiting' || message.status === 'streaming') && message.text === '' && message.forcedClose === undefined;
  const tokens = message.thinkingTokens ?? 0;
  const count = `${tokens} token${tokens === 1 ? '' : 's'}`;
  return (
    <details className="thoughts" open={live} data-testid={`thoughts-${answerNumber}`} data-state={live ? 'thinking' : 'done'} data-tokens={tokens}>
      <summary>
        {live ? `Thinking… · ${count}` : `Thoughts · ${count}`}
        {message.forcedClose && <span className="muted"> · cut at the thinking budget</span>}
      </summary>
      <p className="thoughts-text" data-testid={`thoughts-text-${answerNumber}`}>
        {message.thoughts === '' && !live ? '(no thoughts)' : message.thoughts}
      </p>
    </details>
  );
}

function Thread({ messages, busy }: { messages: ChatMessage[]; busy: boolean }) {
  const end = useRef<HTMLDivElement>(null);
  const last = messages.at(-1);
  const lastText = last?.role === 'assistant' ? last.text.length : 0;
  useEffect(() => {
    const reduce = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    end.current?.scrollIntoView({ block: 'nearest', behavior: reduce ? 'auto' : 'smooth' });
  }, [messages.length, lastText]);

  let answerNumber = 0;
  return (
    <>
    <ol className="thread" aria-label="Questions and answers">
      {messages.map((message) => {
        if (message.role === 'divider') {
          return (
            <li key={message.id} className="thread-divider">
              <span>{message.text}</span>
            </li>
          );
        }
        if (message.role === 'user') {
          return (
            <li key={message.id} className="bubble user">
              <span className="visually-hidden">You asked: </span>
              {message.label && <span className="bubble-label">{message.label}</span>}
              <p className="bubble-text">{message.text}</p>
            </li>
          );
        }
        answerNumber += 1;
        return (
          <li key={message.id} className={message.choices ? 'bubble assistant with-bars' : 'bubble assistant'} data-state={message.status} aria-busy={message.status === 'waiting' || message.status === 'streaming'}>
            <span className="visually-hidden">Hark answered: </span>
            {/* Model text is always a React text node: never parsed as HTML. */}
            <AnswerText message={message} testId={`answer-${answerNumber}`} />
            <Thoughts message={message} answerNumber={answerNumber} />
            {message.choices && message.status === 'done' && <LabelBars choices={message.choices} chosen={message.text} />}
            {message.status === 'error' && message.error && <p className="answer-error">{message.error}</p>}
            {message.status === 'stopped' && message.text === '' && <p className="muted">Stopped before the first word.</p>}
            <AnswerMeta message={message} />
            {(message.status === 'done' || message.status === 'stopped') && (
              <AnswerActions message={message} isLast={message === messages.at(-1)} busy={busy} />
            )}
          </li>
        );
      })}
    </ol>
    <div ref={end} className="thread-end" />
    </>
  );
}

function Presets({ presets, disabled, onPick }: { presets: TaskPreset[]; disabled: boolean; onPick: (preset: TaskPreset) => void }) {
  const [showAll, setShowAll] = useState(false);
  const primary = presets.filter((p) => p.primary);
  const visible = showAll ? presets : primary.length > 0 ? primary : presets.slice(0, 8);
  const hidden = presets.length - visible.length;
  return (
    <div className="presets">
      <ul className="chip-list" aria-label="Tasks">
        {visible.map((preset) => (
          <li key={preset.key}>
            <button
              type="button"
              className="chip task"
              data-testid={`preset-${preset.key}`}
              disabled={disabled}
              title={preset.shown}
              onClick={() => onPick(preset)}
            >
              {preset.name}
            </button>
          </li>
        ))}
        {(hidden > 0 || showAll) && (
          <li>
            <button type="button" className="chip ghost" aria-expanded={showAll} onClick={() => setShowAll(!showAll)}>
              {showAll ? 'Fewer tasks' : `More tasks (${hidden})`}
            </button>
          </li>
        )}
      </ul>
    </div>
  );
}

export function Chat() {
  const messages = useConversationStore((s) => s.messages);
  const phase = useConversationStore((s) => s.phase);
  const draft = useConversationStore((s) => s.draft);
  const setDraft = useConversationStore((s) => s.setDraft);
  const ask = useConversationStore((s) => s.ask);
  const stop = useConversationStore((s) => s.stop);
  const newConversation = useConversationStore((s) => s.newConversation);
  const engineTurns = useConversationStore((s) => s.engineTurns);
  const info = useModelStore((s) => s.info);
  const modelStatus = useModelStore((s) => s.status);
  const audioStatus = useAudioStore((s) => s.status);
  const hasRecording = useAudioStore((s) => s.recording !== null);
  const announce = useNoticeStore((s) => s.announce);
  const saved = useHistoryStore((s) => s.entries.find((entry) => entry.id === s.currentId) ?? null);
  const exportToFile = useHistoryStore((s) => s.exportToFile);
  const removeConversation = useHistoryStore((s) => s.remove);
  const input = useRef<HTMLTextAreaElement>(null);
  const [hint, setHint] = useState<string | null>(null);
  /** "Find in recording" runs: the engine does one thing at a time, so questions wait for it. */
  const finding = useLocalizeStore((s) => s.phase !== 'idle');

  const presets = useMemo(() => (info ? taskPresets(info.tasks, info.audioMarker) : []), [info]);
  const ready = modelStatus === 'ready' && audioStatus === 'ready';
  const answering = phase !== 'idle';

  const queued = useConversationStore((s) => s.queued);
  const queue = useConversationStore((s) => s.queue);
  const unqueue = useConversationStore((s) => s.unqueue);

  /**
   * Why a question cannot go out now: `until` when it will be sent by itself once that is done,
   * `blocked` when the person has to do something first. Null: it can be sent.
   */
  const notYet = (): { until: string } | { blocked: string } | null => {
    if (phase === 'stopping') return { until: 'the answer has stopped' };
    if (answering) return { until: 'this answer is finished' };
    if (finding) return { until: 'the search in the recording has finished' };
    if (modelStatus === 'error' || modelStatus === 'paused') return { blocked: 'No model is loaded: load one under Models, then ask again.' };
    if (!hasRecording && audioStatus !== 'decoding') return { blocked: 'There is nothing to ask about yet: record, open a file or pick a sample first.' };
    if (audioStatus === 'error') return { blocked: 'The model could not listen to this recording: open another one, then ask again.' };
    if (audioStatus === 'stopped') return { blocked: 'Listening to the recording was stopped: press “Listen again” (or open another recording), then ask.' };
    if (modelStatus !== 'ready') return { until: 'the model has loaded' };
    if (audioStatus !== 'ready') return { until: 'the recording is ready' };
    return null;
  };

  const send = () => {
    if (draft.trim() === '') return;
    if (queued) {
      const text = 'One question is already waiting: it is sent first. Cancel it to ask this one instead.';
      setHint(text);
      announce(text);
      return;
    }
    const wait = notYet();
    if (wait === null) {
      setHint(null);
      void ask(draft, { fromDraft: true });
    } else if ('until' in wait) {
      setHint(null);
      queue(draft, { fromDraft: true });
      announce(`Your question will be sent when ${wait.until}.`);
    } else {
      setHint(wait.blocked);
      announce(wait.blocked);
    }
  };

  const pick = (preset: TaskPreset) => {
    if (preset.needsInput) {
      if (draft.trim() === '') {
        const text = `Type what to look for (for example “the time” or “the place”), then press “${preset.name}” again.`;
        setHint(text);
        announce(text);
        input.current?.focus();
        return;
      }
      setHint(null);
      // The chip is disabled while the answer is written: keep focus where the person continues.
      focusQuestionBox();
      void ask(fillPrompt(preset.prompt, draft), { label: preset.name, fromDraft: true });
      return;
    }
    setHint(null);
    focusQuestionBox();
    void ask(preset.prompt, { label: preset.name });
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      send();
    } else if (event.key === 'Escape' && answering) {
      event.preventDefault();
      stop();
    }
  };

  const wait = notYet();
  /**
   * What the queued question waits for. Listening stopped is a wait the person must end ("Listen
   * again" sends it once heard): said so, rather than the vague "when it can be", which read as
   * stuck after a Stop during a long recording.
   */
  const queuedWhen =
    wait && 'until' in wait
      ? `when ${wait.until}`
      : audioStatus === 'stopped'
        ? 'once the recording has been listened to: press “Listen again” (or open another recording)'
        : 'when it can be';

  let placeholder = 'Ask about the recording…';
  if (!hasRecording) placeholder = 'Record or open audio first, then ask about it…';
  else if (engineTurns > 0) placeholder = 'Ask a follow-up…';

  let waitingNote: string | null = null;
  if (!ready && !answering) {
    if (modelStatus === 'loading' || modelStatus === 'idle') waitingNote = 'The model is loading: ask now, and your question is sent when it is ready.';
    else if (modelStatus === 'error') waitingNote = 'No model is loaded: load one under Models.';
    else if (modelStatus === 'paused') waitingNote = 'The model’s download is paused: resume it under Models to ask.';
    else if (!hasRecording) waitingNote = 'Record, drop a file or pick a sample to start.';
    else if (audioStatus === 'encoding' || audioStatus === 'decoding' || audioStatus === 'waiting-model') waitingNote = 'Listening to the recording: ask now, and your question is sent when it is ready.';
  }

  return (
    <section className="card chat-card" aria-labelledby="chat-heading">
      <div className="card-header">
        <h2 id="chat-heading" className="card-title">
          Conversation
        </h2>
        <div className="card-actions">
          {saved && (
            <>
              <button
                type="button"
                className="icon-button"
                data-testid="export-conversation"
                title="Export"
                aria-label="Export this conversation with its recording as a file"
                onClick={() => void exportToFile(saved.id)}
              >
                <DownloadIcon />
              </button>
              <button
                type="button"
                className="icon-button"
                data-testid="delete-conversation"
                title="Delete"
                aria-label="Delete this conversation and its recording from this device"
                disabled={answering}
                onClick={() => {
                  if (confirmDelete(saved)) void removeConversation(saved.id);
                }}
              >
                <TrashIcon />
              </button>
            </>
          )}
          <button
            type="button"
            className="button subtle small"
            data-testid="new-conversation"
            onClick={() => void newConversation()}
            disabled={messages.length === 0}
          >
            <PlusIcon />
            <span>
              New<span className="narrow-hidden"> conversation</span>
            </span>
          </button>
        </div>
      </div>

      {messages.length === 0 ? (
        <p className="empty-thread muted">
          {info?.randomWeights
            ? 'Pick a task or type a question. This test model has random weights, so its answers are deliberately meaningless — it shows the whole pipeline working.'
            : 'Pick a task or type a question about the recording. Follow-up questions continue the conversation.'}
          {info?.reasoning && (
            <span className="block" data-testid="reasoning-help">
              This model thinks before it answers: its thoughts stream first, then fold away under the answer (“Thoughts”). After the
              thinking budget (Settings) it is told to stop thinking and answer.
            </span>
          )}
        </p>
      ) : (
        <Thread messages={messages} busy={answering || finding || modelStatus !== 'ready' || audioStatus !== 'ready'} />
      )}

      {presets.length > 0 && <Presets presets={presets} disabled={!ready || answering || finding} onPick={pick} />}
      <Classify />

      <form
        className="composer"
        onSubmit={(event) => {
          event.preventDefault();
          send();
        }}
      >
        <label htmlFor={QUESTION_BOX_ID} className="visually-hidden">
          Your question about the recording
        </label>
        <textarea
          id={QUESTION_BOX_ID}
          ref={input}
          data-testid="question-input"
          rows={2}
          value={draft}
          placeholder={placeholder}
          onChange={(event) => setDraft(event.target.value)}
          onKeyDown={onKeyDown}
          aria-describedby="composer-help"
        />
        {answering ? (
          <button key="stop" type="button" className="button danger send" data-testid="stop-button" onClick={stop} disabled={phase === 'stopping'}>
            <StopIcon />
            <span>{phase === 'stopping' ? 'Stopping…' : 'Stop'}</span>
          </button>
        ) : (
          <button key="send" type="submit" className="button primary send" data-testid="send-button" disabled={draft.trim() === ''}>
            <SendIcon />
            <span>Ask</span>
          </button>
        )}
      </form>
      {queued ? (
        <p id="composer-help" className="composer-help queued-note" data-testid="queued-question">
          <span>
            “{withoutAudioSlot(queued.prompt, info?.audioMarker ?? '')}” will be sent {queuedWhen}.
          </span>{' '}
          <button type="button" className="link-button" onClick={() => unqueue()}>
            Cancel
          </button>
        </p>
      ) : (
        <p id="composer-help" className="composer-help muted">
          {hint ?? waitingNote ?? 'Enter sends · Shift+Enter adds a line · Escape stops the answer'}
        </p>
      )}
    </section>
  );
}
