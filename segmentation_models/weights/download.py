"""Fetching weight files: mirror folders, the cache, verified downloads.

Order of search for a registered file ``F`` (its ``filename``):

1. each folder (or http(s) base URL) in ``SM_WEIGHTS_MIRROR`` (``os.pathsep``-separated): ``<mirror>/F``;
2. the cache: ``$KERAS_HOME/models/segmentation_models/F`` (``~/.keras/...`` by default);
3. the recorded URL (a local path or ``file://`` URL is read in place).

Every file is checked against its recorded hash before use. A download goes to a temporary file in
the cache folder and is renamed into place only once complete and verified, so a partial or corrupt
download is never used and never left behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .registry import WeightsEntry

__all__ = ["MIRROR_ENV", "WeightsDownloadError", "cache_dir", "fetch_weights", "file_hash"]

logger = logging.getLogger("segmentation_models")
MIRROR_ENV = "SM_WEIGHTS_MIRROR"
_CHUNK = 1 << 20


class WeightsDownloadError(OSError):
    """A weights file could not be obtained or failed verification."""


def cache_dir() -> Path:
    """The folder where downloaded weights are kept."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models" / "segmentation_models"


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, entry: WeightsEntry) -> bool:
    if entry.file_hash is None:
        return True
    return file_hash(path, entry.hash_algorithm) == entry.file_hash


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "ftp")


def _local_path(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("",) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(url).expanduser()
    return None


def _mirrors() -> list[str]:
    value = os.environ.get(MIRROR_ENV, "")
    parts: list[str] = []
    for item in value.split(os.pathsep):
        item = item.strip()
        if item:
            parts.append(item)
    return parts


def _download(url: str, target_dir: Path, entry: WeightsEntry, progress: bool, timeout: float) -> Path:
    """Download ``url`` into ``target_dir`` atomically; verify; return the final path."""
    target_dir.mkdir(parents=True, exist_ok=True)
    final = target_dir / entry.filename
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=target_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "segmentation-models-keras"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                bar = None
                if progress:
                    from keras.utils import Progbar

                    print(f"Downloading {entry.filename} from {url}")
                    bar = Progbar(total, unit_name="B")
                done = 0
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if bar is not None:
                        bar.update(done)
                if total is not None and done != total:
                    raise WeightsDownloadError(f"transfer of {url} ended after {done} of {total} bytes")
        if not _verify(tmp, entry):
            got = file_hash(tmp, entry.hash_algorithm)
            raise WeightsDownloadError(
                f"{entry.filename} downloaded from {url} has {entry.hash_algorithm} {got}, expected "
                f"{entry.file_hash}; the file was discarded (corrupt download or changed upstream file)."
            )
        os.replace(tmp, final)
        return final
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _offline_message(entry: WeightsEntry, errors: list[str]) -> str:
    mirror_hint = os.environ.get(MIRROR_ENV) or "/path/to/mirror"
    return (
        f"Could not obtain the {entry.name!r} weights of {entry.backbone!r}.\n"
        + "".join(f"  - {e}\n" for e in errors)
        + f"To use them on a machine without internet access, download\n    {entry.url}\n"
        f"elsewhere and place it as\n    {Path(mirror_hint) / entry.filename}\n"
        f"with {MIRROR_ENV}={mirror_hint} (or into the cache folder {cache_dir()}); "
        + (f"its {entry.hash_algorithm} must be {entry.file_hash}. " if entry.file_hash else "")
        + "Or pass encoder_weights=None to start from random weights."
    )


def fetch_weights(entry: WeightsEntry, progress: bool = True, timeout: float = 60.0) -> Path:
    """Return a local, verified path of ``entry``'s file, downloading it into the cache if needed."""
    errors: list[str] = []
    for mirror in _mirrors():
        if _is_url(mirror):
            url = mirror.rstrip("/") + "/" + entry.filename
            try:
                return _download(url, cache_dir(), entry, progress, timeout)
            except (OSError, urllib.error.URLError) as err:
                errors.append(f"mirror {url}: {err}")
            continue
        candidate = Path(mirror).expanduser() / entry.filename
        if candidate.is_file():
            if _verify(candidate, entry):
                return candidate
            errors.append(f"{candidate} does not match the recorded {entry.hash_algorithm} {entry.file_hash}")

    local = _local_path(entry.url)
    if local is not None:
        if not local.is_file():
            errors.append(f"{local} does not exist")
        elif _verify(local, entry):
            return local
        else:
            raise WeightsDownloadError(
                f"{local} has {entry.hash_algorithm} {file_hash(local, entry.hash_algorithm)}, "
                f"registered hash is {entry.file_hash}: refusing to use it."
            )
        raise WeightsDownloadError(_offline_message(entry, errors))

    cached = cache_dir() / entry.filename
    if cached.is_file():
        if _verify(cached, entry):
            return cached
        logger.warning("cached %s fails its hash check; removing it and downloading again", cached)
        cached.unlink(missing_ok=True)
    try:
        return _download(entry.url, cache_dir(), entry, progress, timeout)
    except WeightsDownloadError as err:
        if "discarded" in str(err):
            raise
        errors.append(str(err))
    except (OSError, urllib.error.URLError) as err:
        errors.append(f"download of {entry.url} failed: {getattr(err, 'reason', err)}")
    raise WeightsDownloadError(_offline_message(entry, errors))
