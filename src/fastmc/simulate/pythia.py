"""Pythia 8 (``pythia8mc``) set up for a catalogued process, generating batches of events.

Common settings for every process (:data:`COMMON_SETTINGS`): pp at 13 TeV, Pythia's default
tune (Monash 2013), multiparton interactions, initial- and final-state showers and
hadronisation on, no pile-up, particles with c*tau > 10 mm stable (K0S, Lambda, ... reach the
detector, as in Delphes set-ups).  Every ``readString`` and ``init()`` result is checked and a
failure raises :class:`PythiaError`.  Events come out as awkward arrays through
``Pythia.nextBatch`` (momenta in GeV).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fastmc.errors import FastMCError, require
from fastmc.simulate.processes import Process
from fastmc.simulate.slha import gluino_slha, stop_slha, write_temp_slha

__all__ = [
    "COMMON_SETTINGS",
    "MAX_PYTHIA_SEED",
    "PythiaError",
    "PythiaGenerator",
    "pythia_version",
    "pythia_xmldoc",
]

#: Pythia accepts Random:seed in 1..900000000.
MAX_PYTHIA_SEED = 900_000_000
MB_TO_FB = 1e12

COMMON_SETTINGS: tuple[str, ...] = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 13000.",
    "PartonLevel:MPI = on",
    "PartonLevel:ISR = on",
    "PartonLevel:FSR = on",
    "HadronLevel:all = on",
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10.",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Random:setSeed = on",
)


class PythiaError(FastMCError):
    """Pythia refused a setting or failed to initialise."""


def pythia_version() -> str:
    """The version of the installed pythia8mc module, e.g. ``"8.317"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pythia8mc")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def pythia_xmldoc(bases: Iterable[str | os.PathLike[str]] | None = None) -> str:
    """Folder of Pythia 8's settings database (``share/Pythia8/xmldoc``), "" when not found.

    ``$PYTHIA8DATA`` wins when set.  Otherwise the folder is looked for under ``bases`` (default:
    the environment's prefixes and the folders above the installed ``pythia8mc`` module).
    Pythia looks only under the prefix it was built for, so an install with ``pip install
    --prefix DIR`` or a relocated environment would otherwise fail at the first setting.
    """
    env = os.environ.get("PYTHIA8DATA")
    if env:
        return env
    if bases is None:
        found = []
        with contextlib.suppress(ImportError):
            import pythia8mc

            found = list(Path(pythia8mc.__file__).resolve().parents)[:4]
        bases = [sys.prefix, sys.base_prefix, *found]
    for base in bases:
        folder = Path(base) / "share" / "Pythia8" / "xmldoc"
        if (folder / "Index.xml").is_file():
            return str(folder)
    return ""


class PythiaGenerator:
    """One initialised Pythia instance for ``process`` with resolved ``params``.

    Parameters
    ----------
    process : catalogue entry.
    params : resolved parameters (:meth:`Process.resolve_params`), GeV.
    seed : Pythia's Random:seed, an int in 1..900000000.
    extra_settings : more readString lines (applied last), for experts and tests.
    """

    def __init__(
        self,
        process: Process,
        params: Mapping[str, float],
        *,
        seed: int,
        extra_settings: tuple[str, ...] = (),
    ) -> None:
        if not 1 <= int(seed) <= MAX_PYTHIA_SEED:
            raise ValueError(f"Pythia seed must be in 1..{MAX_PYTHIA_SEED}, got {seed}")
        pythia8mc = require("pythia8mc", "simulate")
        self.process = process
        self.seed = int(seed)
        self.settings = [
            *COMMON_SETTINGS,
            f"Random:seed = {self.seed}",
            *process.pythia_settings(params),
            *extra_settings,
        ]
        slha_path = None
        if process.slha == "gluino":
            slha_path = write_temp_slha(gluino_slha(params["m_gluino"], params["m_neutralino"]))
        elif process.slha == "stop":
            slha_path = write_temp_slha(stop_slha(params["m_stop"], params["m_neutralino"]))
        if slha_path is not None:
            self.settings += [f"SLHA:file = {slha_path}", "SLHA:verbose = 0"]
        try:
            xmldoc = pythia_xmldoc()
            self._pythia = pythia8mc.Pythia(xmldoc, False)
            for i, line in enumerate(self.settings):
                if self._pythia.readString(line):
                    continue
                if i == 0:  # Beams:idA: refused only when the settings database is missing
                    raise PythiaError(
                        f"Pythia 8 refused its first setting ({line!r}): it did not find its "
                        f"settings database (looked in {xmldoc or 'its built-in folder'}). Set "
                        "PYTHIA8DATA to the share/Pythia8/xmldoc folder of the pythia8mc install."
                    )
                raise PythiaError(
                    f"Pythia rejected the setting {line!r} of process {process.name!r}"
                )
            if not self._pythia.init():
                raise PythiaError(
                    f"Pythia failed to initialise process {process.name!r} with settings "
                    f"{'; '.join(self.settings)} (rerun with Print:quiet = off to see why)"
                )
        finally:
            if slha_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(slha_path)

    def next_batch(self, n: int) -> Any:
        """Generate ``n`` events; an awkward array with fields ``prt`` (particles) and ``info``.

        Events Pythia fails to generate are skipped and retried (``errorMode="skip"``), so
        the batch has exactly ``n`` events.
        """
        return self._pythia.nextBatch(int(n), "skip")

    @property
    def sigma_fb(self) -> float:
        """Pythia's estimate of the cross section of the generated process so far, fb."""
        return float(self._pythia.infoPython().sigmaGen()) * MB_TO_FB

    @property
    def sigma_err_fb(self) -> float:
        """Statistical uncertainty of :attr:`sigma_fb`, fb."""
        return float(self._pythia.infoPython().sigmaErr()) * MB_TO_FB

    @property
    def n_accepted(self) -> int:
        """Events generated so far."""
        return int(self._pythia.infoPython().nAccepted())
