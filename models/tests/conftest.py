"""Put `models/` on sys.path so the tests can `import salmonn.*` from any working directory."""

import sys
from pathlib import Path

MODELS_DIR = str(Path(__file__).resolve().parents[1])
if MODELS_DIR not in sys.path:
    sys.path.insert(0, MODELS_DIR)
