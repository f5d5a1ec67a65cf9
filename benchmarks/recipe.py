"""Default-recipe search on CamVid's validation split: one factor at a time against a baseline.

    python benchmarks/recipe.py --epochs 6 --output runs/recipe
    python benchmarks/recipe.py --variants baseline,cce_dice --epochs 6 --output runs/recipe

Each variant is one ``segmentation-models train`` run (a subprocess, KERAS_BACKEND as set, default tensorflow) of
Unet-resnet18 from scratch at scale 0.5, batch 8, seed 0, with the baseline's arguments plus the variant's own.
Only train/ and val/ are read: the choice is made on validation mIoU (best epoch and last epoch), never on test/.
Runs that already finished in ``--output`` are read back, not run again, so the search can be resumed.

Writes ``<output>/recipe.json`` after every run and prints a markdown table (docs/camvid.md, "Default recipe").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "camvid"

BASELINE = [
    "--arch", "unet", "--backbone", "resnet18", "--encoder-weights", "none", "--scale", "0.5",
    "--batch-size", "8", "--lr", "2e-3", "--schedule", "cosine", "--optimizer", "adam",
    "--loss", "categorical_crossentropy", "--seed", "0", "--overlays", "0",
]  # fmt: skip

# name -> (arguments added to the baseline (later ones win), what it tests)
VARIANTS = {
    "baseline": ([], "Adam 2e-3, cosine, cross-entropy, augmentation on, whole frames"),
    "lr_1e-3": (["--lr", "1e-3"], "learning rate 1e-3 (the CLI default before this search)"),
    "lr_4e-3_warmup": (["--lr", "4e-3", "--warmup-epochs", "1"], "learning rate 4e-3 with a 1-epoch warm-up"),
    "cce_dice": (["--loss", "cce_dice_loss"], "cross-entropy + Dice"),
    "adamw_1e-4": (["--optimizer", "adamw", "--weight-decay", "1e-4"], "AdamW, weight decay 1e-4"),
    "no_augment": (["--no-augment"], "no flip/affine/color augmentation"),
    "crop_256": (["--crop", "256"], "random 256x256 crops instead of whole frames"),
}


def run_variant(name: str, args: argparse.Namespace) -> dict:
    """Train one variant (or read its finished run) and return its validation scores."""
    folder = Path(args.output) / name
    history_file = folder / "history.json"
    extra, _ = VARIANTS[name]
    command = [
        sys.executable, "-m", "segmentation_models", "train", "--data", str(args.data),
        "--epochs", str(args.epochs), *BASELINE, *extra, "--output", str(folder), "--quiet",
    ]  # fmt: skip
    finished = history_file.exists() and len(json.loads(history_file.read_text())) >= args.epochs
    if not finished:
        if folder.exists():
            command.append("--overwrite")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        started = time.time()
        with open(Path(args.output) / f"{name}.log", "w") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        print(f"{name}: {time.time() - started:.0f} s", flush=True)
    history = json.loads(history_file.read_text())
    val = [round(epoch["val_mean_iou"], 4) for epoch in history]
    return {
        "variant": name,
        "what": VARIANTS[name][1],
        "arguments": extra,
        "val_mean_iou_best": max(val),
        "best_epoch": val.index(max(val)) + 1,
        "val_mean_iou_last": val[-1],
        "val_mean_iou_per_epoch": val,
        "epoch_seconds": [epoch["seconds"] for epoch in history],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--output", default="runs/recipe")
    args = parser.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    Path(args.output).mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        results.append(run_variant(name, args))
        report = {
            "protocol": {
                "data": "CamVid train/ (367) -> val/ (101), 11 classes, void ignored; test/ not read",
                "epochs": args.epochs,
                "baseline": " ".join(BASELINE),
                "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
            },
            "results": results,
        }
        (Path(args.output) / "recipe.json").write_text(json.dumps(report, indent=1))
    base = next((r for r in results if r["variant"] == "baseline"), None)
    print("| variant | what | val mIoU best (epoch) | last | vs baseline (best) |")
    print("|---|---|---|---|---|")
    for r in results:
        delta = f"{r['val_mean_iou_best'] - base['val_mean_iou_best']:+.3f}" if base else "n/a"
        print(
            f"| {r['variant']} | {r['what']} | {r['val_mean_iou_best']:.3f} ({r['best_epoch']}) "
            f"| {r['val_mean_iou_last']:.3f} | {delta} |"
        )


if __name__ == "__main__":
    main()
