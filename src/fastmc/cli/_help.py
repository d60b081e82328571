"""How every command's help looks, in one place: metavars, defaults, paragraphs, examples.

:class:`HelpStyle` is mixed into the click group of the ``fastmc`` app.  When it is built it polishes
every command (and itself), so that each command module only declares its options:

- metavars are uppercase words (``INT``, ``FLOAT``, ``PATH``, ``TEXT``; arguments by their
  name, ``STORE``, ``MODEL_DIR``), the choices of a fixed option as ``a|b|c``, nothing for a
  flag; never typer's ``<int>`` or ``<list[str]>``;
- one default style, ``[default: X]`` at the end of the help; a ``(default X)`` written in a
  help text is moved there;
- single line breaks inside a paragraph of a command's help are joined, so that the terminal
  wraps whole words at any width;
- an ``Examples`` section (:data:`EXAMPLES`) closes every command's help.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

__all__ = ["EXAMPLES", "HelpStyle", "polish_command"]

#: Examples shown at the end of each command's help (tests check that they parse).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "convert": (
        "fastmc convert background_chan1.csv -o background.parquet",
        "fastmc convert 'run_*.root' -o all.csv.gz --on-error skip",
    ),
    "info": (
        "fastmc info ttbar.parquet",
        "fastmc info ttbar.parquet --json > summary.json",
        "fastmc info tour/store",
    ),
    "simulate": (
        "fastmc simulate --list",
        "fastmc simulate ttbar -n 5000 --seed 1 --jobs 2 -o ttbar.parquet",
        "fastmc simulate stop_02 -n 1000 --param m_stop=1000 -o stop.root",
    ),
    "prepare": ("fastmc prepare ttbar.parquet -o store --val 0.1 --test 0.3 --seed 0",),
    "verify": ("fastmc verify store",),
    "train": (
        "fastmc train store -o beta-vae --model beta-vae --beta 0.001 --epochs 5",
        "fastmc train store -o flow --model flow --max-minutes 10",
    ),
    "fit-prior": ("fastmc fit-prior beta-vae --prior gmm --components 20",),
    "generate": (
        "fastmc generate beta-vae -n 20000 --seed 0 -o generated.parquet",
        "fastmc generate beta-vae -n 20000 --prior gmm --channel chan1 -o gen.root",
    ),
    "refine": (
        "fastmc refine flow -t store",
        "fastmc refine flow -t 'train_*.csv' --events 200000 --overwrite",
    ),
    "export": ("fastmc export beta-vae -o generator.onnx",
               "fastmc export flow -o flow.onnx --speed"),
    "bench": ("fastmc bench beta-vae", "fastmc bench beta-vae --no-simulate --json > bench.json"),
    "evaluate": (
        "fastmc evaluate -r reference.parquet -g generated.parquet -o report",
        "fastmc evaluate -r ref.parquet -g a.parquet -g b.parquet -l vae -l flow -o report",
    ),
    "demo": ("fastmc demo", "fastmc demo --fresh"),
    "study": ("fastmc study src/fastmc/configs/reduced_study.yaml -o study",),
}

_DEFAULT_IN_HELP = re.compile(
    r"\s*(?:\(default:?\s+([^()]*)\)|(?<!\\)\[default:\s*([^\]]*)\])(?=\s*\.?\s*$)"
)
_MAX_METAVAR = 14  # longer choice lists go into the help text (the column stays narrow)
_WORDS = {"int": "INT", "int range": "INT", "float": "FLOAT", "float range": "FLOAT",
          "path": "PATH", "file": "PATH", "directory": "PATH", "str": "TEXT", "text": "TEXT"}


def _type_word(param: Any) -> str:
    """``INT``, ``FLOAT``, ``PATH``, ``TEXT`` or ``a|b|c`` for a typer parameter."""
    try:
        label = str(param.display_type(None)).strip("<>")
    except Exception:  # a type typer cannot describe without a context
        return "TEXT"
    if "|" in label:
        return label
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    return _WORDS.get(label, label.upper())


def _polish_param(param: Any) -> None:
    # duck-typed: typer builds its parameters on its own copy of click
    kind = getattr(param, "param_type_name", "")
    if kind == "argument":
        word = _type_word(param)
        if param.metavar is None:
            param.metavar = (param.name or "ARG").upper() + ("..." if param.nargs != 1 else "")
        param.display_type_rich = lambda ctx, word=word: word  # typer ignores an argument's metavar
        return
    if kind != "option":
        return
    text = param.help or ""
    default = None
    match = _DEFAULT_IN_HELP.search(text)
    if match:
        text = text[: match.start()].rstrip() + text[match.end():].rstrip()
        text += "" if text.endswith(".") else "."
        if param.show_default is False or param.default is None:  # typer would not show it
            param.show_default = False
            default = (match.group(1) or match.group(2) or "").strip()
    if param.is_flag or param.count:
        param.metavar = ""
    elif param.metavar is None:
        word = _type_word(param)
        if "|" in word and len(word) > _MAX_METAVAR:  # many choices: name them in the help
            longest = max(param.opts, key=len).lstrip("-")
            param.metavar = longest.upper().replace("-", "_")
            choices = word.split("|")
            if not all(c in text for c in choices):
                text = f"{text.rstrip()} One of: {', '.join(choices)}.".lstrip()
        else:
            param.metavar = word
    if default is not None:
        text += " " + escape(f"[default: {default}]")
    param.help = text or None
    if param.is_flag and not param.secondary_opts:
        param.show_default = False  # "[default: False]" says nothing a flag does not


def _join_lines(text: str) -> str:
    """Join single line breaks inside paragraphs (``\\b`` paragraphs stay as written)."""
    paragraphs = text.split("\n\n")
    out = []
    for p in paragraphs:
        lines = [ln.strip() for ln in p.strip("\n").split("\n")]
        out.append(p if lines[0].startswith("\b") else " ".join(ln for ln in lines if ln))
    return "\n\n".join(out)


def _examples_epilog(name: str) -> str | None:
    lines = EXAMPLES.get(name)
    if not lines:
        return None
    return "Examples:\n" + "\n".join(escape(line) for line in lines)


def polish_command(cmd: Any, name: str | None = None) -> None:
    """Apply the rules of the module docstring to one command (idempotent)."""
    if getattr(cmd, "_fastmc_polished", False):
        return
    for param in cmd.params:
        _polish_param(param)
    if cmd.help:
        import inspect

        cmd.help = _join_lines(inspect.cleandoc(cmd.help))
        if cmd.short_help is None:
            first = cmd.help.split("\n\n")[0]
            cut = re.search(r"(?<=[a-z0-9)])\.\s", first)
            cmd.short_help = first[: cut.start() + 1] if cut else first
    if name and cmd.epilog is None:
        cmd.epilog = _examples_epilog(name)
    make_help_option = cmd.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            _polish_param(option)
        return option

    cmd.get_help_option = get_help_option
    cmd._fastmc_polished = True  # type: ignore[attr-defined]


class HelpStyle:
    """Mixin of a click group: polishes its own help and every command's (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        polish_command(self)
        for name, cmd in self.commands.items():
            polish_command(cmd, name)
