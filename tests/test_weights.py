"""Pretrained weights: registry, verified download from a loopback server, cache, mirror, loading."""

import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models import weights as smw

from conftest import ON_TF
from helpers import write_model_as_keras2_h5

pytestmark = pytest.mark.skipif(
    not ON_TF, reason="downloading, verifying and caching files is backend-free: checked once, on the TensorFlow pass"
)


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    cut: set = set()

    def do_GET(self):  # noqa: N802
        name = self.path.lstrip("/")
        data = self.files.get(name)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if name in self.cut:  # announce the whole file, send half, hang up
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.cut = {}, set()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Own cache folder, no mirror, and the registry restored afterwards."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(smw.MIRROR_ENV, raising=False)
    monkeypatch.delenv(smw.REGISTRY_ENV, raising=False)
    saved = dict(smw.registry._WEIGHTS)
    yield tmp_path
    smw.registry._WEIGHTS.clear()
    smw.registry._WEIGHTS.update(saved)


def _resnet18_imagenet_file(path: Path) -> Path:
    """A file in the image-classifiers no-top layout for resnet18 (random values)."""
    backbone = sm.Backbones.get_backbone("resnet18", input_shape=(64, 64, 3), weights=None)
    rng = np.random.default_rng(3)
    for layer in backbone.layers:
        if layer.weights:
            layer.set_weights(
                [
                    rng.normal(0, 0.05, w.shape).astype("float32") + (1.0 if "variance" in v.name else 0.0)
                    for w, v in zip(layer.get_weights(), layer.weights)
                ]
            )
    return write_model_as_keras2_h5(backbone, path), backbone


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_published_entries_have_url_and_hash():
    entries = smw.available_weights()
    assert {e.backbone for e in entries} >= {
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "vgg16",
        "vgg19",
    }
    for e in entries:
        assert e.url.startswith("https://") and e.file_hash and len(e.file_hash) in (32, 64)
    assert smw.get_weights_entry("resnet34", "imagenet").file_hash == "8caaa0ad39d927cb8ba5385bf945d582"


def test_good_download_is_verified_cached_and_loaded(isolated, server):
    httpd, base = server
    path, backbone = _resnet18_imagenet_file(isolated / "src.h5")
    data = path.read_bytes()
    _Handler.files["r18.h5"] = data
    smw.register_weights("resnet18", "imagenet", f"{base}/r18.h5", _md5(data))
    model = sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights="imagenet")
    cached = smw.cache_dir() / "r18.h5"
    assert cached.read_bytes() == data
    np.testing.assert_array_equal(
        model.get_layer("conv0").get_weights()[0], backbone.get_layer("conv0").get_weights()[0]
    )
    np.testing.assert_array_equal(
        model.get_layer("bn_data").get_weights()[1], backbone.get_layer("bn_data").get_weights()[1]
    )
    # second use comes from the cache: the server no longer has it
    _Handler.files.clear()
    sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights="imagenet")
    assert list(smw.cache_dir().iterdir()) == [cached]


def test_wrong_hash_errors_and_caches_nothing(isolated, server):
    httpd, base = server
    _Handler.files["bad.h5"] = b"not the file you registered" * 100
    smw.register_weights("resnet18", "imagenet", f"{base}/bad.h5", "0" * 64)
    with pytest.raises(OSError, match="expected 0000"):
        sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights="imagenet")
    assert not smw.cache_dir().exists() or not any(smw.cache_dir().iterdir())


def test_cut_transfer_caches_nothing(isolated, server):
    httpd, base = server
    data = b"x" * 300_000
    _Handler.files["cut.h5"] = data
    _Handler.cut.add("cut.h5")
    smw.register_weights("resnet18", "imagenet", f"{base}/cut.h5", _md5(data))
    with pytest.raises(OSError):
        sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights="imagenet")
    assert not smw.cache_dir().exists() or not any(smw.cache_dir().iterdir())


def test_no_server_message_names_url_and_mirror_file(isolated, server):
    httpd, base = server
    port = httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    url = f"http://127.0.0.1:{port}/resnet18_imagenet_1000_no_top.h5"
    smw.register_weights("resnet18", "imagenet", url, "318e3ac0cd98d51e917526c9f62f0b50")
    with pytest.raises(OSError) as info:
        sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights="imagenet")
    text = str(info.value)
    assert url in text
    assert "resnet18_imagenet_1000_no_top.h5" in text and "SM_WEIGHTS_MIRROR" in text
    assert "318e3ac0cd98d51e917526c9f62f0b50" in text


def test_mirror_folder_serves_offline(isolated, monkeypatch):
    path, backbone = _resnet18_imagenet_file(isolated / "made.h5")
    mirror = isolated / "mirror"
    mirror.mkdir()
    entry = smw.register_weights(
        "resnet18",
        "imagenet",
        "http://127.0.0.1:9/nowhere/r18_no_top.h5",
        hashlib.sha256(path.read_bytes()).hexdigest(),
    )
    (mirror / entry.filename).write_bytes(path.read_bytes())
    monkeypatch.setenv(smw.MIRROR_ENV, str(mirror))
    model = sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights="imagenet")
    np.testing.assert_array_equal(
        model.get_layer("conv0").get_weights()[0], backbone.get_layer("conv0").get_weights()[0]
    )
    # a corrupted mirror copy is refused, not used
    (mirror / entry.filename).write_bytes(b"corrupt")
    with pytest.raises(OSError, match="does not match"):
        sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights="imagenet")


def test_registry_file_from_environment(isolated, monkeypatch):
    path, backbone = _resnet18_imagenet_file(isolated / "mine.h5")
    reg = isolated / "registry.json"
    reg.write_text(json.dumps([{"backbone": "resnet18", "name": "lab", "url": str(path), "hash": smw.file_hash(path)}]))
    monkeypatch.setenv(smw.REGISTRY_ENV, str(reg))
    model = sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights="lab")
    np.testing.assert_array_equal(
        model.get_layer("conv0").get_weights()[0], backbone.get_layer("conv0").get_weights()[0]
    )


def test_encoder_weights_as_path(isolated):
    path, backbone = _resnet18_imagenet_file(isolated / "r18.h5")
    model = sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=str(path))
    np.testing.assert_array_equal(
        model.get_layer("conv0").get_weights()[0], backbone.get_layer("conv0").get_weights()[0]
    )


def test_weights_of_another_backbone_name_mismatched_layers(isolated):
    path, _ = _resnet18_imagenet_file(isolated / "r18.h5")
    with pytest.raises(ValueError) as info:
        sm.Unet("resnet34", input_shape=(64, 64, 3), encoder_weights=str(path))
    assert "stage1_unit3" in str(info.value)  # resnet34 layers absent from the resnet18 file
    with pytest.raises(ValueError) as info:
        sm.Unet("vgg16", input_shape=(64, 64, 3), encoder_weights=str(path))
    assert "not in the model" in str(info.value) and "conv0" in str(info.value)


def test_cli_weights_download_prefetches(isolated, server, capsys):
    from segmentation_models.cli import main

    httpd, base = server
    path, _ = _resnet18_imagenet_file(isolated / "src.h5")
    data = path.read_bytes()
    _Handler.files["resnet18.h5"] = data
    smw.register_weights("resnet18", "imagenet", f"{base}/resnet18.h5", _md5(data))
    assert main(["weights", "download", "resnet18"]) == 0
    assert (smw.cache_dir() / "resnet18.h5").read_bytes() == data
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "vgg16" in out
