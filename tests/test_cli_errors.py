"""Every command ends in one line on error (fastcolor.errors) and plans its
outputs before any work (fastcolor.outputs): hostile inputs, for every command
build_parser registers, including the ones added later."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastcolor
from fastcolor import Codebook
from fastcolor.atomic import atomic_path, remove_stale_temp_files, temp_prefix, write_bytes_atomic
from fastcolor.cli import PASS_THROUGH, command_parsers, main
from fastcolor.errors import run
from fastcolor.models import build_model, save_model

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(7)
    model = build_model("eccv16", 313, width=0.125)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, model, Codebook.zhang313(), {"input_size": 64, "temperature": 0.38})
    return path


def _save(path, h=24, w=32, seed=0, gray=False):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w) if gray else (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _writable(folder):
    try:
        fd, probe = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.remove(probe)
    return True


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder this process cannot write in: a chmod 555 folder, or (as root,
    who ignores modes) /sys, which nobody can create files in."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if not _writable(folder):
            yield folder
            return
        if Path("/sys").is_dir() and not _writable("/sys"):
            yield Path("/sys")
            return
        pytest.skip("no read-only folder available")
    finally:
        folder.chmod(0o755)


def _lines(err):
    return [line for line in err.splitlines() if line.strip()]


def _assert_one_error_line(code, err, prog, codes=(2,)):
    assert code in codes, err
    assert "Traceback" not in err, err
    errors = [line for line in _lines(err) if ": error: " in line]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"{prog}: error: ") or errors[0].startswith("fastcolor: error: "), err
    return errors[0]


def _no_temp_files(folder):
    return [p for p in Path(folder).rglob("*") if p.name.startswith(".")] == []


# ------------------------------------------------------------------ every command, generic bad input


COMMANDS = sorted(command_parsers())


def test_every_registered_command_is_covered():
    """A new command must get bad-input cases below (and is then covered by the
    option-level tests automatically)."""
    assert set(COMMANDS) == set(BAD_INPUTS), "add the new command to BAD_INPUTS"
    assert set(PASS_THROUGH) <= set(COMMANDS)


def _typed_options(parser):
    """(option, bad value) for every option of parser that takes a checked value."""
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0:
            continue
        if action.choices:
            yield action.option_strings[0], "no-such-choice"
        elif action.type is not None:
            try:
                action.type("abc")
            except Exception:  # noqa: BLE001 - the type refuses it: a value to test
                yield action.option_strings[0], "abc"


OPTION_CASES = [(cmd, opt, bad) for cmd in COMMANDS for opt, bad in _typed_options(command_parsers()[cmd])]


@pytest.mark.parametrize("command, option, bad", OPTION_CASES, ids=[f"{c}{o}" for c, o, _ in OPTION_CASES])
def test_bad_option_values_give_one_line(command, option, bad, capsys):
    code = main([command, option, bad])
    line = _assert_one_error_line(code, capsys.readouterr().err, f"fastcolor {command}")
    assert option in line and not re.search(r"invalid _\w+ value", line), line


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_and_missing_value_give_one_line(command, capsys):
    _assert_one_error_line(main([command, "--no-such-option", "x"]), capsys.readouterr().err,
                           f"fastcolor {command}")
    options = [a.option_strings[0] for a in command_parsers()[command]._actions
               if a.option_strings and a.nargs is None and a.option_strings[0] not in ("-h", "--help")]
    if options:
        _assert_one_error_line(main([command, options[-1]]), capsys.readouterr().err, f"fastcolor {command}")


def _colorize_cases(t, model, readonly):
    photo = _save(t / "in" / "a.png")
    _save(t / "in" / "b.jpg", seed=1)
    (t / "afile.txt").write_text("x")
    m = ["--model", str(model), "--device", "cpu"]
    return {
        "missing input": ["colorize", str(t / "nope.png"), "-o", str(t / "o1"), *m],
        "output is an existing file": ["colorize", str(t / "in"), "-o", str(t / "afile.txt"), *m],
        "read-only output folder": ["colorize", str(t / "in"), "-o", str(readonly / "out"), *m],
        "bad suffix": ["colorize", str(t / "in"), "-o", str(t / "o2"), "--suffix", "xyz", *m],
        "output folder is the input folder": ["colorize", str(t / "in"), "-o", str(t / "in"), *m],
        "output is the input": ["colorize", str(photo), "-o", str(photo), *m],
        "missing model": ["colorize", str(photo), "-o", str(t / "o3"), "--model", str(t / "no.safetensors")],
        "model is a folder without a model": ["colorize", str(photo), "-o", str(t / "o4"), "--model", str(t / "in")],
    }


def _evaluate_cases(t, model, readonly):
    _save(t / "val" / "a.png")
    (t / "empty").mkdir()
    m = ["--model", str(model), "--device", "cpu", "--size", "16"]
    return {
        "missing data": ["evaluate", "--data", str(t / "nope"), *m],
        "data without images": ["evaluate", "--data", str(t / "empty"), *m],
        "json is an existing folder": ["evaluate", "--data", str(t / "val"), "--json", str(t / "val"), *m],
        "json in a read-only folder": ["evaluate", "--data", str(t / "val"), "--json", str(readonly / "m.json"), *m],
        "json under a file": ["evaluate", "--data", str(t / "val"), "--json", str(t / "val" / "a.png" / "m.json"), *m],
        "json is an input": ["evaluate", "--data", str(t / "val"), "--json", str(t / "val" / "a.png"), *m],
        "missing model": ["evaluate", "--data", str(t / "val"), "--model", str(t / "no.safetensors")],
    }


def _demo_cases(t, model, readonly):
    m = ["--model", str(model), "--height", "16"]
    (t / "folder").mkdir(exist_ok=True)
    return {
        "unknown format": ["demo", "-o", str(t / "d.xyz"), *m],
        "output is an existing folder": ["demo", "-o", str(t / "folder"), *m],
        "read-only folder": ["demo", "-o", str(readonly / "d.png"), *m],
        "missing model": ["demo", "-o", str(t / "d.png"), "--model", str(t / "no.safetensors")],
    }


def _train_cases(t, model, readonly):
    _save(t / "photos" / "a.png", 64, 64)
    s = ["--width", "0.125", "--batch", "2", "--crop", "64", "--threads", "1", "--no-progress", "--val", "none"]
    (t / "afile.txt").write_text("x")
    return {
        "missing data": ["train", "--data", str(t / "nope"), "--out", str(t / "run1"), *s],
        "data is a file": ["train", "--data", str(t / "afile.txt"), "--out", str(t / "run2"), *s],
        "out is a file": ["train", "--data", str(t / "photos"), "--out", str(t / "afile.txt"), *s],
        "read-only out": ["train", "--data", str(t / "photos"), "--out", str(readonly / "run"), *s],
    }


def _data_cases(t, model, readonly):
    (t / "afile.txt").write_text("x")
    return {  # all refused before anything is fetched: no network needed
        "out is a file": ["data", "--out", str(t / "afile.txt"), "--quiet"],
        "read-only out": ["data", "--out", str(readonly / "photos"), "--quiet"],
    }


def _export_cases(t, model, readonly):
    (t / "folder.onnx").mkdir(exist_ok=True)
    (t / "notamodel.safetensors").write_text("x")
    m = [str(model)]
    return {
        "not .onnx": ["export", *m, "-o", str(t / "m.txt")],
        "output is an existing folder": ["export", *m, "-o", str(t / "folder.onnx")],
        "read-only folder": ["export", *m, "-o", str(readonly / "m.onnx")],
        "output is the model": ["export", str(t / "notamodel.safetensors"), "-o", str(t / "notamodel.safetensors")],
        "missing model": ["export", str(t / "no.safetensors"), "-o", str(t / "m.onnx")],
        "not a model": ["export", str(t / "notamodel.safetensors"), "-o", str(t / "m.onnx")],
    }


def _serve_cases(t, model, readonly):
    (t / "notamodel.safetensors").write_text("x")
    (t / "emptydir").mkdir(exist_ok=True)
    return {  # all refused before the server starts
        "missing model": ["serve", "--model", str(t / "no.safetensors"), "--port", "1"],
        "not a model": ["serve", "--model", str(t / "notamodel.safetensors"), "--port", "1"],
        "model is a folder without a model": ["serve", "--model", str(t / "emptydir"), "--port", "1"],
    }


def _video_cases(t, model, readonly):
    _save(t / "reel" / "f1.png")
    _save(t / "reel" / "f2.png")
    (t / "notes.mp4").write_text("not a video")
    m = ["--model", str(model), "--device", "cpu"]
    return {  # all refused before the network runs
        "missing input": ["video", str(t / "nope.mp4"), "-o", str(t / "v.mp4"), *m],
        "not a video": ["video", str(t / "notes.mp4"), "-o", str(t / "v.mp4"), *m],
        "unknown output format": ["video", str(t / "reel"), "-o", str(t / "v.xyz"), *m],
        "read-only folder": ["video", str(t / "reel"), "-o", str(readonly / "v.mp4"), *m],
        "output folder not empty": ["video", str(t / "reel"), "-o", str(t / "reel") + "/", *m],
        "missing model": ["video", str(t / "reel"), "-o", str(t / "v.mp4"), "--model", str(t / "no.safetensors")],
    }


def _evaluate_video_cases(t, model, readonly):
    for name in ("a", "b"):
        _save(t / name / "f1.png")
        _save(t / name / "f2.png")
    _save(t / "a" / "f3.png")
    _save(t / "small" / "f1.png", 16, 8)
    (t / "notes.mp4").write_text("not a video")
    a, b = str(t / "a"), str(t / "b")
    return {
        "missing original": ["evaluate-video", str(t / "nope.mp4"), a],
        "not a video": ["evaluate-video", str(t / "notes.mp4"), a],
        "different frame counts": ["evaluate-video", a, b],
        "different sizes": ["evaluate-video", b, str(t / "small")],
        "json is an input": ["evaluate-video", str(t / "notes.mp4"), a, "--json", str(t / "notes.mp4")],
        "json in a read-only folder": ["evaluate-video", a, b, "--json", str(readonly / "m.json")],
    }


BAD_INPUTS = {"colorize": _colorize_cases, "evaluate": _evaluate_cases, "demo": _demo_cases,
              "train": _train_cases, "data": _data_cases, "export": _export_cases,
              "serve": _serve_cases, "video": _video_cases, "evaluate-video": _evaluate_video_cases}


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_inputs_give_one_line_and_no_traceback(command, tmp_path, model_file, readonly_dir, capsys,
                                                   monkeypatch):
    called = []
    monkeypatch.setattr(fastcolor.inference.Colorizer, "colorize_batch",
                        lambda *a, **k: called.append(1) or pytest.fail("the network ran"))
    for label, argv in BAD_INPUTS[command](tmp_path, model_file, readonly_dir).items():
        code = main(argv)
        err = capsys.readouterr().err
        line = _assert_one_error_line(code, err, f"fastcolor {command}")
        assert len(line) < 400, (label, line)
    assert not called


def test_a_bug_is_exit_3_with_the_traceback_saved(monkeypatch, capsys, tmp_path):
    import fastcolor.cli

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(fastcolor.cli, "_demo", broken)
    monkeypatch.delenv("FASTCOLOR_DEBUG", raising=False)
    assert main(["demo", "-o", str(tmp_path / "d.png")]) == 3
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "Traceback" not in err
    line = err.strip()
    assert line.startswith("fastcolor demo: error: internal error") and "RuntimeError: boom second line" in line
    log = Path(re.search(r"traceback in (\S+)\)", line).group(1))
    assert "Traceback" in log.read_text() and "boom" in log.read_text()
    log.unlink()
    assert main(["--debug", "demo", "-o", str(tmp_path / "d.png")]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "in broken" in err


def test_known_failures_map_to_exit_2(capsys):
    cases = [
        (OSError(errno.ENOSPC, "No space left on device", "/x/out.png"), "/x/out.png: no space left on device"),
        (PermissionError(errno.EACCES, "Permission denied", "/x"), "/x: permission denied"),
        (OSError(errno.EROFS, "Read-only file system", "/x"), "/x: read-only file system"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp/.t", None, "/x/out.json"), "/x/out.json: is a folder"),
        (FloatingPointError("loss is NaN at step 3"), "loss is NaN at step 3"),
        (FileNotFoundError("no such image file or folder: x"), "no such image file or folder: x"),
        (ValueError("bad\nmodel file"), "bad model file"),
    ]
    for exc, want in cases:
        def fail(argv, exc=exc):
            raise exc
        assert run(fail, [], "fastcolor train") == 2
        err = capsys.readouterr().err
        assert len(_lines(err)) == 1 and err.startswith(f"fastcolor train: error: {want}"), err

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run(interrupted, [], "fastcolor train") == 130
    assert capsys.readouterr().err == "fastcolor: interrupted\n"
    assert run(lambda argv: None, [], "x") == 0 and run(lambda argv: 1, [], "x") == 1


# ------------------------------------------------------------------ the findings


def test_output_folder_equal_to_the_input_folder_is_refused(tmp_path, model_file, capsys):
    """Finding 1: colorize d -o d replaced the original d/c.png."""
    d = tmp_path / "d"
    _save(d / "c.jpg")
    _save(d / "c.png", seed=1)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    m = ["--model", str(model_file), "--device", "cpu", "--batch-size", "1"]
    code = main(["colorize", str(d), "-o", str(d), *m])
    _assert_one_error_line(code, capsys.readouterr().err, "fastcolor colorize")
    # the same inputs named one by one: the output d/c.png (of c.jpg) is another input
    code = main(["colorize", str(d / "c.jpg"), str(d / "c.png"), "-o", str(d), *m])
    line = _assert_one_error_line(code, capsys.readouterr().err, "fastcolor colorize")
    assert "c.png" in line and "input" in line
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


@pytest.mark.parametrize("layout, want, renamed", [
    (["a/x.jpg", "b/x.jpg", "c/x.jpg"], {"x.png", "x_b.png", "x_c.png"}, 2),
    (["same/p/x.jpg", "same/q/x.png", "same/r/x.jpg", "same/s/x.bmp"],
     {"x.png", "x_png.png", "x_r.png", "x_bmp.png"}, 3),
    (["t/x_png.png", "t/x.jpg", "t/x.png"], {"x_png.png", "x.png", "x_2.png"}, 1),
])
def test_inputs_sharing_a_name_all_get_an_output(layout, want, renamed, tmp_path, model_file, capsys,
                                                 monkeypatch):
    """Finding 2: a third input with the same stem was dropped without a word."""
    monkeypatch.chdir(tmp_path)
    for i, rel in enumerate(layout):
        _save(rel, seed=i)
    inputs = ["same/*/x.*"] if layout[0].startswith("same") else layout
    args = ["colorize", *inputs, "-o", "out", "--model", str(model_file), "--device", "cpu", "--compare"]
    assert main(args) == 0
    err = capsys.readouterr().err
    got = {p.name for p in Path("out").iterdir()}
    assert got == want | {n.replace(".png", "_compare.png") for n in want}
    assert sum("->" in line and "another input's output" in line for line in err.splitlines()) == renamed
    assert main(args) == 0  # deterministic: a re-run writes the same names
    assert {p.name for p in Path("out").iterdir()} == got


def test_sidecars_never_collide_with_outputs(tmp_path, model_file, capsys):
    _save(tmp_path / "in" / "x.jpg")
    _save(tmp_path / "in" / "x_compare.jpg", seed=1)
    assert main(["colorize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model_file),
                 "--device", "cpu", "--compare"]) == 0
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert len(names) == 4 and {"x.png", "x_compare.png"} <= names


def test_rerun_with_output_inside_the_input_folder(tmp_path, model_file, capsys):
    """Finding 3: re-runs colorized the earlier outputs (out/out/out/)."""
    src = tmp_path / "photos"
    _save(src / "a.jpg")
    _save(src / "sub" / "b.png", seed=1)
    for glob_input in (False, False, True):
        inputs = [str(src / "*")] if glob_input else [str(src)]
        assert main(["colorize", *inputs, "-o", str(src / "out"), "--model", str(model_file), "--device", "cpu"]) == 0
        assert "2 images" in capsys.readouterr().err
    # the folder runs mirror the tree, the glob run names by file name; nothing from out/ was an input
    assert sorted(p.relative_to(src / "out").as_posix() for p in (src / "out").rglob("*.png")) == [
        "a.png", "b.png", "sub/b.png"]
    assert not (src / "out" / "out").exists()
    assert fastcolor.data.images.find_images([src], exclude=[src / "out"]) == sorted(
        [src / "a.jpg", src / "sub" / "b.png"], key=str)


def test_data_without_network_fails(tmp_path, monkeypatch, capsys):
    """Finding 7: offline, fastcolor data exited 0 with val-only photos and no train/ folder."""
    from fastcolor.data.photoset import recipe
    from fastcolor.data.photoset.recipe import Candidate, Source

    rng = np.random.default_rng(0)
    import io
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(buf, format="PNG")

    def offline(workdir):
        raise recipe.SourceError("Temporary failure in name resolution")

    def local(workdir):
        return "1.0", [Candidate("astronaut.png", buf.getvalue(), "public domain")]

    monkeypatch.setattr(recipe, "SOURCES", [Source("debian", "gcompris", offline),
                                            Source("skimage", "scikit-image", local, val_only=True)])
    code = main(["data", "--out", str(tmp_path / "photos"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    line = [line for line in err.splitlines() if ": error: " in line]
    assert len(line) == 1 and "no training photos" in line[0] and "name resolution" in line[0]


def test_confidence_with_an_l2_model_is_refused_before_any_image(tmp_path, l2_model_file, capsys, monkeypatch):
    """Finding 12."""
    _save(tmp_path / "a.png")
    monkeypatch.setattr(fastcolor.inference.Colorizer, "colorize_batch", lambda *a, **k: pytest.fail("ran"))
    code = main(["colorize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--confidence",
                 "--model", str(l2_model_file), "--device", "cpu"])
    line = _assert_one_error_line(code, capsys.readouterr().err, "fastcolor colorize")
    assert "--confidence" in line and not (tmp_path / "out").exists()


def test_evaluate_json_checked_before_the_evaluation(tmp_path, model_file, readonly_dir, capsys, monkeypatch):
    """Finding 12: --json to a folder or a read-only place failed after the whole evaluation."""
    _save(tmp_path / "val" / "a.png")
    monkeypatch.setattr(fastcolor.evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated"))
    for target in (tmp_path, readonly_dir / "m.json"):
        code = main(["evaluate", "--data", str(tmp_path / "val"), "--json", str(target), "--model", str(model_file)])
        _assert_one_error_line(code, capsys.readouterr().err, "fastcolor evaluate")


def test_evaluate_gray_photos_writes_valid_json(tmp_path, model_file, capsys):
    """Finding 15: PSNR inf was written as Infinity (not JSON)."""
    for i in range(2):
        Image.fromarray(np.full((16, 16), 100 + i, np.uint8)).save(tmp_path / f"{i}.png")
    out = tmp_path / "m.json"
    assert main(["evaluate", "--data", str(tmp_path), "--model", str(model_file), "--device", "cpu", "--size", "16",
                 "--json", str(out)]) == 0
    text = out.read_text()
    assert "Infinity" not in text and "NaN" not in text
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert report["gray"]["psnr"] is None and report["images"] == 2


def test_options_checked_before_the_network(tmp_path, model_file, capsys, monkeypatch):
    """Finding 15: --suffix was checked after every image went through the network;
    -t abc named _temperature."""
    _save(tmp_path / "a.png")
    _save(tmp_path / "b.png", seed=1)
    monkeypatch.setattr(fastcolor.inference.Colorizer, "load", lambda *a, **k: pytest.fail("model loaded"))
    for bad in (["--suffix", ".xyz"], ["--suffix", "psd"], ["-t", "abc"], ["--batch-size", "x"]):
        code = main(["colorize", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "o"), *bad])
        line = _assert_one_error_line(code, capsys.readouterr().err, "fastcolor colorize")
        assert "_temperature" not in line and "_positive" not in line
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ writes: full disk, interrupts, stale temp files


def test_full_disk_one_line_previous_file_intact(tmp_path, model_file, capsys, monkeypatch):
    src = _save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["colorize", str(src), "-o", str(out), "--model", str(model_file), "--device", "cpu"]
    assert main(args) == 0
    before = (out / "a.png").read_bytes()

    def full(self, fp, *a, **k):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", full)
    code = main(args + ["-t", "0"])
    line = _assert_one_error_line(code, capsys.readouterr().err, "fastcolor colorize")
    assert "no space left on device" in line
    assert (out / "a.png").read_bytes() == before and _no_temp_files(out)


def test_full_disk_on_the_json_report(tmp_path, model_file, capsys, monkeypatch):
    _save(tmp_path / "val" / "a.png")
    report = tmp_path / "m.json"
    report.write_text('{"old": 1}\n')
    real = Path.write_bytes

    def full(self, data):
        real(self, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    code = main(["evaluate", "--data", str(tmp_path / "val"), "--json", str(report), "--model", str(model_file),
                 "--device", "cpu", "--size", "16"])
    line = _assert_one_error_line(code, capsys.readouterr().err, "fastcolor evaluate")
    assert "no space left" in line and report.read_text() == '{"old": 1}\n' and _no_temp_files(tmp_path)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    """Finding 15: a killed checkpoint write left its full-size temporary file for good."""
    target = tmp_path / "checkpoint.safetensors"
    script = ("import sys, time; from fastcolor.atomic import atomic_path\n"
              f"with atomic_path({str(target)!r}) as tmp:\n"
              "    open(tmp, 'wb').write(b'x' * 1000000); print('writing', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    stale = list(tmp_path.glob(temp_prefix(target) + "*"))
    assert len(stale) == 1 and stale[0].stat().st_size == 1000000 and not target.exists()

    live = tmp_path / (stale[0].name.replace(f"-{proc.pid}-", f"-{os.getpid()}-"))
    live.write_bytes(b"a concurrent writer")  # this process: alive
    other_host = tmp_path / f"{temp_prefix(target)}otherhost-{_dead_pid()}-abcdefgh.tmp"
    other_host.write_bytes(b"a writer on another machine")
    unrelated = tmp_path / ".notes.txt"
    unrelated.write_text("x")
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new" and not stale[0].exists()
    assert live.exists() and other_host.exists() and unrelated.exists()
    assert remove_stale_temp_files(target) == []


def test_interrupted_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and _no_temp_files(tmp_path)


def test_sigint_stops_colorize_cleanly(tmp_path, model_file, sigint_enabled):
    """A real SIGINT in the middle of a run: exit code 130, one line, no
    traceback, every output under its final name complete, no temporary files."""
    src = tmp_path / "in"
    for i in range(40):
        _save(src / f"{i:02d}.png", 384, 512, seed=i)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("FASTCOLOR_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "fastcolor", "colorize", str(src), "-o", str(out),
                             "--model", str(model_file), "--device", "cpu", "--batch-size", "2", "--compare"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    started = proc.stderr.readline()
    assert "40 images" in started, started
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _lines(err) == ["fastcolor: interrupted"], err
    written = list(out.rglob("*")) if out.exists() else []
    assert len(written) < 80  # stopped before the end
    for p in written:
        assert not p.name.startswith("."), p  # no temporary file
        with Image.open(p) as im:
            im.load()  # complete
