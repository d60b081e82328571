"""Ground truth for fastmc: Pythia 8 + FastJet + the Dark Machines (Delphes ATLAS) detector.

- :mod:`~fastmc.simulate.processes`: the process catalogue (Dark Machines IDs).
- :mod:`~fastmc.simulate.pythia`: Pythia 8 set-up and batch generation.
- :mod:`~fastmc.simulate.card` / :mod:`~fastmc.simulate.detector`: the detector response.
- :mod:`~fastmc.simulate.run`: :func:`simulate` and :func:`simulate_to_file` (J processes).

Needs the ``simulate`` extra (pythia8mc, fastjet), imported lazily.
"""

from fastmc.simulate.card import DetectorCard
from fastmc.simulate.processes import CATALOGUE, UNSUPPORTED, Process, get_process
from fastmc.simulate.run import LUMINOSITY_FB, simulate, simulate_to_file

__all__ = [
    "CATALOGUE",
    "LUMINOSITY_FB",
    "UNSUPPORTED",
    "DetectorCard",
    "Process",
    "get_process",
    "simulate",
    "simulate_to_file",
]

from fastmc._callable import make_callable

# ``fastmc.simulate(process, n, ...)`` (the API) is this package called as a function
make_callable(__name__, "fastmc.simulate.api:simulate")
