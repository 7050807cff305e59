"""Registry, presets and name resolution (no deep-learning imports needed)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from cellseek.errors import CellseekError
from cellseek.zoo import MODELS, PRESETS, get_spec, list_models, resolve_models
from cellseek.zoo.base import ModelSpec

DEEP = [n for n in MODELS if n != "classical"]


def test_every_spec_is_complete():
    for name in DEEP:
        spec = get_spec(name)
        assert isinstance(spec, ModelSpec)
        assert spec.name == name
        assert spec.backend and spec.factory.count(":") == 1
        assert spec.weights_id, name
        assert spec.dim > 0 and spec.input_size > 0
        assert len(spec.mean) == 3 and len(spec.std) == 3
        assert spec.licence and spec.source and spec.description
        assert spec.hub_repo or spec.url or spec.package, name


def test_expected_models_and_backends():
    expected = {
        "dinov2_vits14": ("timm", 384),
        "dinov2_vitb14": ("timm", 768),
        "convnext_tiny": ("timm", 768),
        "swin_tiny": ("timm", 768),
        "clip_vitb32": ("open_clip", 512),
        "vit_mae_base": ("transformers", 768),
        "dinobloom_s": ("dinobloom", 384),
        "dinobloom_b": ("dinobloom", 768),
        "sam_vit_b": ("sam", 256),
    }
    for name, (backend, dim) in expected.items():
        spec = get_spec(name)
        assert (spec.backend, spec.dim) == (backend, dim), name
    assert get_spec("sam_vit_b").factory == "cellseek.zoo.sam_backend:build"
    assert get_spec("sam_vit_b").weights_id == "sam_vit_b_01ec64.pth"
    assert get_spec("dinobloom_s").input_size == 224
    assert get_spec("dinov2_vits14").input_size % 14 == 0


def test_classical_spec_is_lazy_and_takes_dim_from_module():
    spec = get_spec("classical")
    assert spec.factory == "cellseek.zoo.classical:build"
    assert not spec.needs_weights
    try:
        from cellseek.zoo.classical import FEATURE_DIM
    except ImportError:
        pytest.skip("cellseek.zoo.classical not written yet")
    assert spec.dim == FEATURE_DIM


def test_presets():
    assert {"paper", "fast", "hematology", "offline"} <= set(PRESETS)
    assert len(PRESETS["paper"]) == 6
    assert PRESETS["offline"] == ("classical",)
    assert "classical" in PRESETS["hematology"]
    assert any(n.startswith("dinobloom") for n in PRESETS["hematology"])
    for preset, names in PRESETS.items():
        assert resolve_models(preset) == names
        assert all(n in MODELS for n in names), preset


def test_resolve_models_explicit_wins_and_dedups():
    assert resolve_models("paper", ["classical", "convnext_tiny", "classical"]) == (
        "classical",
        "convnext_tiny",
    )
    assert resolve_models(None, "classical") == ("classical",)


def test_unknown_names_give_clear_errors():
    with pytest.raises(CellseekError, match="unknown preset 'nope'.*paper"):
        resolve_models("nope")
    with pytest.raises(CellseekError, match="unknown model 'dino'.*dinov2_vits14"):
        resolve_models(None, ["dino"])
    with pytest.raises(CellseekError, match="unknown model 'x'.*classical"):
        get_spec("x")
    with pytest.raises(CellseekError, match="no models selected"):
        resolve_models()


def test_list_models_and_mapping():
    names = list_models()
    assert names == tuple(MODELS) and len(names) == len(MODELS)
    assert "dinov2_vits14" in MODELS and "nope" not in MODELS
    with pytest.raises(KeyError):
        MODELS["nope"]


def test_spec_replace_keeps_zoo_fields():
    spec = dataclasses.replace(get_spec("dinov2_vits14"), input_size=56)
    assert spec.input_size == 56 and spec.hub_repo == get_spec("dinov2_vits14").hub_repo


def test_zoo_import_is_light():
    code = (
        "import sys, cellseek.zoo, cellseek.cli.models\n"
        "cellseek.zoo.list_models(); cellseek.zoo.weights_available('dinov2_vits14')\n"
        "heavy = {'torch', 'timm', 'transformers', 'open_clip', 'segment_anything', 'faiss'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sam_entries_and_download_pins():
    import re

    from cellseek.zoo.sam_loader import SAM_MODELS

    sams = [n for n in MODELS if get_spec(n).backend == "sam"]
    assert sorted(sams) == sorted(f"sam_{m}" for m in SAM_MODELS)
    for name in DEEP:
        spec = get_spec(name)
        if spec.url and not spec.hub_repo:  # single files: a published digest to verify
            assert re.fullmatch(r"(sha256:[0-9a-f]{64}|xxh128:[0-9a-f]{32})", spec.checksum), name
        if spec.revision:
            assert re.fullmatch(r"[0-9a-f]{40}", spec.revision), name
    for name in ("sam_vit_b_lm", "sam_vit_l_lm", "sam_vit_t_lm"):
        spec = get_spec(name)
        assert spec.decoder_url.endswith("_decoder.pt") and spec.decoder_checksum
        assert spec.filename == f"{name[4:]}.pt" and spec.micro_sam_key == name[4:]
    assert get_spec("sam_vit_t").arch == "vit_t" and get_spec("sam_vit_t_lm").arch == "vit_t"
    assert get_spec("sam_vit_b").checksum.startswith("sha256:ec2df627")
