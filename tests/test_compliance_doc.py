"""docs/COMPLIANCE.md stays true: every test it names exists, and it covers
every GDPR article the privacy promises are about."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "COMPLIANCE.md"
NAMED = re.compile(r"`(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`")
LEADING = re.compile(r"^([0-9]+(?:\([0-9a-z]+\))*(?:, [0-9]+(?:\([0-9a-z]+\))*)*)(?: |$)")
ARTICLES = ("5(1)(e)", "12", "15", "16", "17", "18", "20", "21", "25", "30", "32", "33", "34")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def _rows() -> dict[str, str]:
    """Article -> its table row (a row may serve several: "13, 14 ...")."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = LEADING.match(cells[0]) if line.startswith("|") and len(cells) == 4 else None
        if match:
            for article in match.group(1).split(", "):
                rows[article] = line
    return rows


def test_every_named_test_exists():
    named = NAMED.findall(DOC.read_text())
    assert len(named) >= 30
    missing = [f"{file}::{name}" for file, name in named
               if not (ROOT / "tests" / file).exists() or name not in _tests_in(ROOT / "tests" / file)]
    assert missing == []


def test_every_article_has_a_feature_and_a_test():
    rows = _rows()
    for article in ARTICLES:
        assert article in rows, f"Article {article} is not in the table"
        assert NAMED.search(rows[article]), f"Article {article} names no test"
