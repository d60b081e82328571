"""fastmc: fast deep generative surrogates for LHC Monte Carlo events."""

__version__ = "0.1.0"
