"""fastcolor.train under hostile input: finite or refuse, configuration refused up
front, a diverging run, a full disk, a damaged or non-finite checkpoint, Ctrl-C."""

import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

from fastcolor import train as tr
from fastcolor.models import load_model
from fastcolor.train import loop

from test_train import ROOT, THREADS_ENV, TINY_ECCV, make_photos, read_log


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Every test of this module on one torch thread (see conftest)."""


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos") / "train", n=6, seed=5)


def tiny(photos, out, **kw):
    args = dict(data=str(photos), out=str(out), arch="eccv16", width=0.125, crop=32, batch=2, steps=4,
                ckpt_every=2, log_every=1, val="none", progress=False, device="cpu")
    return tr.TrainConfig(**{**args, **kw})


def assert_finite_run(run, step):
    """The run's checkpoint and model are those of `step`, read back (finite), no temporary files."""
    assert tr.checkpoint_step(run / "checkpoint.safetensors") == step
    tensors, meta = tr.read_checkpoint(run / "checkpoint.safetensors")  # checks every tensor
    assert meta["step"] == step
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
    _, _, model_meta = load_model(run / "model.safetensors")  # checks every tensor
    assert model_meta["steps"] == step
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "temporary files left"


def rewrite(path, change):
    """Rewrite a safetensors file with change(tensors) applied, its metadata kept."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = safetensors.torch.load_file(str(path))
    change(tensors)
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "-1"], "temperature must be a finite number >= 0"),
    (["--temperature", "nan"], "temperature must be a finite number"),
    (["--temperature", "inf"], "temperature must be a finite number"),
    (["--input-size", "4"], "input_size must be at least 8"),
    (["--time-limit", "nan"], "time_limit must be a finite number"),
    (["--time-limit", "-5"], "time_limit must be a finite number of seconds > 0"),
    (["--time-limit", "0"], "time_limit must be a finite number of seconds > 0"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
    (["--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["--device", "cuda:99"], "--device cuda:99, but torch sees"),
])
def test_bad_settings_are_refused_before_anything_is_written(photos, tmp_path, flags, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=re.escape(message)):
        tr.main(["--data", str(photos), "--out", str(out), *flags])
    assert not out.exists()


def test_bad_paths_are_refused_clearly(photos, tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("not a folder")
    with pytest.raises(ValueError, match=re.escape(f"--out {file} is a file; --out takes a run folder")):
        tr.main(["--data", str(photos), "--out", str(file)])
    image = next(photos.iterdir())
    with pytest.raises(ValueError, match=re.escape(f"--data {image} is a file; --data takes a folder of images")):
        tr.main(["--data", str(image), "--out", str(tmp_path / "r")])
    with pytest.raises(ValueError, match=re.escape(f"training folder {tmp_path / 'nope'} does not exist")):
        tr.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    with pytest.raises(ValueError, match=re.escape(f"--val {file} is a file")):
        tr.main(["--data", str(photos), "--out", str(tmp_path / "r"), "--val", str(file)])
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- divergence


def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_files(photos, tmp_path, monkeypatch):
    """Five sane steps, then an absurd learning rate: the run stops with one
    error naming the step; the checkpoint and model of step 5 stay (finite)."""
    monkeypatch.setattr(loop, "lr_at", lambda step, config: 1e-3 if step < 5 else 1e6)
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError) as info:
        tr.train(tiny(photos, run, steps=40, ckpt_every=5, log_every=50))  # log steps do not divide ckpt steps
    message = str(info.value)
    match = re.fullmatch(r"training diverged at step (\d+): (.*); the last good checkpoint \(step 5\) is kept", message)
    assert match, message
    assert 5 < int(match[1]) <= 10, message
    assert "the loss is nan" in match[2] or "the loss is inf" in match[2] or "holds NaN/inf values" in match[2]
    assert_finite_run(run, 5)
    assert read_log(run)[-1] == {"step": int(match[1]), "stopped": "diverged", "reason": match[2]}


def test_the_diverging_command_writes_nothing_non_finite(photos, tmp_path):
    """The finding's command (scaled down): a learning rate of 1e6 makes the loss NaN
    before the first checkpoint; the error is one line, nothing is written."""
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "fastcolor.train", "--data", str(photos), "--out", str(run), *TINY_ECCV,
         "--steps", "20", "--ckpt-every", "5", "--log-every", "50", "--lr", "1e6", "--val", "none"],
        cwd=ROOT, env=THREADS_ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr  # through fastcolor.errors.run: one line, no traceback
    lines = done.stderr.splitlines()
    assert lines[0] == "fastcolor train: training from step 0 to 20 on cpu" and len(lines) == 2, done.stderr
    assert re.fullmatch(r"fastcolor train: error: training diverged at step \d+: the loss is (nan|inf); "
                        r"no checkpoint was written yet", lines[1]), done.stderr
    assert not (run / "checkpoint.safetensors").exists() and not (run / "model.safetensors").exists()


def test_the_loss_watch_finds_the_first_bad_step():
    watch = loop.DivergenceWatch()
    assert watch.first_bad() is None
    for step, value in enumerate([1.0, 2.0, float("inf"), float("nan"), 3.0], start=1):
        watch.add(torch.tensor(value), step)
    assert watch.first_bad() == (3, math.inf)


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("failing", ["fastcolor.checkpoint", "fastcolor.model"])
def test_a_full_disk_keeps_the_previous_files(photos, tmp_path, monkeypatch, failing):
    """The second write of checkpoint (or model) fails with ENOSPC: OSError naming
    the file, the previous file intact, no temporary file left."""
    run = tmp_path / "run"
    real = safetensors.torch.save_file
    writes = []

    def save_file(tensors, filename, metadata=None):
        writes.append(metadata["format"])
        if metadata["format"] == failing and writes.count(failing) == 2:
            Path(filename).write_bytes(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    with pytest.raises(OSError) as info:
        tr.train(tiny(photos, run))
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    if failing == "fastcolor.checkpoint":
        assert info.value.filename == str(run / "checkpoint.safetensors")
        assert info.value.strerror == "No space left on device; the last good checkpoint (step 2) is kept"
        assert_finite_run(run, 2)
    else:
        assert info.value.filename == str(run / "model.safetensors")
        assert info.value.strerror == "No space left on device; the last good checkpoint (step 4) is kept"
        assert tr.checkpoint_step(run / "checkpoint.safetensors") == 4
        assert load_model(run / "model.safetensors")[2]["steps"] == 2
        assert not [p.name for p in run.iterdir() if p.name.startswith(".")]


@pytest.fixture
def finished(photos, tmp_path):
    run = tmp_path / "run"
    tr.train(tiny(photos, run, steps=4))
    return run


@pytest.mark.parametrize("key", ["optim.0.exp_avg_sq", "model.head.weight", "class_weights", "prior"])
def test_a_resume_from_a_non_finite_checkpoint_is_refused(photos, finished, key):
    ckpt = finished / "checkpoint.safetensors"

    def poison(tensors):
        tensors[key].view(-1)[0] = float("nan")

    rewrite(ckpt, poison)
    name = key.split(".", 1)[1] if key.startswith(("optim.", "model.")) else key
    with pytest.raises(ValueError, match=re.escape(name) + r" holds NaN/inf values .*--overwrite"):
        tr.train(tiny(photos, finished, steps=4, resume=True))


def test_a_damaged_checkpoint_says_what_to_do(photos, finished):
    ckpt = finished / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # cut short
    with pytest.raises(ValueError, match=r"damaged training checkpoint .*start over with --overwrite"):
        tr.train(tiny(photos, finished, steps=4, resume=True))
    with pytest.raises(ValueError, match="--overwrite"):
        tr.checkpoint_step(ckpt)
    assert tr.train(tiny(photos, finished, steps=2, overwrite=True)) == finished


def test_save_checkpoint_refuses_non_finite_state(photos, finished, tmp_path):
    """The last guard: save_checkpoint itself refuses NaN weights."""
    from fastcolor.color.codebook import Codebook
    from fastcolor.models import build_model
    from fastcolor.train.checkpoint import rng_state, save_checkpoint

    model = build_model("eccv16", 313, width=0.125)
    with torch.no_grad():
        model.head.bias[0] = float("inf")
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path / "ckpt.safetensors"
    with pytest.raises(ValueError, match=r"refusing to write .*weight head.bias holds NaN/inf"):
        save_checkpoint(path, config=tiny(photos, tmp_path).resolved(), step=1, model=model, optimizer=optimizer,
                        codebook=Codebook.zhang313(), prior=torch.full((313,), 1 / 313),
                        class_weights=torch.ones(313), data_order={}, rng=[rng_state(torch.device("cpu"))])
    assert not path.exists() and not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- Ctrl-C


def test_a_first_ctrl_c_waits_for_the_pair_of_files(sigint_enabled):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with loop.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("checkpoint")
            done.append("model")
    assert done == ["checkpoint", "model"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):  # a second one interrupts at once
        with loop.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("never")
    assert "never" not in done


@pytest.mark.parametrize("workers", [0, 2])
def test_ctrl_c_leaves_a_whole_checkpoint_and_says_where_to_resume(photos, tmp_path, workers, sigint_enabled):
    run = tmp_path / "run"
    err = tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "fastcolor.train", "--data", str(photos), "--out", str(run), *TINY_ECCV,
           "--steps", "100000", "--ckpt-every", "2", "--log-every", "1", "--val", "none", "--workers", str(workers)]
    with open(err, "w") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=THREADS_ENV, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if "training from step 0" in err.read_text() and (run / "checkpoint.safetensors").exists():
                break
            time.sleep(0.05)
        time.sleep(0.3)  # well inside the step loop, likely mid-write at some point
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)  # promptly
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    assert rc == 130 and "Traceback" not in text, (rc, text)  # through fastcolor.errors.run
    match = re.search(r"fastcolor train: interrupted after step (\d+); the last good checkpoint \(step (\d+)\) "
                      r"is kept \(continue with --resume\)", text)
    assert match, text
    at = int(match[2])
    assert at >= 2 and at % 2 == 0 and int(match[1]) >= at
    assert_finite_run(run, at)
    log = read_log(run)  # every line whole
    assert json.loads((run / "config.json").read_text())["workers"] == workers and log
