"""The one SAM loader: MobileSAM and micro-sam checkpoints in their real layouts, one lookup,
one model cache, and the choice of model by hardware.

Random checkpoints are written the way each project distributes them:

* MobileSAM ``mobile_sam.pt``: a plain state dict of the whole SAM (TinyViT encoder, with the
  unused classification head);
* micro-sam training container: ``{"model_state": {"sam.<key>": ...}, "decoder_state": ...}``;
* micro-sam exports on bioimage.io: a plain SAM state dict (``vit_b.pt``) and the decoder state in
  its own file (``vit_b_decoder.pt``), here under cellseek's local names;
* micro-sam's own cache: files named by the model key, without a suffix.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from cellseek.cli import models as models_cli  # noqa: E402
from cellseek.errors import MissingWeightsError  # noqa: E402
from cellseek.zoo import sam_loader as L  # noqa: E402
from cellseek.zoo.sam_arch import build_sam_model  # noqa: E402
from cellseek.zoo.sam_choice import choose_sam_model  # noqa: E402
from cellseek.zoo.sam_instance_decoder import build_instance_decoder  # noqa: E402
from cellseek.zoo.weights import IncompatibleWeightsError  # noqa: E402

SMALL_VIT = dict(img_size=128, depth=2, embed_dim=128, num_heads=2, global_attn_indexes=(1,))


@pytest.fixture(autouse=True)
def _homes(tmp_path, monkeypatch, no_packaged_weights):
    """No weights anywhere but where a test puts them."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("CELLSEEK_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CELLSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "microsam"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    L.clear_model_cache()
    yield
    L.clear_model_cache()


@pytest.fixture(scope="module")
def vit_t():
    torch.manual_seed(0)
    return build_sam_model("vit_t")


def _save(obj, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, str(path))
    return path


def _same(model, state):
    got = model.state_dict()
    for key, value in state.items():
        assert torch.equal(got[key], value), key


def test_mobile_sam_file_is_found_by_every_user_and_loads_key_for_key(tmp_path, vit_t):
    path = _save(vit_t.state_dict(), tmp_path / "weights" / "mobile_sam.pt")
    assert L.find_sam_checkpoint("vit_t").path == path
    assert "mobile_sam.pt" in models_cli.model_source(L.sam_spec("vit_t"))[1]
    model = L.load_sam("sam_vit_t", device="cpu")
    _same(model, vit_t.state_dict())
    assert model.cellseek_arch == "vit_t" and model.image_encoder.img_size == 1024
    assert L.load_sam("vit_t", device="cpu") is model  # one model per process
    assert choose_sam_model("cpu")[0] == "vit_t"
    from cellseek.zoo import load_embedder

    embedder = load_embedder("sam_vit_t", device="cpu")
    assert embedder.model is model  # the embedder shares the loader's model


def test_micro_sam_training_container_with_embedded_decoder(tmp_path, vit_t):
    torch.manual_seed(1)
    decoder = build_instance_decoder(conv_transpose=True)
    container = {
        "model_state": {f"sam.{k}": v for k, v in vit_t.state_dict().items()},
        "decoder_state": decoder.state_dict(),
        "config": {"model_type": "vit_t"},
    }
    _save(container, tmp_path / "weights" / "sam_vit_t_lm" / "best.pt")
    model = L.load_sam("vit_t_lm", device="cpu")
    _same(model, vit_t.state_dict())
    loaded = L.load_sam_decoder("vit_t_lm", device="cpu")
    _same(loaded, decoder.state_dict())
    assert loaded.conv_transpose
    assert L.load_sam_decoder("vit_t_lm", device="cpu") is loaded
    assert choose_sam_model("cpu")[0] == "vit_t_lm"


@pytest.mark.parametrize("name", ["vit_b_lm", "vit_l_lm"])
def test_micro_sam_export_with_separate_decoder_file(tmp_path, name):
    torch.manual_seed(2)
    sam = build_sam_model(name[:5], **SMALL_VIT)
    decoder = build_instance_decoder(conv_transpose=False)
    folder = tmp_path / "weights" / f"sam_{name}"
    _save(sam.state_dict(), folder / f"{name}.pt")
    _save(decoder.state_dict(), folder / f"{name}_decoder.pt")
    assert L.find_sam_checkpoint(name).path.name == f"{name}.pt"  # never the decoder
    assert L.find_sam_decoder(name).name == f"{name}_decoder.pt"
    _same(L.load_sam_decoder(name, device="cpu"), decoder.state_dict())
    table = models_cli.list_models_table()
    row = next(line for line in table.splitlines() if line.startswith(f"sam_{name} "))
    assert "yes (+decoder)" in row and f"{name}.pt" in row
    # without its decoder file the model still loads; it just has no decoder
    (folder / f"{name}_decoder.pt").unlink()
    L.clear_model_cache()
    assert L.load_sam_decoder(name, device="cpu") is None


def test_micro_sam_cache_files_without_suffix_are_found(tmp_path, vit_t):
    path = _save(vit_t.state_dict(), tmp_path / "microsam" / "models" / "vit_t_lm")
    found = L.find_sam_checkpoint("vit_t_lm")
    assert found.path == path and found.origin == "micro_sam_cache"
    assert L.load_sam("vit_t_lm", device="cpu").cellseek_checkpoint == path


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path, vit_t):
    _save(vit_t.state_dict(), tmp_path / "weights" / "sam_vit_b_01ec64.pth")
    with pytest.raises(IncompatibleWeightsError, match="vit_t encoder, not vit_b"):
        L.load_sam("vit_b", device="cpu")
    _save({"conv.weight": torch.zeros(2)}, tmp_path / "weights" / "mobile_sam.pt")
    with pytest.raises(IncompatibleWeightsError, match="not a SAM checkpoint"):
        L.load_sam("vit_t", device="cpu")


def test_choice_by_hardware(tmp_path):
    name, reason = choose_sam_model("cpu")
    assert name is None and "cellseek models pull sam_vit_t_lm" in reason
    for file in ("sam_vit_b_01ec64.pth", "vit_b_lm.pt"):
        (tmp_path / "weights").mkdir(exist_ok=True)
        (tmp_path / "weights" / file).write_bytes(b"x")  # lookup only, nothing is loaded
    name, reason = choose_sam_model("cpu")
    assert name == "vit_b_lm" and "slow on a CPU" in reason and "vit_b_lm.pt" in reason
    (tmp_path / "weights" / "mobile_sam.pt").write_bytes(b"x")
    assert choose_sam_model("cpu")[0] == "vit_t"
    name, reason = choose_sam_model("cuda")
    assert name == "vit_b_lm" and "GPU" in reason
    (tmp_path / "weights" / "vit_b_lm.pt").unlink()
    assert choose_sam_model("cuda")[0] == "vit_b"


def test_missing_weights_name_the_model_the_command_and_the_files():
    with pytest.raises(MissingWeightsError) as info:
        L.load_sam("vit_b_lm")
    message = str(info.value)
    assert "cellseek models pull sam_vit_b_lm" in message
    assert "diplomatic-bug/1.2/files/vit_b.pt (save it as vit_b_lm.pt)" in message
    assert "vit_b_decoder.pt (as vit_b_lm_decoder.pt)" in message
    assert np.isscalar(len(L.SAM_MODELS))


def test_sam_auto_availability_for_the_widget(tmp_path, vit_t):
    from cellseek.zoo import weights_available

    ok, hint = weights_available("sam_auto")
    assert not ok and "cellseek models pull sam_vit_t_lm" in hint
    _save(vit_t.state_dict(), tmp_path / "weights" / "mobile_sam.pt")
    ok, where = weights_available("sam_auto")
    assert ok and where.startswith("sam_vit_t:") and "mobile_sam.pt" in where
