"""Writes the JPEG decoding fixtures (Tests/Fixtures/images/jpeg/): small progressive JPEGs of
every layout the decoder treats differently, and the pixels Pillow decodes from them.

Needs only Pillow and NumPy (a development tool; the tests never need Python):

    python3 Scripts/make_jpeg_fixtures.py
"""
import os
import numpy
from PIL import Image
from fixture_io import write_raw

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "images", "jpeg")


def save_safetensors(path, arrays):
    """F16 (exact for 8-bit values)."""
    write_raw(path, {key: ("F16", value.shape, numpy.ascontiguousarray(value, dtype="<f2").tobytes())
                     for key, value in arrays.items()})


def picture(rng, h, w):
    """Gradients, edges and noise: many non-zero AC coefficients, so every refinement path runs."""
    y, x = numpy.mgrid[0:h, 0:w]
    base = numpy.stack([x * 255 / w, y * 255 / h, ((x // 7 + y // 5) % 2) * 200], -1)
    return (base + rng.normal(0, 25, (h, w, 3))).clip(0, 255).astype("uint8")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = numpy.random.default_rng(1)
    fixtures = {
        # name: (image, save options)
        "progressive_420.jpg": (Image.fromarray(picture(rng, 61, 83)), dict(progressive=True, quality=90)),
        "progressive_444_restarts.jpg": (Image.fromarray(picture(rng, 45, 70)),
                                         dict(progressive=True, quality=95, subsampling=0, restart_marker_blocks=3)),
        "progressive_422_optimized.jpg": (Image.fromarray(picture(rng, 50, 98)),
                                          dict(progressive=True, quality=80, subsampling=1, optimize=True)),
        "progressive_gray.jpg": (Image.fromarray(picture(rng, 37, 50)[:, :, 0]), dict(progressive=True, quality=92)),
        "progressive_cmyk.jpg": (Image.fromarray(picture(rng, 33, 41)).convert("CMYK"), dict(progressive=True, quality=90)),
        "baseline_420_restarts.jpg": (Image.fromarray(picture(rng, 64, 96)), dict(quality=85, restart_marker_rows=1)),
    }
    expected = {}
    for name, (image, options) in fixtures.items():
        path = os.path.join(OUT, name)
        image.save(path, **options)
        decoded = Image.open(path)
        assert decoded.info.get("progressive", 0) == int(options.get("progressive", False)), name
        expected[name.replace(".", "_")] = numpy.asarray(decoded.convert("RGB")).astype("float32")
    save_safetensors(os.path.join(OUT, "expected.safetensors"), expected)
    print("wrote", len(fixtures), "JPEGs and their Pillow pixels to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
