"""The model file: version 2 (codebook header, regression head), files of
version 1 (written by fastcolor before the format was versioned this way)
still load, and the bundled model is stored in the current version."""

import json
import pathlib
import re

import pytest
import safetensors
import torch

from fastcolor import Codebook, Colorizer
from fastcolor.inference import bundled_model_path
from fastcolor.models import Regression, build_model, convert, load_model, save_model
from fastcolor.models.modelfile import VERSION, read_header

DATA = pathlib.Path(__file__).parent / "data"


def _version(path):
    with safetensors.safe_open(str(path), framework="pt") as f:
        return int(f.metadata()["version"])


def test_bundled_model_is_stored_in_the_current_format():
    assert _version(bundled_model_path()) == VERSION == 2
    header, _ = read_header(bundled_model_path())
    assert header["head"]["kind"] == "classification"
    assert header["head"]["codebook"] == Codebook.zhang313().to_header()


def test_version_1_classification_file_loads_and_converts(tmp_path):
    src = DATA / "yuv_model_v1.safetensors"
    assert _version(src) == 1
    model, codebook, meta = load_model(src)
    assert (codebook.space, codebook.name, codebook.grid_step, len(codebook)) == ("yuv", "yuv16-data", (0.09, 0.13), 16)
    assert meta["temperature"] == 0.5 and meta["input_size"] == 64 and meta["class_weights"].shape == (16,)
    dst = tmp_path / "v2.safetensors"
    convert(src, dst)
    assert _version(dst) == 2
    model2, codebook2, meta2 = load_model(dst)
    assert codebook2 == codebook and torch.equal(meta2.pop("class_weights"), meta.pop("class_weights"))
    assert meta2 == meta
    for (k, v), (k2, v2) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_version_1_l2_file_loads_as_a_regression(tmp_path):
    src = DATA / "l2_model_v1.safetensors"
    model, codebook, meta = load_model(src)
    assert codebook is None and meta["regression"] == Regression("lab", 100.0)
    assert "regression_scale" not in meta and meta["loss"] == "l2"
    c = Colorizer.load(src, device="cpu")
    assert c.loss == "l2" and c.space == "lab" and c.regression_scale == 100.0
    out = c.colorize(torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0)))
    assert out.rgb.shape == (3, 20, 24)
    dst = tmp_path / "l2.safetensors"
    convert(src, dst)
    header, tensors = read_header(dst)
    assert header["head"] == {"kind": "regression", "space": "lab", "scale": 100.0}
    assert "codebook.centres" not in tensors


def test_codebook_files_of_version_1_load():
    cb = Codebook.load(DATA / "codebook_v1.safetensors")
    assert (cb.space, cb.name, len(cb)) == ("yuv", "yuv16-data", 16)


def test_codebook_header_round_trip_and_checks(tmp_path):
    cb = Codebook.zhang313()
    assert Codebook.from_header(cb.to_header(), cb.centres) == cb
    with pytest.raises(ValueError, match="313 bins but 5"):
        Codebook.from_header(cb.to_header(), cb.centres[:5])
    with pytest.raises(ValueError, match="lacks"):
        Codebook.from_header({"name": "x"}, cb.centres)
    cb.save(tmp_path / "cb.safetensors")
    assert Codebook.load(tmp_path / "cb.safetensors") == cb


def test_newer_and_damaged_headers_are_refused(tmp_path):
    model = build_model("colorunet", 4, width=0.125)
    cb = Codebook(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]), "lab")
    path = tmp_path / "m.safetensors"
    save_model(path, model, cb, {"input_size": 64})
    with safetensors.safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    newer = tmp_path / "newer.safetensors"
    safetensors.torch.save_file(tensors, str(newer), metadata={**metadata, "version": "3"})
    with pytest.raises(ValueError, match="newer than this fastcolor"):
        load_model(newer)
    header = json.loads(metadata["fastcolor"])
    header["head"] = {"kind": "mixture"}
    odd = tmp_path / "odd.safetensors"
    safetensors.torch.save_file(tensors, str(odd), metadata={**metadata, "fastcolor": json.dumps(header)})
    with pytest.raises(ValueError, match="damaged"):
        load_model(odd)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_neither_written_nor_read(tmp_path, value):
    """Finite or refuse: save_model refuses a diverged model; a file with NaN/inf
    weights (written by something else, or damaged) is refused at load."""
    model = build_model("colorunet", 4, width=0.125)
    cb = Codebook(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]), "lab")
    good = tmp_path / "good.safetensors"
    save_model(good, model, cb, {"input_size": 64})
    name = next(n for n, _ in model.named_parameters() if n.endswith("weight"))
    with torch.no_grad():
        dict(model.named_parameters())[name].view(-1)[3] = value
    bad = tmp_path / "bad.safetensors"
    with pytest.raises(ValueError, match=f"refusing to write {bad}: weight {name} holds NaN/inf values"):
        save_model(bad, model, cb, {"input_size": 64})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.safetensors"]  # no temporary file either
    with pytest.raises(ValueError, match="class_weights holds NaN/inf"):
        save_model(bad, build_model("colorunet", 4, width=0.125), cb, class_weights=torch.tensor([1.0, 2, value, 1]))

    with safetensors.safe_open(str(good), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    tensors[f"model.{name}"].view(-1)[3] = value
    safetensors.torch.save_file(tensors, str(bad), metadata=metadata)
    message = f"{bad}: weight {name} holds NaN/inf values (a diverged run or a damaged file)"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_model(bad)
    with pytest.raises(ValueError, match=re.escape(message)):
        Colorizer.load(bad, device="cpu")
