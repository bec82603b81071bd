"""Where the examples write their figures (shared by the example scripts).

KETASIM_EXAMPLES_OUT: output folder (default: the current folder).
KETASIM_EXAMPLES_SMALL=1: small sizes (the test suite's smoke run).
KETASIM_GALLERY=1: also shrink the PNG to a 96-colour palette (the README gallery).
"""

import os
from pathlib import Path

SMALL = os.environ.get("KETASIM_EXAMPLES_SMALL") == "1"


def save(fig, name: str, dpi: int = 110) -> Path:
    """Write ``fig`` as ``<name>.png`` all-or-nothing (Ctrl-C or a full disk leaves any older
    file as it was, never half a PNG)."""
    import io

    from ketasim.io import atomic_write

    out = Path(os.environ.get("KETASIM_EXAMPLES_OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    gallery = os.environ.get("KETASIM_GALLERY") == "1"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72 if gallery else dpi, metadata={"Software": "ketasim"})
    data = buf.getvalue()
    if gallery:
        from PIL import Image  # comes with matplotlib

        small = io.BytesIO()
        with Image.open(io.BytesIO(data)) as im:
            im.convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(
                small, format="png", optimize=True)
        data = small.getvalue()
    atomic_write(path, data, "wb")
    print(f"wrote {path}")
    return path
