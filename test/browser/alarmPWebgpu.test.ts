/**
 * The tiny fused ALARM-P bundle (ALARM-CA's four encoders; Whisper's conv adapter, identity adapters
 * for the others; the perceiver connector: each conditional encoder's latents between two learnt
 * rows, then Whisper's rows; Qwen3) in Chromium on WebGPU (SwiftShader here) against the ALARM-P
 * PyTorch reference's goldens (models/make_alarm_p_goldens.py); the checks are
 * test/browser/fusedAlarmWebgpu.ts's. ~215 s on this 2-core machine when idle, ~300 s under load
 * (setAudio 160–210 s: the same encoders as ALARM-CA's on SwiftShader), too long for `npm test`'s
 * budget: it runs with `npm run test:alarm-p-webgpu` (HARK_ALARM_P_WEBGPU=1), skipped otherwise.
 */
import { describeFusedAlarmWebgpu } from './fusedAlarmWebgpu';

describeFusedAlarmWebgpu({
  title: 'the tiny ALARM-P bundle in Chromium on WebGPU vs the ALARM-P PyTorch reference',
  optIn: 'HARK_ALARM_P_WEBGPU',
  bundle: '/models/alarm-p-tiny/',
  goldenDir: 'alarm-p',
  fusion: 'perceiver',
  label: 'ALARM-P',
});
