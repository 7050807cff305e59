"""Write the reference fixtures of tests/zoo/data from MobileSAM's and torch_em's own code.

Not part of the test suite: it needs the MobileSAM sources (the `mobilesam-mirror` wheel, a
packaging of github.com/ChaoningZhang/MobileSAM) and torch_em's `model` package (the `torch-em`
wheel, unpacked; its package `__init__` pulls in data-loading dependencies, so it is bypassed):

    pip download --no-deps mobilesam-mirror torch-em -d /tmp/ref && cd /tmp/ref && unzip ...
    python scripts/make_zoo_reference_fixtures.py /tmp/ref/mobilesam /tmp/ref/torch_em

Writes key -> shape manifests and outputs on deterministic weights (tests/zoo/reference_weights.py)
that tests/zoo/test_tiny_vit.py and tests/zoo/test_sam_instance_decoder.py compare against.
"""

import json
import sys
import types
from pathlib import Path

import numpy as np
import torch  # noqa: TID253 - a standalone script

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "zoo"))
from reference_weights import deterministic_input, deterministic_state  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "zoo" / "data"


def mobile_sam(root):
    sys.path.insert(0, str(root))
    from mobile_sam.build_sam import build_sam_vit_t

    sam = build_sam_vit_t()
    shapes = {k: list(v.shape) for k, v in sam.state_dict().items()}
    (OUT / "mobile_sam_vit_t_keys.json").write_text(json.dumps(shapes, indent=0))
    enc = sam.image_encoder
    enc_shapes = {k: v.shape for k, v in enc.state_dict().items()}
    enc.load_state_dict(deterministic_state(enc_shapes))
    enc.eval()
    with torch.no_grad():
        out = enc(deterministic_input((1, 3, 1024, 1024)))
    np.save(OUT / "mobile_sam_vit_t_output.npy", out[0, :, ::8, ::8].numpy())


def torch_em_decoder(root):
    pkg = types.ModuleType("torch_em")
    pkg.__path__ = [str(root)]
    sys.modules["torch_em"] = pkg
    from segment_anything.modeling import ImageEncoderViT
    from torch_em.model.unetr import UNETR

    for transpose in (False, True):
        enc = ImageEncoderViT(img_size=64, embed_dim=32, depth=1, num_heads=1, window_size=4,
                              global_attn_indexes=(0,), out_chans=256)
        un = UNETR(backbone="sam", encoder=enc, out_channels=3, use_sam_stats=True,
                   final_activation="Sigmoid", use_skip_connection=False,
                   use_conv_transpose=transpose).eval()
        shapes = {k: list(v.shape) for k, v in un.state_dict().items()
                  if not k.startswith("encoder")}
        tag = "transposed" if transpose else "interpolated"
        (OUT / f"micro_sam_decoder_keys_{tag}.json").write_text(json.dumps(shapes, indent=0))
        un.load_state_dict({**un.state_dict(), **deterministic_state(shapes)})
        z12 = deterministic_input((1, 256, 4, 4))
        with torch.no_grad():  # micro_sam.instance_segmentation.DecoderAdapter._forward_impl
            z9 = un.deconv1(z12)
            z6 = un.deconv2(z9)
            z3 = un.deconv3(z6)
            z0 = un.deconv4(z3)
            x = un.deconv_out(un.decoder(un.base(z12), encoder_inputs=[z9, z6, z3]))
            x = un.final_activation(un.out_conv(un.decoder_head(torch.cat([x, z0], dim=1))))
        np.save(OUT / f"micro_sam_decoder_output_{tag}.npy", x[0].numpy())


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    mobile_sam(Path(sys.argv[1]))
    torch_em_decoder(Path(sys.argv[2]))
