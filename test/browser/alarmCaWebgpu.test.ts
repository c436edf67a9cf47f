/**
 * The tiny fused ALARM-CA bundle (four encoders: Whisper, w2v-BERT 2.0, SSLAM and MuQ; an adapter
 * each; the cross-attention connector; Qwen3) in Chromium on WebGPU (SwiftShader here) against the
 * PyTorch reference's goldens (models/make_alarm_ca_goldens.py); the checks are
 * test/browser/fusedAlarmWebgpu.ts's. ~330 s on this 2-core machine (setAudio ~276 s, most of it
 * waiting for SwiftShader to finish the encoders: MuQ's 30 s window at 24 kHz through a DFT-basis
 * matmul and its conformer, Whisper's 3000 frames), too long for `npm test`'s budget: it runs with
 * `npm run test:alarm-ca-webgpu` (HARK_ALARM_CA_WEBGPU=1) and is skipped otherwise.
 */
import { describeFusedAlarmWebgpu } from './fusedAlarmWebgpu';

describeFusedAlarmWebgpu({
  title: 'the tiny ALARM-CA bundle in Chromium on WebGPU vs the PyTorch reference',
  optIn: 'HARK_ALARM_CA_WEBGPU',
  bundle: '/models/alarm-ca-tiny/',
  goldenDir: 'alarm-ca',
  fusion: 'cross-attention',
  label: 'ALARM-CA',
});
