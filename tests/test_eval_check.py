"""``glmv eval --check``: the awkward layouts load and validate without a model; a missing column or
image is an error naming dataset, split, row and column; Hub-format parquet with embedded bytes."""

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glmv_cli.errors import GlmvError
from glmv_cli.main import app

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
runner = CliRunner()


def _plain(s: str) -> str:
    return re.sub(r"\s+", " ", s)


def test_check_the_four_awkward_layouts():
    r = runner.invoke(app, ["eval", "--check", "--tasks", "motionbench,omnispatial,treebench,chartmuseum",
                            "--data-dir", str(FIXTURES)], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    out = _plain(r.output)
    # MotionBench: 3 questions in 2 qa lists, the NA one not asked; 2 videos probed
    assert "glmv_motionbench: 2 rows (train: 2), 0 images, 2 videos: ok" in out
    assert "glmv_omnispatial: 2 rows (test: 2), 2 images, 0 videos: ok" in out      # images read from the zip
    assert "glmv_treebench: 2 rows (train: 2), 2 images, 0 videos: ok" in out       # base64 cells decoded
    assert "glmv_chartmuseum: 2 rows (test: 2), 2 images, 0 videos: ok" in out      # paths into images/


def test_check_names_dataset_split_row_and_column(tmp_path):
    from glmv_cli.stages.eval import EvalOptions, check_tasks

    shutil.copytree(FIXTURES / "omnispatial", tmp_path / "omnispatial")
    z = tmp_path / "omnispatial" / "OmniSpatial-test.zip"
    with zipfile.ZipFile(z) as zf:
        data = json.loads(zf.read("OmniSpatial-test/data.json"))
        keep = {n: zf.read(n) for n in zf.namelist() if n.endswith("15.png")}
    del data[1]["question"]
    with zipfile.ZipFile(z, "w") as zf:           # the second row's image is gone too
        zf.writestr("OmniSpatial-test/data.json", json.dumps(data))
        for n, b in keep.items():
            zf.writestr(n, b)
    with pytest.raises(GlmvError) as e:
        check_tasks(EvalOptions(tasks="omnispatial", data_dir=tmp_path, check_only=True))
    msg = str(e.value)
    assert "task glmv_omnispatial: 2 row problem(s)" in msg
    assert "dataset 'qizekun/OmniSpatial' split 'test' row 1 column 'question': column missing (the rows have:" in msg
    assert ("dataset 'qizekun/OmniSpatial' split 'test' row 1 column 'image': image "
            f"'{z}!OmniSpatial-test/Spatial_Interaction/16.png' does not exist") in msg


def test_check_decodes_images_and_probes_videos(tmp_path):
    from glmv_cli.stages.eval import EvalOptions, check_tasks

    shutil.copytree(FIXTURES / "mvbench", tmp_path / "mvbench")
    (tmp_path / "mvbench" / "videos" / "clip.mp4").write_bytes(b"not a video")
    shutil.copytree(FIXTURES / "cvbench", tmp_path / "cvbench")
    (tmp_path / "cvbench" / "img" / "0.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(GlmvError) as e:
        check_tasks(EvalOptions(tasks="mvbench,cvbench", data_dir=tmp_path, check_only=True))
    msg = str(e.value)
    assert "task glmv_mvbench: 3 row problem(s)" in msg and "split 'train' row 0 column 'video':" in msg
    assert "task glmv_cvbench: 3 row problem(s)" in msg
    assert "row 0 column 'image': image cell is not a readable image" in msg


def test_hub_parquet_with_embedded_bytes_loads_through_image_features():
    """The fixture was written by ``datasets`` with an ``Image`` feature (as the Hub ships it): rows come
    back as ``{bytes, path}`` cells and decode to the PNG that was stored."""
    import datasets

    from glmv_cli.evaluation.data import load_rows, open_image
    from glmv_cli.evaluation.spec import load_spec

    f = next((FIXTURES / "hallusionbench" / "data").glob("image-*.parquet"))
    assert isinstance(datasets.load_dataset("parquet", data_files=str(f), split="train").features["image"], datasets.Image)
    spec = load_spec("glmv_hallusionbench")
    rows = load_rows(spec, FIXTURES)
    cell = rows[2].row["image"]
    assert isinstance(cell, dict) and cell["bytes"][:4] == b"\x89PNG"
    assert open_image(cell, rows[2].media).getpixel((0, 0)) == (30, 30, 160)
    assert [er.key for er in rows][:2] == ["image/0", "image/1"]


def test_explode_gives_one_row_per_referring_expression():
    from glmv_cli.evaluation.data import load_rows
    from glmv_cli.evaluation.spec import load_spec

    rows = load_rows(load_spec("glmv_refcoco_val"), FIXTURES)
    assert [er.key for er in rows] == ["val/0.0", "val/0.1", "val/1.0", "val/1.1", "val/1.2"]
    assert rows[4].row["answer"] == "Q-RC2c box on the right" and rows[4].row["bbox"] == [100, 0, 100, 100]


def test_offline_hub_miss_says_how_to_provide_it(tmp_path, monkeypatch):
    from glmv_cli.evaluation.data import load_rows
    from glmv_cli.evaluation.spec import load_spec

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(GlmvError) as e:
        load_rows(load_spec("glmv_mmmu_pro"))
    msg = str(e.value)
    assert "not in the local Hugging Face cache and the network is off" in msg
    assert "`hf download MMMU/MMMU_Pro --repo-type dataset`" in msg and "(configs: standard (10 options), vision)" in msg
