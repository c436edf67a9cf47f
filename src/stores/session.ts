/**
 * Wires the stores together once at start-up: a new model means the engine forgot the recording
 * and the conversation, so the recording is encoded again; a new recording starts a new chat;
 * either forgets what "Find in recording" found.
 */
import { engineClient } from '../engineClient';
import { onNewRecording, useAudioStore } from './audioStore';
import { useConversationStore } from './conversationStore';
import { useDeviceStore } from './deviceStore';
import { useHistoryStore } from './historyStore';
import { useLocalizeStore } from './localizeStore';
import { useModelStore } from './modelStore';
import { useNoticeStore } from './noticeStore';

let started = false;

export function startSession(): void {
  if (started) return;
  started = true;
  onNewRecording(() => useConversationStore.getState().reset('recording'));
  onNewRecording(() => useLocalizeStore.getState().reset());
  // After the listener above: a reopened conversation is shown once the old one was cleared.
  void useHistoryStore.getState().start();
  useModelStore.subscribe((state, previous) => {
    if (state.loadId === previous.loadId) return;
    const label = state.info ? `${state.info.label} (${state.info.backend === 'webgpu' ? 'WebGPU' : 'WebAssembly'})` : 'another model';
    useConversationStore.getState().reset('model', `Now answering with ${label}: the conversation starts over.`);
    // Found by another model (which may not even localize): the new one can be asked again.
    useLocalizeStore.getState().reset();
    void useAudioStore.getState().encode();
  });
  // A question asked too early goes out as soon as the model, the recording and the conversation are ready.
  const sendQueued = () => useConversationStore.getState().sendQueued();
  useModelStore.subscribe(sendQueued);
  useAudioStore.subscribe(sendQueued);
  useConversationStore.subscribe((state, previous) => {
    if (state.phase !== previous.phase || state.queued !== previous.queued) sendQueued();
  });
  // A question asked while the recording is searched goes out when the search ends.
  useLocalizeStore.subscribe((state, previous) => {
    if (state.phase !== previous.phase) sendQueued();
  });
  // The engine's worker died or lost its GPU and a new one took over (src/engineClient.ts): after
  // the calls that failed have settled (next task), the conversation is kept to be re-read, and the
  // model is loaded again from this device's cache (its new loadId re-encodes the recording).
  engineClient().onRestart((event) => {
    if (useConversationStore.getState().phase === 'idle') useNoticeStore.getState().showError('engine', new Error(event.message));
    setTimeout(() => {
      useConversationStore.getState().engineRestarted();
      useLocalizeStore.getState().reset();
      void useModelStore.getState().recover(event);
    }, 0);
  });
  void useDeviceStore.getState().probe();
  void useAudioStore.getState().loadSamples();
  void useModelStore.getState().refreshStorage();
  void useModelStore.getState().refreshModels();
  void useModelStore.getState().start();
}
