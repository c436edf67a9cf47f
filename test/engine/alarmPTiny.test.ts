/**
 * The tiny ALARM-P bundle (format 2: ALARM-CA's four encoders and features; Whisper's conv
 * adapter, identity adapters for the others; the perceiver `connector`: each conditional
 * encoder's latents between two learnt rows, then Whisper's rows; 25 embeddings per second after
 * the leading rows → Qwen3) through the engine in Node (wasm), against the ALARM-P PyTorch
 * reference's goldens (models/make_alarm_p_goldens.py); the checks are test/helpers/fusedAlarm.ts's.
 *
 * The bundle and goldens come from models/build_tiny_alarm_p_bundle.py and
 * models/make_alarm_p_goldens.py; where they are absent this file skips.
 * HARK_ALARM_P_MODELS points at another `models` folder holding both (e.g. another branch's).
 */
import { join } from 'node:path';
import { describeFusedAlarm } from '../helpers/fusedAlarm';
import { REPO_ROOT } from '../helpers/golden';

const MODELS = process.env.HARK_ALARM_P_MODELS ?? join(REPO_ROOT, 'models');

describeFusedAlarm({
  title: 'the tiny ALARM-P bundle (format 2, perceiver latents of three encoders before Whisper\'s rows) vs the ALARM-P PyTorch reference (wasm)',
  bundleDir: join(MODELS, 'bundles', 'alarm-p-tiny'),
  goldenDir: join(MODELS, 'golden', 'alarm-p'),
  modelsDir: MODELS,
  fusion: 'perceiver',
});
