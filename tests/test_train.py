"""fastcolor.train: runs, exact resume after SIGKILL, DDP on gloo, L2 and backends, errors."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

import fastcolor
from fastcolor import train as tr
from fastcolor.color.codebook import Codebook
from fastcolor.models import load_model
from fastcolor.train.checkpoint import saved_statistics
from fastcolor.train.config import build_parser
from fastcolor.train.schedule import time_limited_step

ROOT = Path(__file__).resolve().parents[1]


def make_photos(folder, n=12, seed=0, size=(72, 56)):
    """n smooth synthetic photos whose colour is a function of their lightness
    (trivially learnable): rgb = (t, t^2, 1 - t) for a smooth field t."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(n):
        a, b, c, f = rng.uniform(-1, 1, 4)
        t = np.clip(0.5 + 0.6 * (a * x + b * y + c * np.sin((3 + f) * x + 2 * y)), 0, 1)
        rgb = np.stack([t, t**2, 1 - t], -1)
        Image.fromarray((rgb * 255).round().astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture
def photos(tmp_path, gen):
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    make_photos(tmp_path / "data" / "train", seed=seed)
    make_photos(tmp_path / "data" / "val", n=4, seed=seed + 1)
    return tmp_path / "data" / "train"


@pytest.fixture(autouse=True)
def restore_backend():
    before = fastcolor.get_backend()
    yield
    fastcolor.set_backend(before)


# One CPU thread in every run (in-process and subprocesses): these networks are tiny,
# and on a shared, loaded machine OpenMP barriers across threads cost 100x the work.
# The resume test also needs the same thread count everywhere (reductions split by thread).
THREADS_ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Every test of this module on one torch thread (see conftest)."""


TINY_UNET = ["--arch", "colorunet", "--width", "0.25", "--codebook", "data", "--bins", "8", "--space", "yuv",
             "--crop", "32", "--batch", "4", "--no-progress", "--device", "cpu"]
TINY_ECCV = ["--arch", "eccv16", "--width", "0.125", "--crop", "32", "--batch", "3", "--no-progress", "--device", "cpu"]


def read_log(run):
    return [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines()]


def assert_learned(run, steps):
    """steps finite training losses, the last ones lower than the first, and a sane validation."""
    log = read_log(run)
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == steps and all(np.isfinite(losses))
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    val = [r for r in log if "val_auc" in r][-1]
    assert np.isfinite(val["val_loss"]) and 0 <= val["val_auc"] <= 1


def weights(run):
    return safetensors.torch.load_file(str(Path(run) / "model.safetensors"))


def test_data_order_is_a_disjoint_resumable_function_of_the_step():
    n, batch, world = 10, 3, 2
    ranks = [tr.DataOrder(n, batch, seed=7, rank=r, world_size=world) for r in range(world)]
    stream = [key for step in range(5) for r in ranks for key in r.keys(step)]
    for epoch in range(2):  # each epoch is a permutation of the images
        assert sorted(i for e, i in stream if e == epoch) == list(range(n))
    fresh = tr.DataOrder(n, batch, seed=7, rank=1, world_size=world)
    assert fresh.keys(4) == ranks[1].keys(4)  # no hidden state
    assert tr.DataOrder(n, batch, seed=8).keys(0) != tr.DataOrder(n, batch, seed=7).keys(0)


def test_schedule_warms_up_then_decays_to_the_floor():
    c = tr.TrainConfig(data="d", out="o", lr=1.0, steps=100, warmup=10)
    lrs = [tr.lr_at(s, c) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_time_limit_stretches_the_schedule_to_the_clock():
    assert time_limited_step(10, 100, elapsed=5.0, time_limit=10.0) == (50, False)
    assert time_limited_step(80, 100, elapsed=5.0, time_limit=10.0) == (80, False)
    assert time_limited_step(3, 100, elapsed=12.0, time_limit=10.0) == (100, True)


def test_config_is_frozen_and_resolved_into_new_configs(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    c = tr.TrainConfig(data=str(tmp_path / "train"), out="o", codebook="data", space="yuv", steps=50,
                       device="cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.steps = 3
    r = c.resolved()
    assert (c.k, c.warmup, c.amp, c.val) == (None, None, "auto", "auto")  # untouched
    assert (r.k, r.warmup, r.amp, r.val, r.sigma) == (1, 5, "off", str(tmp_path / "val"), None)
    assert r.resolved() == r
    final = r.for_run(sigma=0.05, device="cpu")
    assert final.sigma == 0.05 and r.sigma is None
    with pytest.raises(ValueError, match="lam"):
        tr.TrainConfig(data="d", out="o", lam=2).resolved()


def test_help_gives_every_flag_a_text_and_its_default():
    parser = build_parser()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help and ("default" in action.help or action.required), action.option_strings
    text = " ".join(parser.format_help().split())  # unwrapped
    assert "(default: 0.0003)" in text and "(default: 5 for zhang313, 1 for data)" in text
    config = tr.TrainConfig(data="d", out="o")
    args = vars(parser.parse_args(["--data", "d", "--out", "o"]))  # every default is TrainConfig's
    assert {k: getattr(config, k) for k in args} == args


def test_checkpoints_with_the_first_codebook_header_still_read():
    codebook = Codebook.zhang313()
    tensors = {"codebook.centres": codebook.centres, "prior": torch.full((313,), 1 / 313),
               "class_weights": torch.ones(313)}
    for header in (codebook.to_header(), {"space": "lab", "grid_step": [10.0, 10.0], "name": "zhang313"}):
        cb, prior, weights, sigma = saved_statistics(tensors, {"codebook": header, "config": {"sigma": 5.0}})
        assert torch.equal(cb.centres, codebook.centres) and cb.name == "zhang313" and cb.grid_step == (10.0, 10.0)
        assert sigma == 5.0 and prior is tensors["prior"] and weights is tensors["class_weights"]


def test_run_writes_files_and_learns(photos, tmp_path):
    run = tmp_path / "run"
    cfg = tr.TrainConfig(data=str(photos), out=str(run), arch="colorunet", width=0.25, codebook="data", bins=8,
                         space="yuv", crop=32, batch=4, steps=30, lr=3e-3, log_every=1, val_every=15,
                         ckpt_every=15, progress=False, device="cpu")
    assert tr.train(cfg) == run
    for name in ("model.safetensors", "checkpoint.safetensors", "log.jsonl", "config.json"):
        assert (run / name).is_file(), name
    log = read_log(run)
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    vals = [r for r in log if "val_auc" in r]
    assert [r["step"] for r in vals] == [15, 30]
    assert vals[-1].keys() == {"step", "val_loss", "val_auc", "val_auc_rebalanced", "val_colourfulness",
                               "val_colourfulness_true", "val_psnr", "val_images"}
    for key in ("val_loss", "val_auc", "val_auc_rebalanced", "val_colourfulness", "val_psnr"):
        assert np.isfinite(vals[-1][key])
    assert 0 <= vals[-1]["val_auc"] <= 1
    config = json.loads((run / "config.json").read_text())
    assert config["k"] == 1 and config["val"] == str(photos.parent / "val") and config["device"] == "cpu"
    assert config.keys() == {f.name for f in dataclasses.fields(tr.TrainConfig)}
    _, ckpt_meta = tr.read_checkpoint(run / "checkpoint.safetensors")
    assert ckpt_meta["config"] == config  # the final config, sigma included
    assert config["sigma"] is not None and ckpt_meta["codebook"]["bins"] == 8
    model, codebook, meta = load_model(run / "model.safetensors")
    assert model.config == {"arch": "colorunet", "num_bins": 8, "width": 0.25}
    assert codebook.space == "yuv" and len(codebook) == 8
    assert meta["temperature"] == 0.38 and meta["steps"] == 30 and meta["loss"] == "rebalanced"
    assert meta["class_weights"].shape == (8,)
    assert tr.checkpoint_step(run / "checkpoint.safetensors") == 30


def test_time_limit_ends_the_run_with_a_complete_model(photos, tmp_path):
    run = tmp_path / "run"
    cfg = tr.TrainConfig(data=str(photos), out=str(run), arch="colorunet", width=0.25, codebook="data", bins=8,
                         space="yuv", crop=32, batch=4, steps=100000, time_limit=1.0, lr=3e-3, log_every=1,
                         val_every=100000, ckpt_every=100000, progress=False, device="cpu")
    tr.train(cfg)
    log = read_log(run)
    stop = [r for r in log if r.get("stopped") == "time limit"]
    assert len(stop) == 1
    done = stop[0]["step"]
    assert 1 <= done < 100000
    # The last step still validates and writes the files, as a last step does.
    assert any("val_auc" in r and r["step"] == done for r in log)
    assert tr.checkpoint_step(run / "checkpoint.safetensors") == done
    _, ckpt_meta = tr.read_checkpoint(run / "checkpoint.safetensors")
    assert ckpt_meta["config"]["steps"] == done  # the run ended there
    assert json.loads((run / "config.json").read_text())["steps"] == 100000
    lrs = [r["lr"] for r in log if "lr" in r]
    assert lrs[-1] == pytest.approx(cfg.lr * cfg.final_lr_fraction, rel=0.05)  # the schedule was stretched to fit
    _, _, meta = load_model(run / "model.safetensors")
    assert meta["steps"] == done


RESUME_STEPS = 40


def resume_args(photos, workers):
    return [*TINY_ECCV, "--data", photos, "--steps", RESUME_STEPS, "--ckpt-every", 2, "--val-every", 20,
            "--workers", workers, "--log-every", 1]


@pytest.fixture(scope="module")
def resume_case(tmp_path_factory, one_thread):
    """Photos and an uninterrupted in-process run of RESUME_STEPS steps (--workers 0),
    shared by both worker counts: the data order must not depend on them."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"photo seed={seed}")
    root = tmp_path_factory.mktemp("resume")
    photos = make_photos(root / "train", seed=seed)
    whole = root / "whole"
    assert tr.main([*map(str, resume_args(photos, 0)), "--out", str(whole)]) == 0
    return photos, whole


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_and_resume_is_bit_identical(resume_case, tmp_path, workers):
    photos, whole = resume_case
    steps = RESUME_STEPS
    args = resume_args(photos, workers)
    killed = tmp_path / "killed"
    env = THREADS_ENV
    proc = subprocess.Popen([sys.executable, "-m", "fastcolor.train", *map(str, args), "--out", str(killed)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt, at = killed / "checkpoint.safetensors", None
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists():
                try:
                    at = tr.checkpoint_step(ckpt)
                except Exception:  # noqa: BLE001  (being replaced right now)
                    at = None
                if at is not None and at >= 4:
                    break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert at is not None and 4 <= at < steps, f"killed at checkpoint {at}"
    print(f"killed after the checkpoint of step {at}")

    resumed = subprocess.run([sys.executable, "-m", "fastcolor.train", *map(str, args), "--out", str(killed),
                              "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(killed), weights(whole)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the log of the resumed run continues without duplicated steps
    steps_logged = [r["step"] for r in read_log(killed) if "loss" in r]
    assert steps_logged == list(range(1, steps + 1))
    for key in ("loss", "val_auc"):
        logged = {r["step"]: r[key] for r in read_log(killed) if key in r}
        assert logged == {r["step"]: r[key] for r in read_log(whole) if key in r}


def test_ddp_on_gloo_shards_the_data(photos, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fastcolor.train", *map(str, TINY_UNET), "--data", str(photos), "--out", str(run),
           "--steps", "4", "--batch", "3", "--log-every", "2", "--val-every", "4", "--ckpt-every", "2",
           "--log-data-order"]
    done = subprocess.run(cmd, cwd=ROOT, env=THREADS_ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote") == 1  # rank 0 alone reports and writes
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.safetensors", "config.json", "log.jsonl",
                                                     "model.safetensors"]
    log = read_log(run)
    data = [r["data"] for r in log if "data" in r]
    assert len(data) == 4 and all(len(per_rank) == 2 for per_rank in data)
    seen = {0: [], 1: []}
    for per_rank in data:
        for rank, keys in enumerate(per_rank):
            assert len(keys) == 3
            seen[rank] += [tuple(k) for k in keys]
    first_epoch = [set(k for k in seen[r] if k[0] == 0) for r in (0, 1)]
    assert not (first_epoch[0] & first_epoch[1])
    assert len(first_epoch[0] | first_epoch[1]) == 12  # 4 steps x 6 images cover the 12 photos once
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert any("val_auc" in r for r in log)
    load_model(run / "model.safetensors")


def test_l2_loss_runs_and_saves_a_regression_model(photos, tmp_path):
    run = tmp_path / "l2"
    cfg = tr.TrainConfig(data=str(photos), out=str(run), arch="eccv16", width=0.125, loss="l2", crop=32, batch=3,
                         steps=3, log_every=1, val_every=3, progress=False, device="cpu")
    tr.train(cfg)
    log = read_log(run)
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    assert np.isfinite([r for r in log if "val_auc" in r][0]["val_auc"])
    model, codebook, meta = load_model(run / "model.safetensors")
    assert model.config["num_bins"] == 2 and meta["loss"] == "l2" and codebook is None
    assert meta["regression"] == {"space": "lab", "scale": 100.0}


def test_reference_backend_gives_the_fused_loss(photos, tmp_path):
    losses = {}
    before = fastcolor.get_backend()
    for backend in ("kernels", "reference"):
        cfg = tr.TrainConfig(data=str(photos), out=str(tmp_path / backend), arch="eccv16", width=0.125, crop=32,
                             batch=3, steps=1, log_every=1, val="none", progress=False, backend=backend, device="cpu")
        tr.train(cfg)
        losses[backend] = read_log(tmp_path / backend)[0]["loss"]
    assert fastcolor.get_backend() == before  # the run's backend is its own, not the process default
    assert losses["reference"] == pytest.approx(losses["kernels"], rel=1e-5)


def test_bad_input_fails_clearly(photos, tmp_path, capsys):
    """main() raises (the command line's one handler turns it into a line and exit code 2)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images found"):
        tr.main(["--data", str(empty), "--out", str(tmp_path / "r0")])

    with pytest.raises(ValueError, match="zhang313.*yuv"):
        tr.main(["--data", str(photos), "--out", str(tmp_path / "r1"), "--space", "yuv"])

    run = tmp_path / "r2"
    base = [*TINY_UNET, "--data", str(photos), "--out", str(run), "--steps", "2", "--val", "none"]
    assert tr.main(base) == 0
    with pytest.raises(ValueError, match="--resume"):
        tr.main(base)  # a run with a checkpoint is not overwritten silently
    with pytest.raises(ValueError) as info:
        tr.main([*base, "--resume", "--arch", "eccv16"])
    assert "arch" in str(info.value) and "colorunet" in str(info.value) and "eccv16" in str(info.value)
    assert tr.main([*base, "--overwrite"]) == 0


def test_bf16_autocast_trains_on_the_cpu(photos, tmp_path):
    """The GPU recipe's precision (amp="bf16": bf16 logits into the fused loss
    and decoder) run on the CPU, where autocast supports bf16 too."""
    run = tmp_path / "bf16"
    cfg = tr.TrainConfig(data=str(photos), out=str(run), arch="colorunet", width=0.25, codebook="data", bins=8,
                         space="yuv", crop=32, batch=4, steps=30, lr=3e-3, log_every=1, val_every=30,
                         ckpt_every=30, progress=False, device="cpu", amp="bf16")
    tr.train(cfg)
    assert_learned(run, 30)
    assert json.loads((run / "config.json").read_text())["amp"] == "bf16"
    model, _, _ = load_model(run / "model.safetensors")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps the weights in float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_the_cpu_and_learns_in_bf16(photos, tmp_path):
    """One GPU: the default device and precision (cuda, bf16 autocast, channels_last).
    In float32 the first step's loss equals the CPU's (same weights and crops; the
    noise on L is off because CUDA draws other random numbers)."""
    first = {}
    for device in ("cpu", "cuda"):
        cfg = tr.TrainConfig(data=str(photos), out=str(tmp_path / device), arch="eccv16", width=0.125, crop=32,
                             batch=3, steps=1, log_every=1, val="none", progress=False, device=device, amp="off",
                             light_noise=0.0)
        tr.train(cfg)
        first[device] = read_log(tmp_path / device)[0]["loss"]
    assert first["cuda"] == pytest.approx(first["cpu"], rel=1e-2)  # cuDNN may use TF32 convolutions

    run = tmp_path / "bf16"
    cfg = tr.TrainConfig(data=str(photos), out=str(run), arch="colorunet", width=0.25, codebook="data", bins=8,
                         space="yuv", crop=32, batch=4, steps=30, lr=3e-3, log_every=1, val_every=30,
                         ckpt_every=30, progress=False)
    tr.train(cfg)
    config = json.loads((run / "config.json").read_text())
    assert config["device"] == "cuda" and config["amp"] == "bf16"
    assert_learned(run, 30)
    load_model(run / "model.safetensors")  # loads on the CPU
