"""Draw the built-in banner and logo PNGs (include/platemask/assets/).

Sites replace them with their own (PLATEMASK_BANNER, PLATEMASK_LOGO); these defaults only need
to look tidy. Run: .venv/bin/python scripts/make_assets.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib_fontja
from PIL import Image, ImageDraw, ImageFont

ASSETS = Path(__file__).parents[1] / "include" / "platemask" / "assets"
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


if __name__ == "__main__":
    ASSETS.mkdir(parents=True, exist_ok=True)
    banner().save(ASSETS / "banner.png", optimize=True)
    logo().save(ASSETS / "logo.png", optimize=True)
    print(f"wrote {ASSETS / 'banner.png'} and {ASSETS / 'logo.png'}")
