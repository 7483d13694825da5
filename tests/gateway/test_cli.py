"""The `kefu` command line as an operator runs it: a real process, a real SQLite file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_KB = ROOT / "knowledge" / "data" / "kb.jsonl"


def kefu(*args: str, var: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEFU_VAR_DIR": str(var), "KEFU_DATABASE_URL": "", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kefu {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def var(tmp_path_factory: pytest.TempPathFactory) -> Path:
    var = tmp_path_factory.mktemp("var")
    kefu("db", "upgrade", var=var)
    return var


def test_demo_load_is_idempotent_and_export_round_trips(var: Path) -> None:
    first = json.loads(kefu("demo", "load", var=var).stdout)
    second = json.loads(kefu("demo", "load", var=var).stdout)
    assert (first["created"], second["unchanged"], second["created"], second["updated"]) == (160, 160, 0, 0)

    out = var / "export.jsonl"
    kefu("kb", "export", "-o", str(out), var=var)
    assert out.read_text(encoding="utf-8") == DEMO_KB.read_text(encoding="utf-8")


def test_a_bad_file_is_refused_with_line_numbers(var: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(DEMO_KB.read_bytes().splitlines()[0] + b"\n" + b'{"id": "X1"}\n' + b"\xff\xfe\n")

    result = kefu("kb", "import", str(bad), var=var, check=False)

    assert result.returncode == 3
    assert "database is unchanged" in result.stderr
    assert "line 2:" in result.stderr and "line 3: invalid UTF-8" in result.stderr


def test_missing_file_is_a_usage_error(var: Path) -> None:
    result = kefu("kb", "import", "/nonexistent.jsonl", var=var, check=False)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_eval_prints_the_metrics_contract(var: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    rows = [
        {"q": "怎么查询话费余额", "expect": "KB0101", "as": "customer"},
        {"q": "今天北京天气咋样", "expect": "@none", "as": "customer"},
        {"q": "转人工", "expect": "@request_human", "as": "customer"},
    ]
    queries.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")

    result = json.loads(kefu("kb", "eval", str(queries), "--json", var=var).stdout)

    assert result["n_kb"] == 160 and result["n_queries"] == 2 and result["skipped_commands"] == 1
    for key in (
        "top1",
        "top3",
        "agent_top1",
        "answer_rate",
        "answer_precision",
        "none_rejection",
        "self_service",
        "agent_only_leaks",
        "p50_ms",
        "p95_ms",
    ):
        assert key in result
    assert result["top1"] == 1.0 and result["agent_only_leaks"] == 0
