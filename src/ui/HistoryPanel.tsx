/** Conversations kept on this device: reopen, export as a file, delete one or all. */
import { useHistoryStore, type HistoryEntry } from '../stores/historyStore';
import { useConversationStore } from '../stores/conversationStore';
import { DownloadIcon, TrashIcon } from './Icons';

function formatWhen(ms: number): string {
  const date = new Date(ms);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : date.toLocaleDateString([], { day: 'numeric', month: 'short', year: 'numeric' });
}

/** Asks before deleting: both the conversation and its recording go, and there is no undo. */
export function confirmDelete(entry: Pick<HistoryEntry, 'title' | 'recordingName'>): boolean {
  const recording = entry.recordingName ? ` and the recording “${entry.recordingName}”` : ' and its recording';
  return window.confirm(`Delete the conversation “${entry.title}”${recording} from this device? This cannot be undone.`);
}

function HistoryRow({ entry, current, busy }: { entry: HistoryEntry; current: boolean; busy: boolean }) {
  const open = useHistoryStore((s) => s.open);
  const exportToFile = useHistoryStore((s) => s.exportToFile);
  const remove = useHistoryStore((s) => s.remove);
  return (
    <li className="model-row history-row" data-active={current} data-testid="history-entry" data-id={entry.id}>
      <div className="model-row-text">
        <span className="model-row-name">
          {entry.title}
          {current && <span className="badge ok">open</span>}
        </span>
        <span className="small muted">
          {entry.recordingName ?? 'recording deleted'} · {entry.questions} question{entry.questions === 1 ? '' : 's'} · {formatWhen(entry.updatedAt)}
        </span>
      </div>
      {!current && (
        <button type="button" className="button small" disabled={busy} onClick={() => void open(entry.id)} aria-label={`Open the conversation “${entry.title}”`}>
          Open
        </button>
      )}
      <button type="button" className="icon-button" title="Export" aria-label={`Export the conversation “${entry.title}” with its recording as a file`} onClick={() => void exportToFile(entry.id)}>
        <DownloadIcon />
      </button>
      <button
        type="button"
        className="icon-button"
        title="Delete"
        aria-label={`Delete the conversation “${entry.title}” and its recording from this device`}
        disabled={busy && current}
        onClick={() => {
          if (confirmDelete(entry)) void remove(entry.id);
        }}
      >
        <TrashIcon />
      </button>
    </li>
  );
}

export function HistoryPanel() {
  const available = useHistoryStore((s) => s.available);
  const entries = useHistoryStore((s) => s.entries);
  const currentId = useHistoryStore((s) => s.currentId);
  const removeAll = useHistoryStore((s) => s.removeAll);
  const busy = useConversationStore((s) => s.phase !== 'idle');
  const importFromFile = useHistoryStore((s) => s.importFromFile);
  return (
    <section className="panel-section" aria-labelledby="history-heading">
      <h2 id="history-heading" className="section-title">
        History
      </h2>
      {available === false ? (
        <p className="small muted">This browser does not let the app keep history (for example in some private windows): conversations last until the page closes.</p>
      ) : entries.length === 0 ? (
        <p className="small muted">Conversations and their recordings are kept on this device only, and come back when you reopen the app.</p>
      ) : (
        <>
          <ul className="model-list" aria-label="Conversations on this device" data-testid="history-list">
            {entries.map((entry) => (
              <HistoryRow key={entry.id} entry={entry} current={entry.id === currentId} busy={busy} />
            ))}
          </ul>
          <button
            type="button"
            className="button subtle small"
            data-testid="history-delete-all"
            onClick={() => {
              const count = entries.length;
              const what = count === 1 ? 'the only conversation and its recording' : `all ${count} conversations and their recordings`;
              if (window.confirm(`Delete ${what} from this device? This cannot be undone.`)) void removeAll();
            }}
          >
            Delete all history
          </button>
        </>
      )}
      {available !== false && (
        <label className={`button subtle small file-button${busy ? ' disabled' : ''}`}>
          <input
            type="file"
            accept=".json,application/json"
            className="visually-hidden"
            data-testid="import-conversation"
            disabled={busy}
            onChange={(event) => {
              const file = event.target.files?.[0];
              event.target.value = '';
              if (file) void importFromFile(file);
            }}
          />
          Import a conversation…
        </label>
      )}
    </section>
  );
}
