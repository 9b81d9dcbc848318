"""ONNX export (fastcolor.export, fastcolor export): the exported graph run in
onnxruntime on the CPU, at batch and image sizes other than the export's,
against fastcolor's own network + decode; the README snippet run as written."""

import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from fastcolor import Codebook, ops
from fastcolor.cli import main
from fastcolor.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from fastcolor.inference import Colorizer, bundled_model_path
from fastcolor.models import build_model, load_model, predict_padded, save_model

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-2  # ab (or UV) units
SHAPES = [(1, 37, 53), (3, 64, 64), (2, 20, 9), (4, 8, 8)]  # (N, H, W); the export traces (2, 27, 21)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(session, x):
    return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])


@torch.no_grad()
def _fastcolor(file, x, temperature=None):
    """fastcolor's own chroma for normalised lightness x: the network (padded) and the decode."""
    model, codebook, meta = load_model(file, map_location="cpu")
    logits = predict_padded(model.eval(), x)
    if codebook is None:
        return logits[:, :2] * meta["regression"]["scale"], logits
    t = meta["temperature"] if temperature is None else temperature
    return ops.annealed_mean(logits, codebook.centres, t), logits


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    for n, h, w in SHAPES:
        # smooth-ish lightness in the normalised range [-0.5, 0.5]
        yield torch.rand(n, 1, h, w, generator=g) - 0.5


def _compare(onnx_file, model_file, temperature=None):
    session = _session(onnx_file)
    for x in _inputs():
        got = _run(session, x)
        want, logits = _fastcolor(model_file, x, temperature)
        assert got.shape == want.shape, (tuple(x.shape), got.shape, want.shape)
        if temperature == 0:
            # The arg-max may flip only where the two top logits tie to rounding.
            top2 = logits.topk(2, dim=1).values
            gap = (top2[:, 0] - top2[:, 1])
            differs = (got - want).abs().amax(dim=1) > TOL
            assert (gap[differs] < 1e-4).all(), gap[differs]
            assert differs.float().mean() < 0.01
        else:
            assert (got - want).abs().max() <= TOL, (tuple(x.shape), (got - want).abs().max())


@pytest.fixture(scope="module")
def yuv_model(tmp_path_factory):
    """A small random ColorUNet on 32 UV bins."""
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    centres = torch.stack([torch.rand(32, generator=g) * 0.8 - 0.4, torch.rand(32, generator=g) * 1.2 - 0.6], 1)
    codebook = Codebook(centres, space="yuv", grid_step=(0.09, 0.13))
    path = tmp_path_factory.mktemp("models") / "unet.safetensors"
    save_model(path, build_model("colorunet", 32, width=0.5), codebook, {"input_size": 64, "temperature": 0.38})
    return path


@pytest.fixture(scope="module")
def bundled_onnx(tmp_path_factory):
    return export_onnx(None, tmp_path_factory.mktemp("onnx") / "bundled.onnx")


# ------------------------------------------------------------------ the graph against fastcolor


def test_bundled_model_matches_fastcolor(bundled_onnx):
    _compare(bundled_onnx, bundled_model_path())
    meta = {p.key: p.value for p in onnx.load(bundled_onnx).metadata_props}
    _, _, model_meta = load_model(bundled_model_path())
    assert meta["space"] == "lab" and meta["loss"] == "rebalanced"
    assert float(meta["temperature"]) == model_meta["temperature"]
    assert int(meta["input_size"]) == model_meta["input_size"] and meta["output_stride"] == "4"
    graph = onnx.load(bundled_onnx).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 1 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3])), dims


def test_bundled_model_at_temperature_zero_and_another(tmp_path):
    _compare(export_onnx(None, tmp_path / "t0.onnx", temperature=0), bundled_model_path(), temperature=0)
    _compare(export_onnx(None, tmp_path / "t038.onnx", temperature=0.38), bundled_model_path(), temperature=0.38)


def test_colorunet_matches_fastcolor(yuv_model, tmp_path):
    _compare(export_onnx(yuv_model, tmp_path / "u.onnx"), yuv_model)
    _compare(export_onnx(yuv_model, tmp_path / "u0.onnx", temperature=0), yuv_model, temperature=0)
    _compare(export_onnx(yuv_model, tmp_path / "u1.onnx", temperature=1.0), yuv_model, temperature=1.0)


def test_l2_model_matches_fastcolor(l2_model_file, tmp_path):
    out = export_onnx(l2_model_file, tmp_path / "l2.onnx")
    _compare(out, l2_model_file)
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["loss"] == "l2" and meta["temperature"] == ""


def test_export_from_a_colorizer_leaves_it_as_it_was(yuv_model, tmp_path):
    colorizer = Colorizer.load(yuv_model, device="cpu")
    before = {k: v.clone() for k, v in colorizer.model.state_dict().items()}
    export_onnx(colorizer, tmp_path / "c.onnx")
    assert not colorizer.model.training
    assert all(torch.equal(before[k], v) for k, v in colorizer.model.state_dict().items())
    _compare(tmp_path / "c.onnx", yuv_model)


# ------------------------------------------------------------------ the README snippet


def _snippet():
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- onnx-snippet: begin -->\s*```python\n(.*?)```\s*<!-- onnx-snippet: end -->", text, re.S)
    assert m, "README.md: the ONNX snippet markers are missing"
    return m.group(1)


def _photo(path, h=70, w=93):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([0.5 + 0.4 * np.sin(6 * x), 0.5 + 0.4 * np.cos(5 * y), 0.5 + 0.3 * np.sin(4 * (x + y))], -1)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path, quality=95)
    return path


@pytest.mark.parametrize("which", ["bundled", "colorunet"])
def test_readme_snippet_colorizes_like_fastcolor(which, yuv_model, tmp_path, monkeypatch):
    model = None if which == "bundled" else yuv_model
    monkeypatch.chdir(tmp_path)
    export_onnx(model, "colorizer.onnx")
    _photo(tmp_path / "photo.jpg")
    exec(compile(_snippet(), "README.md (onnx snippet)", "exec"), {"__name__": "snippet"})
    got = np.asarray(Image.open(tmp_path / "photo_color.png")).astype(np.int16)
    want = Colorizer.load(model, device="cpu").colorize(str(tmp_path / "photo.jpg")).rgb
    want = want.permute(1, 2, 0).numpy().astype(np.int16)
    diff = np.abs(got - want)
    # Pillow's and torch's bilinear resizes agree here (measured: identical uint8 images); a little slack
    # for rounding. A wrong temperature alone gives a mean difference of ~16.
    assert diff.mean() < 0.2 and diff.max() <= 3, (diff.mean(), diff.max())


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("t", [-1, float("nan"), float("inf"), "warm"])
def test_bad_temperature_is_refused(t, tmp_path):
    with pytest.raises(ValueError, match="temperature"):
        export_onnx(None, tmp_path / "m.onnx", temperature=t)
    assert list(tmp_path.iterdir()) == []


def test_l2_model_has_no_temperature(l2_model_file, tmp_path):
    with pytest.raises(ValueError, match="L2 model"):
        export_onnx(l2_model_file, tmp_path / "m.onnx", temperature=0.5)


def test_missing_and_non_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(tmp_path / "nope.safetensors", tmp_path / "m.onnx")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a fastcolor model"):
        export_onnx(junk, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_onnx(None, tmp_path / "m.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.safetensors"]


def test_a_failed_export_keeps_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")

    def broken(*args, **kwargs):
        Path(args[2]).write_bytes(b"half")
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_onnx(None, out)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left


def test_missing_onnx_package_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install onnx"):
        export_onnx(None, tmp_path / "m.onnx")
    assert main(["export", "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "pip install onnx" in err and "Traceback" not in err


# ------------------------------------------------------------------ command line


def test_cli_export(yuv_model, tmp_path, capsys):
    out = tmp_path / "sub" / "u.onnx"
    assert main(["export", str(yuv_model), "-o", str(out), "--temperature", "0.5"]) == 0
    assert str(out.resolve()) in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert float(meta["temperature"]) == 0.5 and meta["space"] == "yuv"
    _compare(out, yuv_model, temperature=0.5)


def test_cli_export_refuses_before_loading(l2_model_file, tmp_path, capsys):
    assert main(["export", str(l2_model_file), "-o", str(tmp_path / "m.onnx"), "-t", "0.2"]) == 2
    assert "L2 model" in capsys.readouterr().err
    assert main(["export", str(l2_model_file), "-o", str(tmp_path / "m.pt")]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
