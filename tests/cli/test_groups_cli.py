"""`autoprune groups`, group names in search and pareto, and what a checkpoint or study records
(dataset, data folder, image size) reused by `search --checkpoint` and `export`."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import autoprune
from autoprune.search.coverage import describe_groups
from autoprune_cli.main import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def _rows(output: str) -> dict[str, list[str]]:
    """Table rows of the groups command: group name -> its other cells."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if len(cells) == 5 and cells[0] != "group":
            rows[cells[0]] = cells[1:]
    return rows


def test_groups_of_a_model_name_list_channels_and_size_shares() -> None:
    result = _invoke("groups", "tiny_dscnn", "--in-channels", "1", "--image-size", "20")
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    report = describe_groups("tiny_dscnn", in_channels=1, image_size=20)
    assert list(rows) == [g.name for g in report.groups]
    for group in report.groups:
        _, channels, share, searched = rows[group.name]
        assert int(channels) == group.channels and float(share) == round(100 * group.share, 1)
        assert searched == ("yes" if group.name in report.searched else "no")
    # the 96-channel residual group holds the big pointwise convs: most of the size
    assert rows["residual:blocks"][:2] == ["residual", "96"]
    assert float(rows["residual:blocks"][2]) > 50
    assert f"controls {100 * report.searched_share:.1f} %" in result.output.replace("\n", " ")


@pytest.mark.slow
def test_group_shares_change_with_the_bits_of_the_edge_layers() -> None:
    # binary inner layers with float edge layers: the stem's share grows, the total is 100 %
    two = {g.name: g.share for g in describe_groups("tiny_dscnn", in_channels=1).groups}
    one = {g.name: g.share for g in describe_groups("tiny_dscnn", bits=1, in_channels=1).groups}
    assert one["stem.0"] > two["stem.0"]
    assert all(0.0 < share <= 1.0 for share in [*one.values(), *two.values()])


def test_groups_refuses_an_unknown_model_in_one_line() -> None:
    result = _invoke("groups", "no_such_model")
    assert result.exit_code != 0
    missing = _invoke("groups", "no_such_pkg.mod:factory")
    assert "add its folder to PYTHONPATH" in str(missing.exception or missing.output)


def grey_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        for split, count in (("train", 24), ("test", 4)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                base = 60 + 120 * label
                pixels = rng.integers(base - 50, base + 50, (14, 14), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.mark.slow  # about 20 s: train, search and export through the CLI
def test_a_folder_checkpoint_carries_its_data_to_search_pareto_and_export(
    tmp_path: Path,
) -> None:
    images = tmp_path / "images"
    grey_folder(images)
    model = tmp_path / "model.pt"
    common = ("--device", "cpu", "--workers", "0")
    trained = _invoke(
        "train", "--out", str(model), "--model", "tiny_dscnn", "--epochs", "1",
        "--dataset", "imagefolder", "--data-dir", str(images), "--image-size", "12", *common,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    groups = _invoke("groups", str(model))
    assert groups.exit_code == 0 and "input 1x12x12" in groups.output, groups.output

    storage = str(tmp_path / "s.db")
    # no --dataset, --data-dir or --image-size: all three come from the checkpoint
    search = _invoke(
        "search", "--checkpoint", str(model), "--trials", "2", "--finetune-steps", "1",
        "--storage", storage, *common,
    )  # fmt: skip
    assert search.exit_code == 0, search.output
    header = re.sub(r"\s+", "", search.output)  # rich wraps long lines anywhere
    assert "studytiny_dscnn-w2a2-imagefolder" in header
    names = describe_groups(model).searched
    assert f"3groups({','.join(names)})" in header
    assert "groups:1stem.0,2" in header  # the pareto legend

    as_json = json.loads(_invoke("pareto", "--storage", storage, "--json", "-").output)
    assert {f"ratio:{name}" for name in names} <= set(as_json[0])
    as_csv = pd.read_csv(io.StringIO(_invoke("pareto", "--storage", storage, "--csv", "-").output))
    assert [c for c in as_csv.columns if c.startswith("ratio:")] == [f"ratio:{n}" for n in names]

    out = tmp_path / "exported.pt"
    trial = str(as_json[0]["trial"])
    exported = _invoke("export", "--storage", storage, "--trial", trial, "--out", str(out))
    assert exported.exit_code == 0, exported.output  # the study knows the data folder
    _, preprocess = autoprune.load(out, with_preprocess=True)
    assert preprocess.classes == ("dark", "light") and preprocess.image_size == 12
