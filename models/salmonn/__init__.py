"""PyTorch reference implementation of SALMONN's parts (one file per model)."""
