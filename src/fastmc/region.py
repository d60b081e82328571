"""Kinematic regions: a small expression language over the evaluation's observables.

``fastmc generate MODEL --where "met > 500 and n_bjets >= 1"`` keeps only events inside a
region written in this language.  The expression is tokenised and parsed by a recursive-descent
parser into a tree (never passed to ``eval``), checked against the observable names of
:data:`fastmc.evaluate.observables.OBSERVABLES`, and evaluated on :class:`~fastmc.events.Events`
in a vectorised way.

Grammar (keywords are case-insensitive; ``&&``, ``||``, ``!`` are accepted for and, or, not)::

    region     := or_expr
    or_expr    := and_expr ( "or" and_expr )*
    and_expr   := not_expr ( "and" not_expr )*
    not_expr   := "not" not_expr | "(" or_expr ")" | comparison
    comparison := value OP value ( OP value )*        chained: 200 < met <= 500
    value      := NAME | "abs" "(" NAME ")" | NUMBER [ UNIT ] | "-" NUMBER [ UNIT ]
    OP         := "<" | "<=" | ">" | ">=" | "==" | "!="
    UNIT       := "GeV" | "TeV" | "MeV"               (converted to GeV)

``NAME`` is an observable: ``met``, ``met_phi``, ``n_jets``, ``n_bjets``, ``n_electrons``,
``n_muons``, ``n_photons``, ``jet1_pt`` (and ``_e``, ``_eta``, ``_phi``; also ``jet2``,
``lep1``, ``lep2``), ``ht``, ``m_jj``, ``m_ll``, ``dr_jj`` (see
:mod:`fastmc.evaluate.observables` for their definitions).  Energies, momenta and masses are in
GeV: a bare number next to them means GeV, and a unit may be written (``met > 0.5 TeV``).  A
unit next to an observable that is not an energy (a count, an angle) is an error.

Missing objects: an observable of an object the event does not have (``jet2_pt`` of a one-jet
event) is NaN, and every comparison with NaN is false.  So ``jet2_pt > 50`` needs a second jet,
and ``not (jet2_pt > 50)`` accepts events without one.

Errors (:class:`RegionSyntaxError`, a :class:`~fastmc.errors.ConfigError`) quote the expression
with a caret under the offending position.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np

from fastmc.errors import ConfigError
from fastmc.events import Events

__all__ = ["Region", "RegionSyntaxError", "parse_region"]

#: Units a number may carry, in GeV.
UNITS = {"gev": 1.0, "tev": 1000.0, "mev": 1e-3}
_OPS = ("<=", ">=", "==", "!=", "<", ">")
_KEYWORDS = {"and", "or", "not", "abs"}
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><=|>=|==|!=|<|>)
    | (?P<sym>&&|\|\||[()!-])
    """,
    re.VERBOSE,
)


class RegionSyntaxError(ConfigError):
    """A region expression that does not parse or names an unknown observable.

    ``position`` is the 0-based character offset of the problem in ``expression``; the message
    shows the expression with a caret under it.
    """

    def __init__(self, expression: str, position: int, message: str) -> None:
        self.expression = expression
        self.position = position
        self.reason = message
        super().__init__(
            f"--where, position {position + 1}: {message}\n  {expression}\n  {' ' * position}^"
        )

    def __reduce__(self):
        return (type(self), (self.expression, self.position, self.reason))


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # num, name, op, and, or, not, abs, (, ), -, end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise RegionSyntaxError(text, pos, f"unexpected character {text[pos]!r}")
        kind, value = m.lastgroup or "", m.group()
        if kind == "name" and value.lower() in _KEYWORDS:
            kind = value.lower()
        elif kind == "sym":
            kind = {"&&": "and", "||": "or", "!": "not"}.get(value, value)
        if kind == "num" and m.end() < len(text) and (text[m.end()].isalpha() or text[m.end()] == "_"):
            # "500GeV" is fine (a unit follows); "5abc" is not a number
            tail = re.match(r"[A-Za-z_]\w*", text[m.end():])
            if tail is None or tail.group().lower() not in UNITS:
                raise RegionSyntaxError(text, pos, f"malformed number {value + (tail.group() if tail else '')!r}")
        if kind != "ws":
            out.append(_Token(kind, value, pos))
        pos = m.end()
    out.append(_Token("end", "", len(text)))
    return out


# ---------------------------------------------------------------------------- the tree
@dataclasses.dataclass(frozen=True)
class Observable:
    """An observable column, optionally under ``abs``."""

    name: str
    absolute: bool = False

    def __str__(self) -> str:
        return f"abs({self.name})" if self.absolute else self.name


@dataclasses.dataclass(frozen=True)
class Number:
    """A constant in GeV (or unitless)."""

    value: float
    has_unit: bool = False

    def __str__(self) -> str:
        return repr(self.value)


@dataclasses.dataclass(frozen=True)
class Compare:
    """``terms[0] ops[0] terms[1] ops[1] terms[2] ...`` (chained comparisons, all true)."""

    terms: tuple[Observable | Number, ...]
    ops: tuple[str, ...]

    def __str__(self) -> str:
        parts = [str(self.terms[0])]
        for op, t in zip(self.ops, self.terms[1:], strict=True):
            parts += [op, str(t)]
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class BoolOp:
    """``op`` in ``and``, ``or`` over ``args``; ``not`` over one argument."""

    op: str
    args: tuple[Node, ...]

    def __str__(self) -> str:
        if self.op == "not":
            return f"not ({self.args[0]})"
        return f" {self.op} ".join(f"({a})" for a in self.args)


Node = Compare | BoolOp


class _Parser:
    def __init__(self, text: str, names: Sequence[str], energy: set[str]) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.names = tuple(names)
        self.energy = energy

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self, kind: str | None = None, what: str = "") -> _Token:
        tok = self.tokens[self.i]
        if kind is not None and tok.kind != kind:
            shown = "the end of the expression" if tok.kind == "end" else repr(tok.text)
            raise RegionSyntaxError(self.text, tok.pos, f"expected {what or kind}, found {shown}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise RegionSyntaxError(self.text, 0, "empty expression")
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise RegionSyntaxError(
                self.text, tok.pos, f"expected 'and', 'or' or the end, found {tok.text!r}"
            )
        return node

    def or_expr(self) -> Node:
        args = [self.and_expr()]
        while self.peek().kind == "or":
            self.take()
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else BoolOp("or", tuple(args))

    def and_expr(self) -> Node:
        args = [self.not_expr()]
        while self.peek().kind == "and":
            self.take()
            args.append(self.not_expr())
        return args[0] if len(args) == 1 else BoolOp("and", tuple(args))

    def not_expr(self) -> Node:
        tok = self.peek()
        if tok.kind == "not":
            self.take()
            return BoolOp("not", (self.not_expr(),))
        if tok.kind == "(":
            self.take()
            node = self.or_expr()
            self.take(")", "')'")
            return node
        return self.comparison()

    def comparison(self) -> Compare:
        start = self.peek().pos
        terms = [self.value()]
        ops: list[str] = []
        while self.peek().kind == "op":
            ops.append(self.take().text)
            terms.append(self.value())
        if not ops:
            tok = self.peek()
            shown = "the end of the expression" if tok.kind == "end" else repr(tok.text)
            raise RegionSyntaxError(
                self.text, tok.pos, f"expected a comparison operator (< <= > >= == !=), found {shown}"
            )
        if not any(isinstance(t, Observable) for t in terms):
            raise RegionSyntaxError(self.text, start, "a comparison needs an observable")
        self._check_units(terms, start)
        return Compare(tuple(terms), tuple(ops))

    def _check_units(self, terms: list[Observable | Number], start: int) -> None:
        for t in terms:
            if isinstance(t, Number) and t.has_unit:
                bad = [o.name for o in terms if isinstance(o, Observable) and o.name not in self.energy]
                if bad:
                    raise RegionSyntaxError(
                        self.text, start, f"{bad[0]} is not an energy: a number compared with it "
                        "takes no unit"
                    )

    def value(self) -> Observable | Number:
        tok = self.peek()
        if tok.kind == "abs":
            self.take()
            self.take("(", "'(' after abs")
            name = self.observable_name()
            self.take(")", "')'")
            return Observable(name, absolute=True)
        if tok.kind == "name":
            return Observable(self.observable_name())
        sign = 1.0
        if tok.kind == "-":
            self.take()
            sign = -1.0
        num = self.take("num", "an observable or a number")
        value = sign * float(num.text)
        has_unit = False
        if self.peek().kind == "name" and self.peek().text.lower() in UNITS:
            value *= UNITS[self.take().text.lower()]
            has_unit = True
        if not math.isfinite(value):
            raise RegionSyntaxError(self.text, num.pos, f"number {num.text} is not finite")
        return Number(value, has_unit)

    def observable_name(self) -> str:
        tok = self.take("name", "an observable name")
        if tok.text not in self.names:
            lower = {n.lower(): n for n in self.names}
            hint = f" (did you mean {lower[tok.text.lower()]!r}?)" if tok.text.lower() in lower else ""
            raise RegionSyntaxError(
                self.text, tok.pos,
                f"unknown observable {tok.text!r}{hint}; known: {', '.join(self.names)}",
            )
        return tok.text


_COMPARE = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


@dataclasses.dataclass(frozen=True)
class Region:
    """A parsed region expression (build it with :func:`parse_region`).

    Attributes
    ----------
    expression : str        the text as given
    tree : Compare | BoolOp the parsed expression
    observables : tuple of str   the observables it uses
    """

    expression: str
    tree: Node

    @property
    def observables(self) -> tuple[str, ...]:
        found: list[str] = []

        def walk(node: Node) -> None:
            if isinstance(node, Compare):
                found.extend(t.name for t in node.terms if isinstance(t, Observable))
            else:
                for a in node.args:
                    walk(a)

        walk(self.tree)
        return tuple(dict.fromkeys(found))

    def bounds(self, name: str) -> tuple[float, float]:
        """``(lo, hi)`` (GeV for energies) within which every event of the region has observable
        ``name`` (when it exists, i.e. is not NaN): the bounds of the comparisons of ``name`` (not under ``abs``) with numbers in
        the top-level conjunction; ``(-inf, inf)`` where the expression implies none (an
        ``or``, a ``not``).  A necessary condition only: the region may be smaller.
        """
        lo, hi = -math.inf, math.inf
        nodes = list(self.tree.args) if isinstance(self.tree, BoolOp) and self.tree.op == "and" \
            else [self.tree]
        flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
        for node in nodes:
            if not isinstance(node, Compare):
                continue
            for op, a, b in zip(node.ops, node.terms[:-1], node.terms[1:], strict=True):
                if isinstance(b, Observable) and isinstance(a, Number):
                    a, b, op = b, a, flip[op]
                if not (isinstance(a, Observable) and isinstance(b, Number)) or a.absolute \
                        or a.name != name:
                    continue
                if op in (">", ">=", "=="):
                    lo = max(lo, b.value)
                if op in ("<", "<=", "=="):
                    hi = min(hi, b.value)
        return lo, hi

    def evaluate(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Boolean [N]: the region on observable columns ``{name: float64 [N]}`` (GeV)."""
        return self._eval(self.tree, columns)

    def mask(self, events: Events) -> np.ndarray:
        """Boolean [N]: which of ``events`` (GeV) are in the region."""
        from fastmc.evaluate.observables import compute_observables

        return self.evaluate(compute_observables(events).as_dict())

    def _eval(self, node: Node, columns: dict[str, np.ndarray]) -> np.ndarray:
        if isinstance(node, BoolOp):
            parts = [self._eval(a, columns) for a in node.args]
            if node.op == "not":
                return ~parts[0]
            return np.logical_and.reduce(parts) if node.op == "and" else np.logical_or.reduce(parts)
        n = len(next(iter(columns.values()))) if columns else 0

        def value(t: Observable | Number) -> np.ndarray:
            if isinstance(t, Number):
                return np.full(n, t.value)
            col = np.asarray(columns[t.name], dtype=np.float64)
            return np.abs(col) if t.absolute else col

        out = np.ones(n, bool)
        with np.errstate(invalid="ignore"):
            for op, a, b in zip(node.ops, node.terms[:-1], node.terms[1:], strict=True):
                out &= _COMPARE[op](value(a), value(b))
        return out

    def __str__(self) -> str:
        return self.expression


def parse_region(expression: str) -> Region:
    """Parse a region expression (grammar in the module docstring) into a :class:`Region`.

    Raises :class:`RegionSyntaxError` (with the position) if it does not parse or names an
    unknown observable.
    """
    from fastmc.evaluate.observables import OBSERVABLES

    if not isinstance(expression, str):
        raise ConfigError(f"a region expression is a string, got {type(expression).__name__}")
    names = [s.name for s in OBSERVABLES]
    energy = {s.name for s in OBSERVABLES if s.unit == "GeV"}
    return Region(expression, _Parser(expression, names, energy).parse())
