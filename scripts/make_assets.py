"""Draw the built-in banner and logo PNGs and the preflight's test photo (include/platemask/assets/).

Sites replace the banner and logo with their own (PLATEMASK_BANNER, PLATEMASK_LOGO); these
defaults only need to look tidy. The test photo is a synthetic car (tests/support/synthetic.py,
no customer photo) on which ``platemask check`` makes sure the plate model finds a plate: the
first seed whose plate the built-in model finds surely and in the right place.
Run: .venv/bin/python scripts/make_assets.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import matplotlib_fontja
import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]
ASSETS = REPO / "include" / "platemask" / "assets"
FONT = Path(matplotlib_fontja.__file__).parent / "fonts" / "ipaexg.ttf"


def banner() -> Image.Image:
    """A translucent dark ribbon with the site's wording, 1200×240, alpha included."""
    width, height = 1200, 240
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=36, fill=(16, 38, 66, 200))
    draw.rounded_rectangle((14, 14, width - 15, height - 15), radius=28, outline=(255, 209, 102, 255), width=6)
    big = ImageFont.truetype(str(FONT), 96)
    small = ImageFont.truetype(str(FONT), 44)
    draw.text((width // 2, 100), "認定中古車", font=big, fill=(255, 255, 255, 255), anchor="mm")
    draw.text((width // 2, 182), "CERTIFIED USED CARS", font=small, fill=(255, 209, 102, 255), anchor="mm")
    return image


def logo() -> Image.Image:
    """A plate-shaped (2:1) cover for the ``logo`` mask style, 660×330."""
    width, height = 660, 330
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=40, fill=(16, 38, 66, 255))
    draw.rounded_rectangle((16, 16, width - 17, height - 17), radius=30, outline=(255, 209, 102, 255), width=8)
    font = ImageFont.truetype(str(FONT), 72)
    draw.text((width // 2, height // 2), "ナンバー非表示", font=font, fill=(255, 255, 255, 255), anchor="mm")
    return image


def check_photo(size: tuple[int, int] = (480, 360), quality: int = 80, min_conf: float = 0.7) -> bytes:
    """A small JPEG of a synthetic car whose plate the built-in model finds (conf >= ``min_conf``, IoU >= 0.5).

    Small, so it costs the package and the check little; sure, so a sound model never fails the
    check on it, while a wrong model or threshold does.
    """
    from platemask.config import DetectOptions
    from platemask.detect import PlateDetector, box_iou
    from tests.support.synthetic import make_car_photo, photo_jpeg

    detector = PlateDetector(DetectOptions())
    for seed in range(100):
        photo = make_car_photo(seed, size)
        data = photo_jpeg(photo.image, quality)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        found = detector.detect([image])[0]
        if len(found) == 1 and found[0].conf >= min_conf and box_iou(found[0].box, photo.plate_box) >= 0.5:
            print(f"check photo: seed {seed}, plate {photo.plate_text}, confidence {found[0].conf:.2f}")
            return data
    raise RuntimeError("no seed in 0-99 gives a photo whose plate the built-in model finds surely")


if __name__ == "__main__":
    ASSETS.mkdir(parents=True, exist_ok=True)
    banner().save(ASSETS / "banner.png", optimize=True)
    logo().save(ASSETS / "logo.png", optimize=True)
    (ASSETS / "check_plate.jpg").write_bytes(check_photo())
    print(f"wrote {ASSETS / 'banner.png'}, {ASSETS / 'logo.png'} and {ASSETS / 'check_plate.jpg'}")
