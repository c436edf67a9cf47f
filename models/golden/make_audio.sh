#!/usr/bin/env bash
# Makes the golden test recordings with espeak-ng and sox (run once; the WAVs are committed so
# every machine tests against identical samples even if espeak-ng's voice changes).
# All: 16 kHz, mono, 16-bit PCM.
set -euo pipefail
cd "$(dirname "$0")/audio"
speak() { espeak-ng -v en-us -s 150 --stdout "$1" | sox -t wav - -r 16000 -c 1 -b 16 "$2"; }

speak "The quick brown fox jumps over the lazy dog, then asks what time it is." speech.wav
# A tone with pink noise underneath: an "audio event" rather than speech.
sox -n -r 16000 -c 1 -b 16 tone.wav synth 5 sine 440 vol 0.5
sox -n -r 16000 -c 1 -b 16 noise.wav synth 5 pinknoise vol 0.2
sox -m tone.wav noise.wav tone_noise.wav && rm tone.wav noise.wav
# Exactly 1 s and exactly 30 s: the padding edge and the single-chunk edge.
sox -n -r 16000 -c 1 -b 16 one_second.wav synth 1 sine 1000 vol 0.5
speak "This clip lasts exactly thirty seconds. It has speech at the start and tones after it." s30.wav
sox -n -r 16000 -c 1 -b 16 sweep.wav synth 30 sine 200-2000 vol 0.3
sox -m s30.wav sweep.wav thirty_seconds.wav trim 0 30 && rm s30.wav sweep.wav
# Longer than 30 s: two chunks (30 s + 5 s).
sox thirty_seconds.wav tone_noise.wav long_35s.wav
for f in *.wav; do printf '%s %s s\n' "$f" "$(soxi -D "$f")"; done
