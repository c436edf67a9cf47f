/**
 * The tiny fused ALARM bundle (ALARM-CA, format 2: whisper per 30 s chunk; w2vbert, sslam and muq
 * from features of the whole recording cut into their graphs' pieces; an adapter each per
 * recording; the cross-attention `connector` with the main encoder's length; 25 embeddings per
 * second between learnt boundaries → Qwen3) through the engine in Node (wasm), against the
 * ALARM-CA PyTorch reference's goldens (models/make_alarm_ca_goldens.py); the checks are
 * test/helpers/fusedAlarm.ts's.
 *
 * The bundle and goldens come from models/build_tiny_alarm_ca_bundle.py and
 * models/make_alarm_ca_goldens.py; where they are absent this file skips.
 * HARK_ALARM_CA_MODELS points at another `models` folder holding both (e.g. another branch's).
 */
import { join } from 'node:path';
import { describeFusedAlarm } from '../helpers/fusedAlarm';
import { REPO_ROOT } from '../helpers/golden';

const MODELS = process.env.HARK_ALARM_CA_MODELS ?? join(REPO_ROOT, 'models');

describeFusedAlarm({
  title: 'the tiny ALARM-CA bundle (format 2, cross-attention over four encoders) vs the ALARM-CA PyTorch reference (wasm)',
  bundleDir: join(MODELS, 'bundles', 'alarm-ca-tiny'),
  goldenDir: join(MODELS, 'golden', 'alarm-ca'),
  modelsDir: MODELS,
  fusion: 'cross-attention',
});
