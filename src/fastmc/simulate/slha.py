"""Minimal SLHA spectra for the simplified SUSY models of the process catalogue.

fastmc writes a small SLHA file (SUSY Les Houches Accord) to a temporary file and points
Pythia at it (``SLHA:file``).  The spectrum is a *simplified model*: one light coloured
sparticle (the gluino or the lighter stop) and a bino-like lightest neutralino; every other
sparticle and the heavy Higgs bosons sit at :data:`DECOUPLED_MASS` (5 TeV) so they are neither
produced nor in the decay chains.  Mixing matrices are the identity (no stop mixing, pure bino
neutralino, pure wino/higgsino charginos); the SM inputs are the PDG values Pythia uses.
The decays of the light sparticle are *forced* through its DECAY table (branching ratios sum
to one); the neutralino is stable (R-parity), hence invisible.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["DECOUPLED_MASS", "gluino_slha", "stop_slha", "write_temp_slha"]

#: Mass (GeV) of every sparticle that is not part of the simplified model.
DECOUPLED_MASS = 5000.0

_SPARTICLES = (
    1000001, 1000002, 1000003, 1000004, 1000005, 1000006,
    2000001, 2000002, 2000003, 2000004, 2000005, 2000006,
    1000011, 1000012, 1000013, 1000014, 1000015, 1000016,
    2000011, 2000013, 2000015,
    1000021, 1000022, 1000023, 1000024, 1000025, 1000035, 1000037,
)  # fmt: skip


def _spectrum(masses: dict[int, float], decays: str) -> str:
    lines = [
        "# fastmc simplified-model spectrum (light states below, the rest decoupled)",
        "BLOCK MODSEL",
        "    1   0   # general MSSM",
        "BLOCK SMINPUTS",
        "    1   1.27934e+02   # 1/alpha_em(mZ)",
        "    2   1.16637e-05   # G_F",
        "    3   1.18000e-01   # alpha_s(mZ)",
        "    4   9.11876e+01   # mZ",
        "    5   4.18000e+00   # mb(mb)",
        "    6   1.73000e+02   # m_top pole",
        "    7   1.77700e+00   # m_tau",
        "BLOCK MASS",
        "       25   1.25000e+02",
        *(f"   {pid:8d}   {DECOUPLED_MASS:.5e}" for pid in (35, 36, 37)),
        *(f"   {pid:8d}   {masses.get(pid, DECOUPLED_MASS):.5e}" for pid in _SPARTICLES),
    ]
    for block, n in (
        ("NMIX", 4),
        ("UMIX", 2),
        ("VMIX", 2),
        ("STOPMIX", 2),
        ("SBOTMIX", 2),
        ("STAUMIX", 2),
    ):
        lines.append(f"BLOCK {block}")
        lines += [
            f"  {i} {j}   {1.0 if i == j else 0.0:.5e}"
            for i in range(1, n + 1)
            for j in range(1, n + 1)
        ]
    lines += [
        "BLOCK ALPHA",
        "  -1.10000e-01",
        "BLOCK HMIX Q= 1.00000e+03",
        "    1   1.00000e+03   # mu",
        "    2   1.00000e+01   # tan beta",
        "    4   2.50000e+07   # mA^2",
        "DECAY   1000022   0.00000e+00   # stable lightest neutralino",
        decays.strip(),
        "",
    ]
    return "\n".join(lines)


def gluino_slha(m_gluino: float, m_neutralino: float) -> str:
    """SLHA text: gluino (GeV) -> q qbar neutralino, q = u, d, s, c with 25 % each (3-body)."""
    if not m_gluino > m_neutralino > 0:
        raise ValueError(
            f"need m_gluino > m_neutralino > 0 GeV, got {m_gluino} and {m_neutralino}"
        )
    decays = (
        "DECAY   1000021   1.00000e+00   # gluino, forced\n"
        "   2.50000e-01   3   1000022   1   -1\n"
        "   2.50000e-01   3   1000022   2   -2\n"
        "   2.50000e-01   3   1000022   3   -3\n"
        "   2.50000e-01   3   1000022   4   -4"
    )
    return _spectrum({1000021: m_gluino, 1000022: m_neutralino}, decays)


def stop_slha(m_stop: float, m_neutralino: float) -> str:
    """SLHA text: lighter stop (GeV) -> top neutralino (100 %, 2-body; needs the mass gap)."""
    if not m_stop - m_neutralino > 173.0 or m_neutralino <= 0:
        raise ValueError(
            f"stop -> top neutralino needs m_stop - m_neutralino > 173 GeV and m_neutralino > 0; "
            f"got m_stop={m_stop}, m_neutralino={m_neutralino}"
        )
    decays = "DECAY   1000006   1.00000e+00   # stop_1, forced\n   1.00000e+00   2   1000022   6"
    return _spectrum({1000006: m_stop, 1000022: m_neutralino}, decays)


def write_temp_slha(text: str) -> str:
    """Write SLHA ``text`` to a new temporary file and return its path (caller deletes it)."""
    fd, path = tempfile.mkstemp(prefix="fastmc-", suffix=".slha")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path
