"""Real text written by people: sentences of Debian's package descriptions.

Debian's ``Translation-en`` index holds the long description of every package
in the archive, written by its maintainers: about 178,000 distinct English
sentences on bookworm. apt does not download it in container images; fetch it
once with::

    apt-get -o Acquire::Languages=en update

The sentences are deduplicated, 25-250 characters, at least four words, mostly
letters, and sampled with a fixed seed, so the same machine gives the same
corpus every time.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

LISTS = Path("/var/lib/apt/lists")
HELPER = "/usr/lib/apt/apt-helper"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def translation_files(lists: Path = LISTS) -> list[Path]:
    """apt's English description indexes, largest first."""
    return sorted(lists.glob("*_i18n_Translation-en*"), key=lambda p: -p.stat().st_size)


def _read(path: Path) -> str:
    """The index as text (apt keeps it compressed; apt-helper knows every compressor it uses)."""
    return subprocess.run([HELPER, "cat-file", str(path)], capture_output=True, text=True, check=True).stdout


def _descriptions(text: str) -> list[list[str]]:
    """Each package's description as lines: the synopsis, then the long description (' .' = paragraph break)."""
    blocks: list[list[str]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("Description-en:"):
            blocks.append([line.split(":", 1)[1].strip()])
            inside = True
        elif inside and line.startswith(" "):
            blocks[-1].append(line[1:])
        else:
            inside = False
    return blocks


def _keep(sentence: str) -> bool:
    letters = sum(ch.isalpha() for ch in sentence)
    return 25 <= len(sentence) <= 250 and len(sentence.split()) >= 4 and letters > 0.6 * len(sentence)


def sentences(lists: Path = LISTS) -> list[str]:
    """Every distinct kept sentence of every English description, sorted."""
    files = translation_files(lists)
    if not files:
        raise SystemExit("no Debian Translation-en index: run  apt-get -o Acquire::Languages=en update  first")
    found: set[str] = set()
    for path in files:
        for lines in _descriptions(_read(path)):
            paragraphs = " ".join("\n" if ln.strip() == "." else ln.strip() for ln in lines[1:]).split("\n")
            for chunk in [lines[0], *paragraphs]:
                for sentence in _SENTENCE_END.split(" ".join(chunk.split())):
                    sentence = sentence.strip(" -*")
                    if _keep(sentence):
                        found.add(sentence)
    return sorted(found)


def corpus(limit: int, seed: int = 0) -> list[str]:
    """``limit`` sentences sampled with ``seed`` (all of them when fewer), in a stable order."""
    every = sentences()
    rng = np.random.default_rng(seed)
    keep = rng.choice(len(every), size=min(limit, len(every)), replace=False)
    return [every[i] for i in sorted(keep)]
