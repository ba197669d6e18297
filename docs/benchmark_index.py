"""The index of docs/benchmarks/: every JSON there, its date, machine and commit, and the documents citing it.

    .venv/bin/python docs/benchmark_index.py           # rewrite docs/benchmarks/README.md
    .venv/bin/python docs/benchmark_index.py --check   # exit 1 if a JSON is uncited or the index is stale

A JSON no document cites does not belong in the tree (git history keeps it);
the test suite runs ``--check``'s logic (tests/test_docs.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "docs" / "benchmarks"
INDEX = FOLDER / "README.md"
HEADER = """# Benchmark JSON

Every file here is cited by the document named beside it; the figures in the docs come from these files.
Files no document cites are removed (git history keeps them). Commit: where the file records it; otherwise
the docs name the commit beside the figure. Regenerate with `docs/benchmark_index.py`.

| file | date | machine | commit | cited by |
|---|---|---|---|---|
"""


def documents() -> list[Path]:
    """The documents that may cite a benchmark: the README and docs/*.md (the index itself excluded)."""
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md"))]


def citations() -> dict[str, list[str]]:
    """Per JSON file name in the folder: the documents that name it."""
    texts = {doc.relative_to(ROOT).as_posix(): doc.read_text() for doc in documents()}
    return {
        path.name: [name for name, text in texts.items() if re.search(re.escape(path.name) + r"(?![\w.])", text)]
        for path in sorted(FOLDER.glob("*.json"))
    }


def _machine(doc: dict) -> str:
    machine = doc.get("machine") or (doc.get("settings") or {}).get("machine") or {}
    if isinstance(machine, str):
        return machine
    return str(machine.get("cpu") or machine.get("processor") or machine.get("platform", "")).split(",")[0][:40]


def _row(name: str, cited: list[str]) -> str:
    doc = json.loads((FOLDER / name).read_text())
    doc = {**doc, **(doc.get("meta") or {})}  # some benchmarks keep these under "meta"
    date = doc.get("date") or str(doc.get("started", ""))[:10]
    commit = str(doc.get("commit") or "")
    return f"| `{name}` | {date} | {_machine(doc)} | {commit} | {', '.join(cited)} |\n"


def index_text() -> str:
    return HEADER + "".join(_row(name, cited) for name, cited in citations().items())


def problems() -> list[str]:
    """What is wrong with the folder: JSON no document cites, an index that does not match the files."""
    out = [f"{name}: no document cites it" for name, cited in citations().items() if not cited]
    if not INDEX.exists() or INDEX.read_text() != index_text():
        out.append(f"{INDEX.relative_to(ROOT)} is stale: run docs/benchmark_index.py")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="Only check; exit 1 on a problem.")
    args = ap.parse_args()
    if not args.check:
        INDEX.write_text(index_text())
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
