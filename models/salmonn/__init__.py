"""PyTorch reference implementation of SALMONN's parts (one file per model)."""

import os

# Byte-identical goldens on any x86 machine: oneDNN (torch's convolutions) picks its kernels by the
# CPU's instruction set, and its AVX-512 kernels round differently from the AVX2 ones the committed
# goldens were made with (measured 2026-11-28 on an AVX-512 EPYC: ~1e-7 relative, every SALMONN
# golden after the Whisper encoder). oneDNN reads this once, at its first primitive, so setting it
# here (every reference module imports this package) is early enough; a value set outside wins.
os.environ.setdefault("DNNL_MAX_CPU_ISA", "AVX2")
