"""``cendetect models``: the table names every model the zoo knows, and nothing else."""

from __future__ import annotations

import json

import pytest

from cendetect.cli import main
from cendetect.cli.models import MODELS, models_table
from cendetect.engine.runners import ENGINE_KINDS
from cendetect.zoo import MODEL_ZOO, zoo_model_config


def test_every_zoo_name_is_listed_once() -> None:
    listed = [m.name for m in MODELS] + [a for m in MODELS for a in m.aliases]
    assert sorted(listed) == sorted(MODEL_ZOO)
    table = models_table()
    for name in listed:
        assert name in table


@pytest.mark.parametrize("info", MODELS, ids=lambda m: m.name)
def test_rows_are_consistent(info) -> None:
    assert set(info.engines) | set(info.untested) == set(ENGINE_KINDS) | {"eager"}
    assert not set(info.engines) & set(info.untested)
    cfg = zoo_model_config(info.name, 2)
    for alias in info.aliases:
        assert zoo_model_config(alias, 2) == cfg


def test_cli_prints_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| model")
    assert "cascade_mask_rcnn_r50_fpn_dconv (= mask_rcnn_r50_fpn_dconv)" in out
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [m.name for m in MODELS]
