"""docs/cli.md, generated from the commands themselves (their docstrings, arguments and options).

    .venv/bin/python -m cluster_workers.cli_docs          # rewrite docs/cli.md
    .venv/bin/python -m cluster_workers.cli_docs --check  # exit 1 if docs/cli.md is stale

The test suite runs the check (tests/test_cli_docs.py), so a flag added without
regenerating the reference fails the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
HEADER = """# Command reference

Generated from the commands' own definitions by `python -m cluster_workers.cli_docs`; do not edit by hand
(a test fails when this file and the commands disagree). `cluster-workers COMMAND --help` prints the same.
"""


def _command() -> Any:
    import typer

    from cluster_workers.cli import app

    return typer.main.get_command(app)  # type: ignore[return-value]


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"  # typer vendors its own click: no isinstance


def _param_line(param: Any) -> str:
    if _is_argument(param):
        name = f"`{param.name.upper()}`"
    else:
        opts = [*param.opts, *param.secondary_opts]
        name = ", ".join(f"`{o}`" for o in opts)
    text = " ".join((getattr(param, "help", None) or "").split())
    default = param.default
    shown = "" if default in (None, False, (), []) or _is_argument(param) or callable(default) else f" Default: `{default}`."
    required = " Required." if param.required and not _is_argument(param) else ""
    if getattr(param, "multiple", False) and "repeatable" not in text.lower():
        text += " Repeatable."
    return f"- {name}: {text}{shown}{required}".rstrip()


def _section(name: str, command: Any) -> list[str]:
    doc = " ".join((command.help or "").split())
    usage = " ".join(p.name.upper() if _is_argument(p) else "" for p in command.params).split()
    lines = [f"## `{name}`", "", doc, "", f"`cluster-workers {name} [OPTIONS]{''.join(' ' + u for u in usage)}`", ""]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    lines += [_param_line(p) for p in params if _is_argument(p)]
    lines += [_param_line(p) for p in params if not _is_argument(p)]
    lines += ["- `--help`: Show the command's help and exit.", ""]
    return lines


def render() -> str:
    """The whole reference as Markdown."""
    group = _command()
    lines = [HEADER, "## Commands", ""]
    names = sorted(group.commands)
    lines += [f"- [`{n}`](#{n}): {(' '.join((group.commands[n].help or '').split()).split('. ')[0]).rstrip('.')}." for n in names]
    lines += ["", "Global options (before the command): " + "; ".join(_param_line(p)[2:] for p in group.params), ""]
    for name in names:
        lines += _section(name, group.commands[name])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python -m cluster_workers.cli_docs", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
