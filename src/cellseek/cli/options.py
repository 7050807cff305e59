"""Option types and the options every command shares, and the Config they make."""

from __future__ import annotations

import argparse


def at_least(low: int):
    """An argparse type: an integer not below ``low`` (a clear message otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def device(text: str) -> str:
    """An argparse type: ``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N``."""
    import re

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda, "
                                         "cuda:N or mps")
    return text


def fraction(text: str) -> float:
    """An argparse type: a number between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def sizes(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive integers."""
    parse = at_least(1)
    return tuple(parse(s) for s in text.split(",") if s.strip())


def config_from_args(args):
    """A :class:`cellseek.config.Config` from the common options."""
    from dataclasses import replace

    from cellseek.config import Config

    cfg = Config()
    embed = cfg.embed
    if getattr(args, "preset", None):
        embed = replace(embed, preset=args.preset)
    if getattr(args, "models", None) is not None:
        names = tuple(m.strip() for m in args.models.split(",") if m.strip())
        if not names:
            from cellseek.errors import CellseekError

            raise CellseekError(f"--models {args.models!r} names no model; give comma-separated "
                                "model names (see `cellseek models list`)")
        embed = replace(embed, models=names)
    if getattr(args, "weights_dir", None):
        embed = replace(embed, weights_dir=args.weights_dir)
    if getattr(args, "device", None):
        embed = replace(embed, device=args.device)
    segment = cfg.segment
    if getattr(args, "method", None):
        segment = replace(segment, method=args.method)
    if getattr(args, "min_area", None) is not None:
        segment = replace(segment, min_area=args.min_area)
    suggest = cfg.suggest
    if getattr(args, "threshold", None) is not None:
        suggest = replace(suggest, threshold=args.threshold)
    index = cfg.index
    if getattr(args, "pca", None) is not None:
        index = replace(index, pca_components=args.pca)
    weighting = cfg.weighting
    if getattr(args, "weighting", None):
        weighting = replace(weighting, mode=args.weighting)
    align = cfg.align
    if getattr(args, "align", None):
        align = replace(align, method=args.align)
    return replace(cfg, embed=embed, segment=segment, suggest=suggest, index=index,
                   weighting=weighting, align=align)


def add_common(p: argparse.ArgumentParser, *, models=True, segment=False,
            weights: bool | None = None) -> None:
    """The options every command that reads images or embeds shares."""
    from cellseek.config import SegmentConfig

    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    if models:
        p.add_argument("--preset", help="model preset of a new reference set: packaged (default, "
                       "or $CELLSEEK_PRESET; real models installed with cellseek), light "
                       "(hand-crafted features only; offline is its old name), fast, paper, "
                       "hematology")
        p.add_argument("--models", help="comma-separated model names (overrides --preset)")
    if models if weights is None else weights:
        p.add_argument("--weights-dir", help="local folder of model weights, SAM's included "
                       "(default $CELLSEEK_WEIGHTS_DIR)")
        p.add_argument("--device", type=device, help="auto (default), cpu, cuda or mps")
    if segment:
        p.add_argument("--method", choices=["auto", "sam", "classical"],
                       help="segmenter (default auto: SAM when its weights are present)")
        p.add_argument("--min-area", type=at_least(0),
                       help="drop objects smaller than this many pixels (default "
                       f"{SegmentConfig().min_area})")
        p.add_argument("--z-mode", default="all",
                       choices=["all", "index", "best_focus", "max", "mean"],
                       help="which planes of a z-stack to use (default all)")
