"""The real model: fine-tune the bundled SmolLM2-135M for a few steps, then ask it.

The slowest training test. The GGUF is converted once to transformers weights and
cached (30-150 s on a 2-core machine the first time); the steps themselves take
seconds. The tuned adapter answers through `ragtune ask`, without and with an index.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import run_cli

pytest.importorskip("peft", reason="fine-tuning needs the train extra (peft)")
pytest.importorskip("gguf", reason="converting SmolLM2's GGUF needs the gguf package")

ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sft" / "alpaca_en_demo.json"


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    from ragtune.train.models.base_model import resolve_base_model

    return resolve_base_model(None)


def test_fine_tuned_smollm2_answers_through_ask(
    smollm2_dir: Path, shop_index_dir: Path, tmp_path: Path
) -> None:
    if not ALPACA.exists():
        pytest.skip(f"{ALPACA} is absent (the shared data set)")
    records = json.loads(ALPACA.read_text(encoding="utf-8"))[:24]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(records), encoding="utf-8")
    trained = run_cli(
        "finetune",
        "--data",
        str(data),
        "--output",
        str(tmp_path / "run"),
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--max-length",
        "128",
        "--eval-fraction",
        "0.2",
        "--save-every",
        "2",
        timeout=900,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["eval_loss_end"] is not None
    # Three steps at 2e-4 barely move a 135M model: its answers stay sensible.
    assert summary["eval_loss_end"] < summary["eval_loss_start"] + 0.5

    llm = f"hf:{smollm2_dir}#adapter={tmp_path / 'run' / 'adapter'}"
    closed_book = run_cli("ask", "--llm", llm, "What is the capital of France?", timeout=600)
    assert closed_book.returncode == 0, closed_book.stderr[-3000:]
    assert "paris" in closed_book.stdout.lower(), closed_book.stdout

    with_index = run_cli(
        "ask",
        "--llm",
        llm,
        "--index",
        str(shop_index_dir),
        "--json",
        "What is the flavor of the dark energy potion?",
        timeout=600,
    )
    assert with_index.returncode == 0, with_index.stderr[-3000:]
    answer = json.loads(with_index.stdout)
    assert answer["answer"].strip() and answer["sources"]
