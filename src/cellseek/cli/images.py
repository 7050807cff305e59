"""What the image commands share: the inputs a user names, one image at a time, and a tally.

Every command that takes images (``segment``, ``embed``, ``suggest``) accepts files, folders,
glob patterns and list files (:func:`cellseek.io.inputs.collect_inputs`), processes every image
found, keeps going when one image fails, and ends with one line saying how many images it took,
skipped and could not read.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cellseek.errors import CellseekError
from cellseek.text import images_text

logger = logging.getLogger(__name__)


@dataclass
class Tally:
    """Per-image outcomes of one command."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, path, err: Exception) -> None:
        """Record a failed image and say why in one line on stderr."""
        self.failed.append((str(path), str(err)))
        print(f"cellseek: {err}" if str(path) in str(err) else f"cellseek: {path}: {err}",
              file=sys.stderr)

    def summary(self, skipped_because: str = "already in the store") -> str:
        """``"3 images: 2 done, 1 skipped (already in the store), 0 failed"``."""
        n = len(self.done) + len(self.skipped) + len(self.failed)
        skipped = f", {len(self.skipped)} skipped ({skipped_because})" if self.skipped else ""
        return (f"{images_text(n)}: {len(self.done)} done{skipped}, "
                f"{len(self.failed)} failed")

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, else 1."""
        return 1 if self.failed else 0


def image_inputs(specs: Sequence[str]) -> list[Path]:
    """Every image the user named (files, folders, globs, list files), in canonical order.

    Raises
    ------
    CellseekError
        Nothing matches a spec, or no image is found at all.
    """
    from cellseek.io.inputs import collect_inputs

    paths = collect_inputs(list(specs))
    if not paths:
        raise CellseekError(f"no images found in {', '.join(map(str, specs))}")
    return paths


def check_output_folder(output: Path, inputs: Sequence[str], images: Sequence = ()) -> None:
    """Refuse an output folder that is, or lies inside, a folder the user gave as input, or
    that holds (at any depth) an image being segmented.

    Label images written inside an input folder would be picked up as images by a later
    ``embed`` of that folder; and the folder marker that hides them
    (:data:`cellseek.io.inputs.LABELS_MARKER`) would hide every image below the output folder
    from later folder scans.
    """
    out = Path(output).expanduser().resolve()
    for spec in inputs:
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            continue
        folder = folder.resolve()
        if out == folder or folder in out.parents:
            raise CellseekError(
                f"{output}: the output folder lies inside the input folder {spec}; label images "
                "written there would be read as images later. Choose a folder outside it (-o).")
    for image in images:
        folder = Path(image).expanduser().resolve().parent
        if out == folder or out in folder.parents:
            raise CellseekError(
                f"{output}: the output folder holds the input image {image}; label images "
                "written there would be read as images later, and the folder would be skipped "
                "by later folder scans. Choose a folder outside it (-o).")
