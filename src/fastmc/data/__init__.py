"""Model-independent data pipeline: event store (``prepare``), loader and ``RawBatch``.

Each model family owns its encoding (``fastmc.models.vae.encoding``, ``fastmc.models.flow``).
"""
