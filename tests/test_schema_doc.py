"""docs/results.md's schema table names every column of the rows' contract, in its type."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from trainables.contract.rows import COLUMNS, SCHEMA

DOC = Path(__file__).resolve().parent.parent / "docs" / "results.md"
TYPES = {"string": pa.string(), "float": pa.float64(), "int": pa.int64()}


def _documented() -> dict[str, str]:
    """column -> the type the doc gives it; "a … b" stands for a through b in schema order."""
    found: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Za-z0-9_]+)`", cells[0])
        types = [t.strip() for t in cells[1].split(",")]
        if "…" in cells[0]:
            first, last = COLUMNS.index(names[0]), COLUMNS.index(names[-1])
            names = list(COLUMNS[first : last + 1])
        for i, name in enumerate(names):
            found[name] = types[min(i, len(types) - 1)]
    return found


def test_the_schema_doc_matches_the_contract():
    documented = _documented()
    assert set(documented) == set(COLUMNS), (
        f"undocumented: {sorted(set(COLUMNS) - set(documented))}; not columns: {sorted(set(documented) - set(COLUMNS))}"
    )
    wrong = {n: t for n, t in documented.items() if TYPES[t] != SCHEMA.field(n).type}
    assert not wrong, f"types in docs/results.md differ from trainables/contract/rows.py: {wrong}"
