"""Run folders and the files the commands write: atomic writes, marker files, and loading a run's model.

A run folder of `segmentation-models train` (or `segmentation_models.training.train`) holds config.json (the
resolved configuration, see `segmentation_models.training.TrainConfig`), best.keras and last.keras. Every file
is written atomically (a temporary file in the same folder, then ``os.replace``): a crash never leaves a
half-written file under its final name. Folders the package made carry a marker file; only such a folder is ever
removed or replaced.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_FILE = "config.json"
# Marker files: a folder holding one was made by this package, and only such a folder is ever removed or
# replaced by a command (never a folder of the user's, e.g. the data or a folder given as --output by mistake).
RUN_MARKER = ".segmentation-models-run"
EXPORT_MARKER = ".segmentation-models-export"
PREDICTIONS_MARKER = ".segmentation-models-predictions"
EVALUATION_MARKER = ".segmentation-models-evaluation"
DEMO_MARKER = ".segmentation-models-demo"
CHECKPOINTS = "checkpoints"  # a training run's epoch checkpoints: <run>/checkpoints/epoch_0001.keras, ...
_CKPT = re.compile(r"^epoch_(\d{4,})\.keras$")
_UMASK = os.umask(0o022)
os.umask(_UMASK)


# ----------------------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def atomic_save_model(model, path: Path, links: Sequence[Path] = ()) -> None:
    """``model.save`` to a temporary ``.keras`` file beside ``path``, then ``os.replace`` (a crash never leaves a
    half-written model under the final name). ``links`` get the same file first (`atomic_link`: one write for
    several names)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        for link in links:
            atomic_link(tmp, link)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_link(source: Path, path: Path) -> None:
    """``path`` becomes the file ``source`` (a hard link, or a copy where links fail), replaced atomically. Files
    are only ever replaced whole, never changed in place, so names sharing one file stay independent."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_marker(folder: Path, marker: str, what: str) -> None:
    """Mark ``folder`` as made by the package (see `remove_marked_folder`)."""
    atomic_write_text(Path(folder) / marker, f"made by segmentation-models ({what}); it may replace this folder\n")


def is_marked(folder: Path, marker: str) -> bool:
    return (Path(folder) / marker).is_file()


def remove_marked_folder(folder: Path, marker: str, hint: str) -> None:
    """Remove ``folder`` if the package marked it with ``marker``; refuse (ValueError with ``hint``) otherwise."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir() or not is_marked(folder, marker):
        raise ValueError(
            f"{folder} exists and was not made by segmentation-models (no {marker} file in it): it is "
            f"never removed or replaced; {hint}"
        )
    shutil.rmtree(folder)


def prepare_output_folder(out: Path, marker: str, targets: Sequence[Path], overwrite: bool, what: str) -> None:
    """Make (and mark) an output folder for ``targets``. Files there are replaced only in a folder the package
    marked (its own earlier outputs) or with ``overwrite``; otherwise the first existing ones are named."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder: choose another --output")
    existing = [t for t in targets if Path(t).exists()]
    if existing and not overwrite and not is_marked(out, marker):
        shown = ", ".join(str(t) for t in existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise ValueError(
            f"{shown} already exist(s) in {out}, which segmentation-models did not make: nothing was "
            "written; choose another --output, or --overwrite to replace these files"
        )
    out.mkdir(parents=True, exist_ok=True)
    if not is_marked(out, marker):
        write_marker(out, marker, what)


def check_disjoint(out: Path, inputs: Sequence[str | Path | None], what: str) -> None:
    """Refuse an output folder that is or holds one of the ``inputs`` (e.g. the training data); one inside a data
    folder (data/runs/x) is fine: the data's own files are never touched there."""
    out = Path(out).resolve()
    for item in inputs:
        if not item:
            continue
        src = Path(item).resolve()
        if out == src or out in src.parents:
            raise ValueError(f"{what} {out} is or holds the input {src}: choose an --output that holds no input data")


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------------------- run folders
def load_run_config(path: str | Path) -> tuple[dict, Path]:
    """(config, model path) of a run folder or of a ``.keras`` file (whose folder holds config.json)."""
    path = Path(path)
    if path.is_dir():
        folder = path
        model = next((folder / n for n in ("best.keras", "last.keras") if (folder / n).is_file()), None)
        if model is None:
            raise ValueError(
                f"{folder} has no best.keras or last.keras: is it a run folder of `segmentation-models train`?"
            )
    elif path.is_file():
        folder, model = path.parent, path
    else:
        raise ValueError(f"{path} does not exist (give a run folder or a .keras file)")
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise ValueError(f"{cfg_path} is missing: the run's classes and preprocessing are recorded there")
    return json.loads(cfg_path.read_text()), model


def load_model(path: Path, compile: bool = False):
    """A ``.keras`` file, checked first: a truncated or damaged file is reported as such (not "File not found")."""
    import keras

    import segmentation_models  # noqa: F401  (registers the package's Keras objects)

    from .utils import verify_keras_archive

    verify_keras_archive(path)
    try:
        return keras.saving.load_model(path, compile=compile)
    except (zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path} is corrupt or truncated: {err}; use an intact copy") from None


def load_run_model(model_file: Path, config: dict):
    """`load_model`, then check that the model fits its run: classes, input channels and preprocessing."""
    model = load_model(model_file)
    check_model_fits_run(model, config, model_file)
    return model


def check_model_fits_run(model, config: dict, model_file: Path) -> None:
    """ValueError naming ``model_file`` when it does not predict the run's classes from RGB images, or when the
    run's recorded preprocessing is not its backbone's."""
    from .preprocessing import get_preprocessing

    names = config["classes"]["names"]
    source = f"the run's {CONFIG_FILE} ({Path(model_file).parent / CONFIG_FILE})"
    classes = model.outputs[0].shape[-1]
    if classes != len(names):
        raise ValueError(
            f"{model_file} predicts {classes} classes, but {source} declares {len(names)} ({names}): "
            "the model is not of this run; give the run folder it was trained in"
        )
    channels = model.input_shape[-1]
    if channels != 3:
        raise ValueError(
            f"{model_file} takes {channels}-channel images, but the commands read images as RGB "
            "(3 channels): use a model trained on 3-channel input"
        )
    recorded = config.get("preprocessing")
    mode = getattr(get_preprocessing(config["model"]["backbone"]), "mode", None)
    if recorded is not None and recorded != mode:
        raise ValueError(
            f"{source} records {recorded!r} preprocessing, but its backbone "
            f"{config['model']['backbone']!r} uses {mode!r}: the config was edited; restore it"
        )


# ----------------------------------------------------------------------------------------- training runs
def prepare_run_folder(out: Path, resume: bool, overwrite: bool, inputs=()) -> None:
    """Create (and mark) the run folder, after the inputs were checked. An existing folder is continued
    (``resume``), or replaced (``overwrite``) only when it is a run folder of this package; a marked run that never
    completed an epoch (a failed start) is started again. Never a folder that is or holds the data ``inputs``."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    check_disjoint(out, inputs, "run folder")
    if resume:
        out.mkdir(parents=True, exist_ok=True)
        for stale in list(out.glob(".*.tmp*")) + list((out / CHECKPOINTS).glob(".*.tmp*")):
            stale.unlink(missing_ok=True)  # temporary files of a run killed while writing
    elif out.is_dir() and any(out.iterdir()):
        never_started = is_marked(out, RUN_MARKER) and not _has_results(out)
        if not (overwrite or never_started):
            raise ValueError(
                f"run folder {out} already exists and is not empty: --resume continues it, --overwrite "
                "replaces it, or choose another --output"
            )
        if never_started and not overwrite:
            print(f"{out} holds a run that never completed an epoch: starting it again")
        remove_marked_folder(out, RUN_MARKER, "choose another --output (or remove it yourself)")
    out.mkdir(parents=True, exist_ok=True)
    if not is_marked(out, RUN_MARKER):
        write_marker(out, RUN_MARKER, "train")


def _has_results(out: Path) -> bool:
    """True when a run folder holds a model or a completed epoch."""
    return any((out / n).exists() for n in ("best.keras", "last.keras", "history.json")) or bool(_checkpoints(out))


def _checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the epoch checkpoints of a run folder, newest first."""
    folder = out / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name))] if folder.is_dir() else []
    return sorted(found, reverse=True)


def latest_checkpoint(out: Path) -> tuple[int, Path | None]:
    """(completed epochs, checkpoint path) of the newest intact checkpoint of a run folder, (0, None) for a run
    that never completed an epoch. A missing or corrupt newer one is reported; a run whose every checkpoint is
    lost is an error (it is never restarted silently)."""
    from .utils import verify_keras_archive

    found = _checkpoints(out)
    history = out / "history.json"
    recorded = len(json.loads(history.read_text())) if history.is_file() else 0
    newest = max([recorded] + [e for e, _ in found])
    for epoch, path in found:
        try:
            verify_keras_archive(path)
        except ValueError as err:
            print(f"warning: not resuming from {path}: {err}")
            continue
        if epoch < newest:
            print(
                f"the checkpoint of epoch {newest} is missing or corrupt: resuming from the newest intact one, "
                f"{path} (epochs {epoch + 1}..{newest} are trained again)"
            )
        return epoch, path
    if newest or _has_results(out):
        raise ValueError(
            f"--resume: {out / CHECKPOINTS} has no intact checkpoint, although {newest} epoch(s) were "
            "completed: the run cannot continue; --overwrite starts it again, or choose another --output"
        )
    print(f"{out} has no completed epoch: training starts at epoch 1")
    return 0, None
