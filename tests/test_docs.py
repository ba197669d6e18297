"""The docs agree with the tree: every benchmark JSON is cited, the index lists exactly what is there."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _index_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("benchmark_index", ROOT / "docs" / "benchmark_index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_every_benchmark_json_is_cited_and_indexed():
    index = _index_module()
    assert list(index.citations()), "docs/benchmarks holds no JSON"
    assert index.problems() == []


def test_an_uncited_json_is_found(tmp_path, monkeypatch):
    """The check itself can fail: a JSON nobody cites, and an index that no longer matches."""
    index = _index_module()
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "cited_20260101.json").write_text('{"date": "2026-01-01", "commit": "abc1234"}')
    (folder / "orphan_20260101.json").write_text('{"date": "2026-01-01"}')
    doc = tmp_path / "README.md"
    doc.write_text("figures: `cited_20260101.json` (and cited_20260101.jsonl is another file)\n")
    monkeypatch.setattr(index, "FOLDER", folder)
    monkeypatch.setattr(index, "INDEX", folder / "README.md")
    monkeypatch.setattr(index, "ROOT", tmp_path)
    monkeypatch.setattr(index, "documents", lambda: [doc])
    assert index.citations() == {"cited_20260101.json": ["README.md"], "orphan_20260101.json": []}
    found = index.problems()
    assert "orphan_20260101.json: no document cites it" in found
    assert any("is stale" in line for line in found)
    index.INDEX.write_text(index.index_text())
    assert index.problems() == ["orphan_20260101.json: no document cites it"]


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def broken_links(documents: list[Path]) -> list[str]:
    """Relative links in ``documents`` whose file is missing, or whose #anchor names no heading of it."""
    out = []
    for doc in documents:
        for target in LINK.findall(doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                out.append(f"{doc.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                headings = {slug(line.lstrip("#")) for line in file.read_text().splitlines() if line.startswith("#")}
                if anchor not in headings:
                    out.append(f"{doc.name}: {target} (no such heading)")
    return out


def test_every_link_in_the_docs_leads_somewhere():
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert broken_links(documents) == []


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "a.md").write_text(
        "# Real text (2026)\n[ok](#real-text-2026) [gone](b.md) [bad](a.md#nowhere) [web](https://x.org/y)\n"
    )
    assert broken_links([tmp_path / "a.md"]) == ["a.md: b.md (no such file)", "a.md: a.md#nowhere (no such heading)"]
