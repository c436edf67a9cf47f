/**
 * Wires the stores together once at start-up: a new model means the engine forgot the recording
 * and the conversation, so the recording is encoded again; a new recording starts a new chat.
 */
import { onNewRecording, useAudioStore } from './audioStore';
import { useConversationStore } from './conversationStore';
import { useDeviceStore } from './deviceStore';
import { useHistoryStore } from './historyStore';
import { useModelStore } from './modelStore';

let started = false;

export function startSession(): void {
  if (started) return;
  started = true;
  onNewRecording(() => useConversationStore.getState().reset('recording'));
  // After the listener above: a reopened conversation is shown once the old one was cleared.
  void useHistoryStore.getState().start();
  useModelStore.subscribe((state, previous) => {
    if (state.loadId === previous.loadId) return;
    const label = state.info ? `${state.info.label} (${state.info.backend === 'webgpu' ? 'WebGPU' : 'WebAssembly'})` : 'another model';
    useConversationStore.getState().reset('model', `Now answering with ${label}: the conversation starts over.`);
    void useAudioStore.getState().encode();
  });
  // A question asked too early goes out as soon as the model, the recording and the conversation are ready.
  const sendQueued = () => useConversationStore.getState().sendQueued();
  useModelStore.subscribe(sendQueued);
  useAudioStore.subscribe(sendQueued);
  useConversationStore.subscribe((state, previous) => {
    if (state.phase !== previous.phase || state.queued !== previous.queued) sendQueued();
  });
  void useDeviceStore.getState().probe();
  void useAudioStore.getState().loadSamples();
  void useModelStore.getState().refreshStorage();
  void useModelStore.getState().refreshModels();
  void useModelStore.getState().start();
}
