"""Pick the bundled model among trained candidates, ship it with its card.

    python tools/package_model.py --runs RUNS --val DATA/val --manifest DATA/manifest.json

RUNS holds the runs of tools/train_bundled.sh (or of the same commands on a
CPU): {colorunet,eccv16}_{rebalanced,l2}. Every run is evaluated on the
validation photos (fastcolor evaluate, both priors); the rebalanced run with
the higher rebalanced AuC becomes fastcolor/assets/colorizer.safetensors (with
its validation numbers in the file's metadata), and fastcolor/assets/MODEL_CARD.md
is written from the runs' configs, logs and these numbers.
"""

import argparse
import json
import os
import sys
from pathlib import Path


from fastcolor.atomic import write_bytes_atomic
from fastcolor.evaluation import evaluate
from fastcolor.models import load_model, save_model

ARCHS = ("colorunet", "eccv16")
MAX_MB = 15


def run_summary(run):
    config = json.loads((run / "config.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    steps = max(r["step"] for r in log)
    losses = [r for r in log if "loss" in r]
    return config, steps, losses


def pct(x):
    return f"{100 * x:.2f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, type=Path)
    p.add_argument("--val", required=True, type=Path)
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "fastcolor" / "assets")
    p.add_argument("--hardware", default="CPU")
    p.add_argument("--temperature", type=float, default=None,
                   help="annealed-mean T to ship (chosen on the validation photos); default: the run's (0.38)")
    p.add_argument("--temperature-note", default="", help="why that T, for the card")
    p.add_argument("--note", action="append", default=[], help="one more bullet for the card's Training section")
    args = p.parse_args(argv)

    results = {}
    for arch in ARCHS:
        for loss in ("rebalanced", "l2"):
            run = args.runs / f"{arch}_{loss}"
            if not (run / "model.safetensors").is_file():
                print(f"package_model: no model in {run}, skipped", file=sys.stderr)
                continue
            ev = {prior: evaluate(model=str(run), data=str(args.val), prior=prior, device="cpu", progress=False)
                  for prior in ("data", "imagenet")}
            results[(arch, loss)] = (run, ev)
            m = ev["data"]["model"]
            print(f"{arch:<10}{loss:<11} AuC {pct(m['auc'])}  rebalanced AuC {pct(m['auc_rebalanced'])}  "
                  f"colourfulness {m['colourfulness']:.2f}")
    candidates = [k for k in results if k[1] == "rebalanced"]
    if not candidates:
        sys.exit("package_model: no rebalanced run to package")
    best = max(candidates, key=lambda k: results[k][1]["data"]["model"]["auc_rebalanced"])
    run, ev = results[best]
    model, codebook, meta = load_model(run / "model.safetensors")
    ev_trained_t = ev
    if args.temperature is not None and args.temperature != meta.get("temperature"):
        ev = {prior: evaluate(model=str(run), data=str(args.val), prior=prior, device="cpu", progress=False,
                              temperature=args.temperature)
              for prior in ("data", "imagenet")}
        meta["temperature"] = args.temperature
    config, steps, losses = run_summary(run)
    gray = ev["data"]["gray"]
    numbers = {
        "val_images": ev["data"]["images"],
        "auc": ev["data"]["model"]["auc"], "auc_rebalanced": ev["data"]["model"]["auc_rebalanced"],
        "auc_rebalanced_imagenet_prior": ev["imagenet"]["model"]["auc_rebalanced"],
        "colourfulness": ev["data"]["model"]["colourfulness"], "psnr": ev["data"]["model"]["psnr"],
        "gray_auc": gray["auc"], "gray_auc_rebalanced": gray["auc_rebalanced"],
        "gray_auc_rebalanced_imagenet_prior": ev["imagenet"]["gray"]["auc_rebalanced"],
        "gray_psnr": gray["psnr"], "ground_truth_colourfulness": ev["data"]["ground_truth"]["colourfulness"],
    }
    twin = results.get((best[0], "l2"))
    if twin:
        numbers["l2_twin_colourfulness"] = twin[1]["data"]["model"]["colourfulness"]
        numbers["l2_twin_auc_rebalanced"] = twin[1]["data"]["model"]["auc_rebalanced"]
    class_weights = meta.pop("class_weights", None)
    regression = meta.pop("regression", None)  # an L2 model has a regression head, no codebook
    meta = {**meta, "validation": numbers, "trained_on": args.hardware}
    target = args.out / "colorizer.safetensors"
    save_model(target, model, codebook, meta, class_weights=class_weights, regression=regression)
    size_mb = os.path.getsize(target) / 2**20
    if size_mb > MAX_MB:
        sys.exit(f"package_model: {target} is {size_mb:.1f} MB, over the {MAX_MB} MB limit")
    params = sum(p.numel() for p in model.parameters())
    manifest = json.loads(args.manifest.read_text())
    photos = manifest["photos"]
    photos = photos.values() if isinstance(photos, dict) else photos
    by_source = {}
    for ph in photos:
        key = (ph.get("source", "?"), ph.get("split", "?"))
        by_source[key] = by_source.get(key, 0) + 1
    sources = sorted({k[0] for k in by_source})
    data_rows = "\n".join(
        f"| {s} | {by_source.get((s, 'train'), 0)} | {by_source.get((s, 'val'), 0)} |" for s in sources)

    rows = []

    def row(label, st, e):
        m, mi = e["data"]["model"], e["imagenet"]["model"]
        rows.append(f"| {label} | {st} | {pct(m['auc'])} | {pct(m['auc_rebalanced'])} | {pct(mi['auc_rebalanced'])} | "
                    f"{m['colourfulness']:.2f} | {m['psnr']:.2f} |")

    for (arch, loss), (r, e) in sorted(results.items()):
        st = run_summary(r)[1]
        t_note = f", T = {e['data']['temperature']}" if loss == "rebalanced" else ""
        row(f"{arch} {loss}{t_note}", st, e)
        if (arch, loss) == best and ev is not ev_trained_t:
            row(f"**{arch} {loss}, T = {meta['temperature']} (shipped)**", st, ev)
    gi = ev["imagenet"]["gray"]
    rows.append(f"| gray baseline (ab = 0) | - | {pct(gray['auc'])} | {pct(gray['auc_rebalanced'])} | "
                f"{pct(gi['auc_rebalanced'])} | {gray['colourfulness']:.2f} | {gray['psnr']:.2f} |")
    rows.append(f"| ground truth | - | - | - | - | {numbers['ground_truth_colourfulness']:.2f} | - |")
    table = "\n".join(rows)
    final_loss = losses[-1]["loss"] if losses else float("nan")

    def budget(r):
        c, st, _ = run_summary(r)
        limit = f", {c['time_limit'] / 60:.0f}-minute limit" if c.get("time_limit") else ""
        return f"{c['arch']} {c['loss']}: {st} steps of {c['batch']} on {c['device']}{limit}"

    budgets = "; ".join(budget(r) for _, (r, _) in sorted(results.items()))
    t_reason = "" if ev is ev_trained_t else (
        f", chosen on the validation photos instead of the trained {ev_trained_t['data']['temperature']} "
        "(both rows below)" + (f": {args.temperature_note}" if args.temperature_note else ""))
    card = f"""# fastcolor bundled model: {best[0]}, rebalanced loss

`fastcolor/assets/colorizer.safetensors` ({size_mb:.1f} MB), used by `fastcolor colorize` and
`fastcolor.Colorizer.load()` when no model is named. Written by `tools/package_model.py` from the
run `{run.name}`; the numbers below come from that script's evaluation.

## Model
- Architecture: `{model.config['arch']}`, width {model.config['width']}, {params:,} parameters,
  {model.config['num_bins']} output bins ({'logits at 1/4 resolution' if model.config['arch'] == 'eccv16' else 'logits at full resolution'}).
- Codebook: `{codebook.name}` ({codebook.space}, {len(codebook)} bins, grid step {list(codebook.grid_step)}).
- Prior: estimated from the training photos with `bin_histogram` and Gaussian smoothing
  (sigma = {config['sigma']}), rebalancing lambda = {config['lam']}; soft targets over the k = {config['k']} nearest bins.
- Input: the lightness ({'L of CIE Lab, (L - 50) / 100' if codebook.space == 'lab' else 'Y of BT.601 YUV, Y - 0.5'}),
  resized to {meta.get('input_size', 256)} x {meta.get('input_size', 256)}; chroma decoded by the annealed mean at
  T = {meta.get('temperature', 0.38)}, upsampled and joined with the full-resolution lightness.

## Training
- Data: the photo set of `fastcolor data` (docs/design.md, section 2.11; sources and licences per photo in its
  `manifest.json`), {sum(v for k, v in by_source.items() if k[1] == 'train')} training photos; validation photos are never trained on.

| source | train | val |
| --- | --- | --- |
{data_rows}

- Run: `fastcolor train --arch {config['arch']} --width {config['width']} --codebook {config['codebook']} --space {config['space']}
  {f"--bins {config['bins']} " if config['codebook'] == 'data' else ''}--lam {config['lam']} --lr {config['lr']} --batch {config['batch']} --crop {config['crop']}
  --cache --max-side {config['max_side']} --time-limit {config['time_limit']}`: {steps} steps of {config['batch']} random
  {config['crop']}x{config['crop']} crops (flips, noise {config['light_noise']} on the lightness), Adam (0.9, 0.99),
  weight decay {config['weight_decay']}, warm-up then cosine decay; on {args.hardware}; final training loss {final_loss:.3f}.
- The candidates and their budgets: {budgets}. The shipped one has the higher rebalanced AuC on the
  validation photos (at the temperature each run was trained with).
- Annealed-mean temperature: T = {meta['temperature']}{t_reason}.
{''.join(f"- {n}" + chr(10) for n in args.note)}
## Validation ({numbers['val_images']} photos, 256 x 256 centre crops, `fastcolor evaluate`)

AuC of per-pixel a*b* accuracy over thresholds 0..150 (%); rebalanced AuC weights pixels by the
inverse prior of their true bin (prior of the evaluated photos, or the released ImageNet prior);
colourfulness of Hasler & Suesstrunk; PSNR of the RGB result in dB.

| model | steps | AuC | rebalanced AuC | rebalanced AuC (ImageNet prior) | colourfulness | PSNR |
| --- | --- | --- | --- | --- | --- | --- |
{table}

## Limitations
A small network trained for {steps} steps on about 320 photos on a CPU: it knows sky, vegetation,
skin and wood tones roughly and little else; colours are often muted or blotchy, and objects whose
colour is not predictable from lightness get a guess or stay gray. For serious use, train on a
large photo collection with `fastcolor train` on a GPU.
"""
    write_bytes_atomic(args.out / "MODEL_CARD.md", card.encode())
    print(f"shipped {run} -> {target} ({size_mb:.1f} MB); card {args.out / 'MODEL_CARD.md'}")
    print(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
