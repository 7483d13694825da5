"""The import rules of DEVELOPERS.md, checked on the source: domains stay independent of each other."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"common", "knowledge", "connectors", "gateway", "actions", "bot"}
ALLOWED = {
    "common": {"common"},
    "knowledge": {"common", "knowledge"},
    "connectors": {"common", "connectors"},
    "gateway": {"common", "knowledge", "connectors", "gateway"},
    "actions": {"actions"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    files = list((ROOT / package).rglob("*.py"))
    offending = {
        str(path.relative_to(ROOT)): sorted(bad) for path in files if (bad := _imports(path) - ALLOWED[package])
    }
    assert not offending


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from gateway.app import create_app\nimport knowledge.service\n", encoding="utf-8")
    assert _imports(bad) == {"gateway", "knowledge"}
