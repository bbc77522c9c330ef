"""Test vectors: bytes our own code did not produce, each file naming where they came from.

A vector file ``tests/vectors/<layer>/<name>.hex`` holds ``#`` comment lines (source, make, date)
and hex lines; a line ``--`` separates several vectors in one file, each may start with a
``# name:`` comment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Vector:
    name: str
    wire: bytes
    comments: tuple[str, ...]


def load_vectors(layer: str) -> list[Vector]:
    """Every vector under ``tests/vectors/<layer>/``, in file order."""
    out: list[Vector] = []
    for path in sorted((HERE / layer).glob("*.hex")):
        chunks: list[tuple[list[str], list[str]]] = [([], [])]
        for line in path.read_text().splitlines():
            line = line.strip()
            if line == "--":
                chunks.append(([], []))
            elif line.startswith("#"):
                chunks[-1][0].append(line[1:].strip())
            elif line:
                chunks[-1][1].append(line)
        for i, (comments, hexlines) in enumerate(chunks):
            if not hexlines:
                continue
            name = next((c[5:].strip() for c in comments if c.startswith("name:")), f"{path.stem}-{i}")
            out.append(Vector(name, bytes.fromhex(" ".join(hexlines)), tuple(comments)))
    return out
