"""fastcolor.video_metrics on hand-made clips: identical frames, a known
shift, a known flicker, histograms whose Jensen-Shannon divergence is known,
agreement with fastcolor.evaluation, and the evaluate-video command."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fastcolor import evaluation
from fastcolor.cli import main as cli_main
from fastcolor.video_metrics import (VideoScorer, channel_histograms, evaluate_video, farneback_flow,
                                     format_report, jensen_shannon, occlusion_mask, report_json)

LN2 = math.log(2)


def _texture(h, w, seed):
    """Smooth random colour texture (3, h, w), uint8 in 50..180 (no clipping when tinted)."""
    g = torch.Generator().manual_seed(seed)
    t = F.interpolate(torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g), size=(h, w), mode="bicubic",
                      align_corners=False)[0]
    t = (t - t.amin((1, 2), keepdim=True)) / (t.amax((1, 2), keepdim=True) - t.amin((1, 2), keepdim=True))
    return (50 + 130 * t).round().to(torch.uint8)


def _shifted_clip(frames=5, step=2, h=48, w=64, seed=0):
    """A texture moving right by `step` pixels per frame (cropped from a wider one: no wrap-around)."""
    big = _texture(h, w + step * frames, seed)
    return [big[:, :, step * (frames - i): step * (frames - i) + w].clone() for i in range(frames)]


def _write_folder(path, frames):
    path.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f.permute(1, 2, 0).numpy()).save(path / f"frame{i}.png")
    return path


def _score(original, colorized):
    scorer = VideoScorer()
    for a, b in zip(original, colorized):
        scorer.add(a, b)
    return scorer.result()


def test_jensen_shannon_of_hand_computed_pairs():
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(LN2)
    # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4); KL(p||m) = ln(4/3) / 2, KL(q||m) = ln(4/3).
    assert jensen_shannon([2, 2], [7, 0]) == pytest.approx(0.75 * math.log(4 / 3))
    assert jensen_shannon([3, 1, 0], [3, 1, 0]) == 0
    np.testing.assert_allclose(jensen_shannon([[1, 0], [1, 1]], [[0, 1], [1, 1]]), [LN2, 0.0])


def test_channel_histograms_count_each_channel():
    rgb = torch.tensor([[[0, 0], [255, 7]], [[1, 1], [1, 1]], [[9, 8], [7, 6]]], dtype=torch.uint8)
    h = channel_histograms(rgb)
    assert h.shape == (3, 256) and (h.sum(1) == 4).all()
    assert h[0, 0] == 2 and h[0, 255] == 1 and h[0, 7] == 1 and h[1, 1] == 4 and h[2, 6] == 1


def test_cdc_of_known_histograms():
    black, white = torch.zeros(3, 8, 8, dtype=torch.uint8), torch.full((3, 8, 8), 255, dtype=torch.uint8)
    r = _score([black, white], [black, white])
    assert r["original"]["cdc"] == pytest.approx(LN2) and r["colorized"]["cdc"] == pytest.approx(LN2)
    assert r["original"]["cdc_gaps"] == {"1": pytest.approx(LN2), "2": None, "4": None}
    r = _score([black, white, black], [black, black, black])
    assert r["original"]["cdc_gaps"]["1"] == pytest.approx(LN2) and r["original"]["cdc_gaps"]["2"] == 0
    assert r["original"]["cdc"] == pytest.approx(LN2 / 2)
    assert r["colorized"]["cdc"] == 0


def test_identical_frames_score_zero(tmp_path):
    frames = [_texture(40, 56, seed=1)] * 6
    clip = _write_folder(tmp_path / "clip", frames)
    r = evaluate_video(clip, clip)
    assert r["frames"] == 6 and r["size"] == [56, 40]
    for row in ("colorized", "original", "gray"):
        assert r[row]["warp_rgb"] == pytest.approx(0, abs=1e-10) and r[row]["cdc"] == 0
    assert r["colorized"]["warp_ab"] == pytest.approx(0, abs=1e-6)
    assert r["colorized"]["auc"] == 1 and r["colorized"]["auc_rebalanced"] == 1
    assert r["colorized"]["colourfulness"] == pytest.approx(r["original"]["colourfulness"])
    assert r["gray"]["auc"] < 1 and r["gray"]["colourfulness"] < 1
    assert json.loads(report_json(r))["colorized"]["psnr"] is None  # inf: exact frames
    assert "colorized" in format_report(r)


def test_flow_of_a_known_shift():
    a, b = _shifted_clip(frames=2, step=3)
    gray = lambda t: np.ascontiguousarray(t.float().mean(0).round().byte().numpy())  # noqa: E731
    backward = farneback_flow(gray(b), gray(a))  # frame 1 -> frame 0: content came from 3 px to the left
    inner = backward[8:-8, 12:-12]
    np.testing.assert_allclose(inner.mean((0, 1)), [-3, 0], atol=0.15)
    mask = occlusion_mask(backward, farneback_flow(gray(a), gray(b)))
    assert mask[8:-8, 12:-12].mean() > 0.95
    assert mask[:, :3].mean() < 0.5  # revealed on the left: mostly nowhere in frame 0


def test_warping_error_follows_the_motion_and_measures_a_flicker():
    clip = _shifted_clip(frames=5, step=2)
    steady = _score(clip, clip)
    # Moving content, warped by the flow: a small error; the frames themselves differ a lot.
    assert steady["original"]["warp_rgb"] < 2e-3
    unwarped = np.mean([((a.float() - b.float()) / 255).square().sum(0).mean() for a, b in zip(clip, clip[1:])])
    assert unwarped > 20 * steady["original"]["warp_rgb"]
    # A red flicker of c on every other frame: consecutive frames differ by c in red everywhere.
    c = 40
    tint = torch.tensor([c, 0, 0], dtype=torch.uint8).view(3, 1, 1)
    flicker = [f + tint if i % 2 else f for i, f in enumerate(clip)]
    r = _score(clip, flicker)
    assert r["colorized"]["warp_rgb"] == pytest.approx((c / 255) ** 2 + steady["original"]["warp_rgb"], rel=0.1)
    assert r["colorized"]["warp_ab"] > 50 * steady["colorized"]["warp_ab"]
    assert r["original"]["warp_rgb"] == pytest.approx(steady["original"]["warp_rgb"])


def test_pairs_across_a_cut_of_the_original_are_left_out_within_shots():
    a = _shifted_clip(frames=4, step=2, seed=0)
    b = [f.flip(2) // 3 for f in _shifted_clip(frames=4, step=3, seed=5)]  # a darker scene moving the other way
    ra, rb, r = _score(a, a), _score(b, b), _score(a + b, a + b)
    assert ra["cuts"] == [] and rb["cuts"] == [] and r["cuts"] == [4]
    for key in ("warp_ab", "warp_rgb"):
        # Within shots: the mean over the 3 + 3 pairs inside the two shots, each scored as in its own clip.
        within = (3 * ra["original"][key] + 3 * rb["original"][key]) / 6
        assert r["original"][key + "_shots"] == pytest.approx(within, rel=1e-6)
        # All pairs: the pair across the cut too, whose 'error' is the change of scene.
        assert r["original"][key] > 3 * r["original"][key + "_shots"]
        assert ra["original"][key + "_shots"] == ra["original"][key]
    assert r["gray"]["warp_ab_shots"] == 0
    assert "cuts of the original before frames [4]" in format_report(r)


def test_accuracy_matches_the_evaluation_module():
    g = torch.Generator().manual_seed(3)
    original = [_texture(24, 32, seed=s) for s in (4, 5, 6)]
    colorized = [(f.float() + torch.randn(f.shape, generator=g) * 20).clamp(0, 255).to(torch.uint8) for f in original]
    r = _score(original, colorized)
    true = torch.stack(original).float() / 255
    pred = torch.stack(colorized).float() / 255
    want = evaluation.score(pred, true, evaluation.photo_prior([true]))
    for key in ("auc", "auc_rebalanced", "psnr"):
        assert r["colorized"][key] == pytest.approx(want[key], rel=1e-6), key
    assert r["colorized"]["colourfulness"] == pytest.approx(want["colourfulness"], rel=1e-6)
    assert r["original"]["colourfulness"] == pytest.approx(want["colourfulness_true"], rel=1e-6)


def _write_mp4(path, frames, fps=12):
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[2], frames[0].shape[1], "yuv444p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f.permute(1, 2, 0).numpy(), format="rgb24")))
        out.mux(stream.encode())
    return path


def test_evaluate_video_command(tmp_path, capsys):
    clip = _shifted_clip(frames=6, step=1, h=32, w=48)
    original = _write_mp4(tmp_path / "original.mp4", clip)
    tinted = _write_mp4(tmp_path / "tinted.mp4", [f // 2 + 40 for f in clip])
    assert cli_main(["evaluate-video", str(original), str(tinted), "--json", "--elapsed", "2"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frames"] == 6 and r["fps"] == pytest.approx(3.0) and r["size"] == [48, 32]
    assert set(r) >= {"colorized", "original", "gray", "evaluation_fps", "prior"}
    assert r["colorized"]["auc"] < 1 and r["original"]["warp_rgb"] < 5e-3
    target = tmp_path / "report.json"
    assert cli_main(["evaluate-video", str(original), str(original), "--json", str(target)]) == 0
    assert json.loads(target.read_text())["colorized"]["auc"] == 1
    assert cli_main(["evaluate-video", str(original), str(tinted), "--max-side", "24"]) == 0
    assert "32x21" not in capsys.readouterr().out  # a table, scored at 24x16
    assert cli_main(["evaluate-video", str(original), str(tinted), "--json", str(tinted)]) == 2


def test_evaluate_video_refuses_mismatched_clips(tmp_path, capsys):
    clip = _shifted_clip(frames=4, step=1, h=32, w=48)
    a = _write_folder(tmp_path / "a", clip)
    b = _write_folder(tmp_path / "b", clip[:3])
    c = _write_folder(tmp_path / "c", [f[:, :16] for f in clip])
    for args, message in [((a, b), "has 3 frames"), ((a, c), "colorized frame is"),
                          ((a, tmp_path / "none.mp4"), "no such file")]:
        capsys.readouterr()
        assert cli_main(["evaluate-video", str(args[0]), str(args[1])]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and err[0].startswith("fastcolor evaluate-video: error:")
