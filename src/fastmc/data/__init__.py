"""Data pipeline: event store (``prepare``), encodings (Events <-> tensors) and the loader."""
