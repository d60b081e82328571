"""The process catalogue of ``fastmc simulate``: Dark Machines process IDs Pythia 8 can make.

Every entry (:class:`Process`) names the Dark Machines process ID, the Pythia 8 settings
(``readString`` lines, with ``{param}`` placeholders), its parameters with defaults (masses and
generator-level cuts in GeV), the generator-level cuts and the decays in words.  Beams, tune,
MPI and hadronisation are common to all (see :mod:`fastmc.simulate.pythia`).

Generator-level cuts.  The Dark Machines samples were made with MadGraph (LO, up to two extra
partons, MLM matching), so their generator cuts are not Pythia's.  Here the 2 -> 2 processes
with a massless final state need a ``PhaseSpace:pTHatMin`` (parameter ``pthat_min``); the
defaults are just below what the storage requirement keeps (a 60 GeV jet or a 25 GeV lepton or
photon), and a tighter default is used when a channel is requested (``channel_params``), e.g.
``njets`` with ``--channel chan1`` uses pT-hat > 200 GeV because channel 1 needs a jet above
200 GeV.  A pT-hat cut biases the sample wherever the selection lets events with a softer hard
process through; override it with ``--param pthat_min=...``.

Signal mass points.  The Dark Machines signal IDs of the big data set (``gluino_01``,
``stop_02``, ...) do not say their masses in the ID, and we could not find the table that maps
them, so the named entries below use mass points chosen by us and said in each description:
the gluino points are those of the real channel-1 signal files beside the repository
(``glgl1400_neutralino1100``, and the 1600/800 point of the Dark Machines paper); the stop
points are a heavy one (1000/300, the masses of the paper's ``stop2b1000_neutralino300``, but
with stop -> top neutralino) and a lighter one (``stop_02``: 800/100, a larger cross section
that gives the team a training sample with boosted tops and large MET).  Every mass is a
parameter, so ``--param m_stop=1200`` makes another point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from fastmc.errors import FastMCError

__all__ = ["CATALOGUE", "UNSUPPORTED", "Process", "UnknownProcessError", "get_process"]

ParamValue = float


class UnknownProcessError(FastMCError, KeyError):
    """A process ID that is not in the catalogue (the message lists what is and why)."""

    def __str__(self) -> str:  # KeyError would add quotes
        return str(self.args[0])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Process:
    """One catalogue entry.

    Attributes
    ----------
    name : the Dark Machines process ID (``"ttbar"``, ``"stop_02"``, ...).
    description : what is generated, in words (mass points included).
    settings : callable ``params -> list of Pythia readString lines``.
    params : default parameter values (GeV for masses and cuts).
    channel_params : per channel, defaults that replace ``params`` when that channel is asked
        for (the user's ``--param`` still wins).
    generator_cuts, decays : documentation of the generator-level cuts and the decays.
    slha : ``"gluino"`` or ``"stop"`` when an SLHA spectrum is written (masses from params).
    hard_id : keep only events whose hard process contains this PDG ID (a generator-level
        filter, e.g. top vs antitop for single_top/single_topbar); the cross section is scaled
        by the accepted fraction.
    """

    name: str
    description: str
    settings: Callable[[Mapping[str, ParamValue]], list[str]]
    params: Mapping[str, ParamValue] = dataclasses.field(default_factory=dict)
    channel_params: Mapping[str, Mapping[str, ParamValue]] = dataclasses.field(
        default_factory=dict
    )
    generator_cuts: str = "none"
    decays: str = "Pythia defaults (all SM channels)"
    slha: str | None = None
    hard_id: int | None = None

    def resolve_params(
        self, params: Mapping[str, Any] | None = None, channel: str | None = None
    ) -> dict[str, ParamValue]:
        """Defaults, then channel defaults, then the user's ``params`` (numbers, GeV).

        Raises ValueError for a parameter this process does not have or a non-number.
        """
        out = dict(self.params)
        if channel is not None:
            out.update(self.channel_params.get(channel, {}))
        for key, value in (params or {}).items():
            if key not in self.params:
                known = ", ".join(f"{k}={v:g}" for k, v in self.params.items()) or "none"
                raise ValueError(
                    f"process {self.name!r} has no parameter {key!r}; its parameters: {known}"
                )
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"parameter {key} of {self.name!r} must be a number, got {value!r}"
                ) from None
        return out

    def pythia_settings(self, params: Mapping[str, ParamValue]) -> list[str]:
        """The process-specific readString lines for resolved ``params``."""
        return list(self.settings(params))


def _fixed(*lines: str) -> Callable[[Mapping[str, ParamValue]], list[str]]:
    return lambda p: [line.format(**p) for line in lines]


def _boson_jets(inclusive: list[str], with_jet: list[str], extra: list[str]):
    """pthat_min = 0: inclusive boson production (jets from the shower); > 0: boson + parton."""

    def settings(p: Mapping[str, ParamValue]) -> list[str]:
        if p["pthat_min"] > 0:
            lines = [*with_jet, f"PhaseSpace:pTHatMin = {p['pthat_min']:g}"]
        else:
            lines = list(inclusive)
        return lines + [line.format(**p) for line in extra]

    return settings


def _z_jets(p: Mapping[str, ParamValue]) -> list[str]:
    lines = _boson_jets(
        ["WeakSingleBoson:ffbar2gmZ = on"],
        ["WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on"],
        ["PhaseSpace:mHatMin = {mhat_min:g}", "23:mMin = {mhat_min:g}"],
    )(p)
    if p["leptonic"]:
        lines += ["23:onMode = off", "23:onIfAny = 11 13"]
    return lines


_PT = {"pthat_min": 20.0}
_CHAN_HARD = {"chan1": {"pthat_min": 200.0}, "chan3": {"pthat_min": 200.0}}
_BOSON_JET_CUTS = (
    "pthat_min = 0: inclusive boson production, jets from the parton shower; pthat_min > 0: "
    "boson + one parton (2 -> 2) with pT-hat > pthat_min (GeV), 200 GeV for chan1/chan3"
)


def _entries() -> list[Process]:
    return [
        Process(
            name="njets",
            description="QCD multijet (all 2 -> 2 QCD processes, HardQCD:all)",
            settings=_fixed("HardQCD:all = on", "PhaseSpace:pTHatMin = {pthat_min:g}"),
            params={"pthat_min": 50.0},
            channel_params=_CHAN_HARD,
            generator_cuts="pT-hat > pthat_min (50 GeV; 200 GeV for chan1/chan3)",
        ),
        Process(
            name="w_jets",
            description="W + jets",
            settings=_boson_jets(
                ["WeakSingleBoson:ffbar2W = on"],
                ["WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on"],
                [],
            ),
            params={"pthat_min": 0.0},
            channel_params=_CHAN_HARD,
            generator_cuts=_BOSON_JET_CUTS,
        ),
        Process(
            name="z_jets",
            description="Z/gamma* + jets, m(ll) > mhat_min",
            settings=_z_jets,
            params={"pthat_min": 0.0, "mhat_min": 50.0, "leptonic": 0.0},
            channel_params=_CHAN_HARD,
            generator_cuts=_BOSON_JET_CUTS + "; m(Z/gamma*) > mhat_min (50 GeV)",
            decays="all Z decays; leptonic=1 forces Z -> e+e- or mu+mu-",
        ),
        Process(
            name="gam_jets",
            description="prompt photon + jet (PromptPhoton:all)",
            settings=_fixed("PromptPhoton:all = on", "PhaseSpace:pTHatMin = {pthat_min:g}"),
            params=_PT,
            channel_params=_CHAN_HARD,
            generator_cuts="pT-hat > pthat_min (20 GeV; 200 GeV for chan1/chan3)",
        ),
        Process(
            name="ttbar",
            description="top pair (gg, qqbar -> t tbar), m_top = 173 GeV",
            settings=_fixed(
                "Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "PhaseSpace:pTHatMin = {pthat_min:g}"
            ),
            params={"pthat_min": 0.0},
            channel_params={"chan1": {"pthat_min": 200.0}, "chan3": {"pthat_min": 200.0}},
            generator_cuts="none (pT-hat > 200 GeV for chan1/chan3; set pthat_min=0 to lift)",
            decays="t -> W b; W decays inclusive (Pythia branching ratios)",
        ),
        Process(
            name="ww",
            description="W+ W- pair (ffbar -> WW)",
            settings=_fixed("WeakDoubleBoson:ffbar2WW = on"),
        ),
        Process(
            name="zz",
            description="ZZ pair (ffbar -> Z/gamma* Z/gamma*), m > 50 GeV each",
            settings=_fixed(
                "WeakDoubleBoson:ffbar2gmZgmZ = on", "23:mMin = 50.", "WeakZ0:gmZmode = 2"
            ),
            generator_cuts="Z masses > 50 GeV (Z part only, gmZmode = 2)",
        ),
        Process(
            name="ZW",
            description="Z W pair (ffbar -> Z W)",
            settings=_fixed("WeakDoubleBoson:ffbar2ZW = on", "23:mMin = 50."),
            generator_cuts="m(Z) > 50 GeV",
        ),
        Process(
            name="Wgam",
            description="W + photon (ffbar -> W gamma)",
            settings=_fixed(
                "WeakBosonAndParton:ffbar2Wgm = on", "PhaseSpace:pTHatMin = {pthat_min:g}"
            ),
            params=_PT,
            generator_cuts="pT-hat > pthat_min (20 GeV)",
        ),
        Process(
            name="Zgam",
            description="Z/gamma* + photon (ffbar -> Z gamma)",
            settings=_fixed(
                "WeakBosonAndParton:ffbar2gmZgm = on",
                "PhaseSpace:pTHatMin = {pthat_min:g}",
                "WeakZ0:gmZmode = 2",
            ),
            params=_PT,
            generator_cuts="pT-hat > pthat_min (20 GeV); Z part only (gmZmode = 2)",
        ),
        Process(
            name="2gam",
            description="photon pair (ffbar, gg -> gamma gamma)",
            settings=_fixed(
                "PromptPhoton:ffbar2gammagamma = on",
                "PromptPhoton:gg2gammagamma = on",
                "PhaseSpace:pTHatMin = {pthat_min:g}",
            ),
            params=_PT,
            generator_cuts="pT-hat > pthat_min (20 GeV)",
        ),
        Process(
            name="single_top",
            description="single top quark, t- and s-channel (no tW)",
            settings=_fixed("Top:qq2tq(t:W) = on", "Top:ffbar2tqbar(s:W) = on"),
            hard_id=6,
            generator_cuts="events with a top (not antitop) in the hard process",
        ),
        Process(
            name="single_topbar",
            description="single antitop quark, t- and s-channel (no tW)",
            settings=_fixed("Top:qq2tq(t:W) = on", "Top:ffbar2tqbar(s:W) = on"),
            hard_id=-6,
            generator_cuts="events with an antitop in the hard process",
        ),
        Process(
            name="single_higgs",
            description="SM Higgs (125 GeV): gg -> H, VBF, WH, ZH, ffbar -> H; no ttH",
            settings=_fixed(
                "HiggsSM:gg2H = on",
                "HiggsSM:ffbar2H = on",
                "HiggsSM:ffbar2HZ = on",
                "HiggsSM:ffbar2HW = on",
                "HiggsSM:ff2Hff(t:ZZ) = on",
                "HiggsSM:ff2Hff(t:WW) = on",
            ),
        ),
        Process(
            name="ttbarHiggs",
            description="t tbar H (gg, qqbar -> t tbar H), m_H = 125 GeV",
            settings=_fixed("HiggsSM:gg2Httbar = on", "HiggsSM:qqbar2Httbar = on"),
        ),
        *_signals(),
    ]


def _gluino(name: str, m_gluino: float, m_neutralino: float, note: str) -> Process:
    return Process(
        name=name,
        description=f"gluino pair, m_gluino={m_gluino:g}, m_neutralino={m_neutralino:g} GeV "
        f"({note})",
        settings=_fixed("SUSY:gg2gluinogluino = on", "SUSY:qqbar2gluinogluino = on"),
        params={"m_gluino": m_gluino, "m_neutralino": m_neutralino},
        slha="gluino",
        decays="gluino -> q qbar neutralino (q = u, d, s, c, 25 % each), neutralino stable",
    )


def _stop(name: str, m_stop: float, m_neutralino: float, note: str) -> Process:
    return Process(
        name=name,
        description=f"stop pair, m_stop={m_stop:g}, m_neutralino={m_neutralino:g} GeV ({note})",
        settings=_fixed(
            "SUSY:gg2squarkantisquark = on",
            "SUSY:qqbar2squarkantisquark = on",
            "SUSY:idA = 1000006",
            "SUSY:idB = 1000006",
        ),
        params={"m_stop": m_stop, "m_neutralino": m_neutralino},
        slha="stop",
        decays="stop -> top neutralino (100 %), neutralino stable",
    )


def _zprime(name: str, m_zp: float, decay: str) -> Process:
    modes = {"invisible": "12 14 16", "leptons": "11 13"}
    what = {
        "invisible": "neutrinos (invisible; a mono-jet stand-in for Z' -> dark matter)",
        "leptons": "e+e- or mu+mu-",
    }
    def settings(p: Mapping[str, ParamValue]) -> list[str]:
        mhat = p["mhat_min"] if p["mhat_min"] > 0 else p["m_zp"] / 2
        return [
            "NewGaugeBoson:ffbar2gmZZprime = on",
            "Zprime:gmZmode = 3",
            f"32:m0 = {p['m_zp']:g}",
            "32:onMode = off",
            f"32:onIfAny = {modes[decay]}",
            f"PhaseSpace:mHatMin = {mhat:g}",
        ]

    return Process(
        name=name,
        description=f"Z' (NewGaugeBoson, SM-like couplings), m_zp={m_zp:g} GeV -> {decay}",
        settings=settings,
        params={"m_zp": m_zp, "mhat_min": 0.0},
        generator_cuts="Z' only (gmZmode = 3), m-hat > mhat_min (0 means m_zp / 2)",
        decays=f"Z' -> {what[decay]}",
    )


def _signals() -> list[Process]:
    return [
        _gluino("gluino_01", 1400.0, 1100.0, "the point of glgl1400_neutralino1100"),
        _gluino("gluino_02", 1600.0, 800.0, "the glgl1600_neutralino800 point"),
        _stop("stop_01", 1000.0, 300.0, "masses of stop2b1000_neutralino300"),
        _stop("stop_02", 800.0, 100.0, "our choice: boosted tops, large MET"),
        _zprime("Zp_01", 2000.0, "invisible"),
        _zprime("Zp_02", 2000.0, "leptons"),
    ]


_NO_BUILTIN = "no built-in Pythia 8 process; needs a matrix-element generator (MadGraph) via LHE"
#: Dark Machines process IDs fastmc cannot make, with the reason.
UNSUPPORTED: Mapping[str, str] = MappingProxyType(
    {
        "wtop": "tW associated production: " + _NO_BUILTIN,
        "wtopbar": "tbar W associated production: " + _NO_BUILTIN,
        "ttbarZ": "t tbar Z: " + _NO_BUILTIN,
        "ttbarW": "t tbar W: " + _NO_BUILTIN,
        "ttbarWW": "t tbar W W: " + _NO_BUILTIN,
        "ttbarGam": "t tbar gamma: " + _NO_BUILTIN,
        "4top": "four tops: " + _NO_BUILTIN,
        "monotop": "mono-top (flavour-changing Z'/vector model): " + _NO_BUILTIN,
        "chaneut": "chargino-neutralino simplified model with the Dark Machines decays: "
        "not catalogued yet (Pythia has the process, the spectrum/decays are not written)",
    }
)

#: Process ID -> :class:`Process` (insertion order is the catalogue order).
CATALOGUE: Mapping[str, Process] = MappingProxyType({p.name: p for p in _entries()})


def get_process(name: str) -> Process:
    """The catalogue entry ``name``; :class:`UnknownProcessError` lists what exists and why not."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    supported = ", ".join(CATALOGUE)
    if name in UNSUPPORTED:
        msg = f"process {name!r} is not supported: {UNSUPPORTED[name]}. Supported: {supported}"
    else:
        missing = "; ".join(f"{k} ({v.split(':')[0]})" for k, v in UNSUPPORTED.items())
        msg = (
            f"unknown process {name!r}. Supported: {supported}. "
            f"Dark Machines IDs without a Pythia 8 process: {missing}"
        )
    raise UnknownProcessError(msg)
