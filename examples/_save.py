"""Where the examples write their figures (shared by the example scripts).

KETASIM_EXAMPLES_OUT: output folder (default: the current folder).
KETASIM_EXAMPLES_SMALL=1: small sizes (the test suite's smoke run).
KETASIM_GALLERY=1: also shrink the PNG to a 256-colour palette (the README gallery).
"""

import os
from pathlib import Path

SMALL = os.environ.get("KETASIM_EXAMPLES_SMALL") == "1"


def save(fig, name: str, dpi: int = 110) -> Path:
    out = Path(os.environ.get("KETASIM_EXAMPLES_OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    gallery = os.environ.get("KETASIM_GALLERY") == "1"
    fig.savefig(path, dpi=72 if gallery else dpi, metadata={"Software": "ketasim"})
    if gallery:
        from PIL import Image  # comes with matplotlib

        with Image.open(path) as im:
            im.convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(
                path, optimize=True)
    print(f"wrote {path}")
    return path
