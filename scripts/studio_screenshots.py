"""Screenshots of the studio's tabs on the bundled demo pair, for the docs:
docs/figures/studio_guided.png, studio_fill.png, studio_reference.png, studio_exemplar.png.

    python scripts/studio_screenshots.py [--checkpoint KIND=RUN ...] [--tabs guided,fill,reference,exemplar] [--out DIR]

Starts `refcolor serve` (the bundled models unless --checkpoint says otherwise) on a free
loopback port, drives Debian's headless Chromium through /usr/bin/chromedriver (Selenium), colours
the first --colors regions of refcolor/assets/demo/sketch.png with the suggested swatches, fills the
--fills largest enclosed areas of the same sketch on the Fill tab (gaps of --gap px closed; the
largest area, the paper around the drawing, is left white) by clicks on their innermost pixels, colours
the demo reference's gray copy like the demo reference on the Exemplar tab (when the server has an
exemplar model; else the shot shows the tab's notice), and writes the PNGs of --tabs
(palette-quantised: small files for the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from studio_server import start_server

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "refcolor" / "assets" / "demo"
TABS = ("guided", "fill", "reference", "exemplar")
SWATCHES = ["#e03c31", "#2a5bd7", "#f6d155", "#7bc043", "#f5d0b0", "#6a4c93", "#f28c28", "#2a9d8f", "#8d5524"]


def save_small(png: bytes, path: Path) -> None:
    import io

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


# Flat colours an artist might pick for the demo's areas (skin, cloth, cape, ground ...).
FILLS = ["#f5d0b0", "#2a9d8f", "#f6d155", "#7bc043", "#e03c31", "#2a5bd7", "#f28c28", "#6a4c93", "#c68642", "#d85e9f"]


def fill_points(url: str, sketch: Path, gap: int, count: int) -> list[tuple[int, int]]:
    """The innermost pixel (farthest from the area's border) of each of the `count` largest areas
    that /api/line_regions finds in `sketch`, after the largest (the paper around the drawing)."""
    import base64
    import io

    import httpx
    import numpy as np
    from scipy import ndimage

    answer = httpx.post(
        f"{url}/api/line_regions",
        data={"gap": str(gap)},
        files={"sketch": (sketch.name, sketch.read_bytes(), "image/png")},
        timeout=120,
    ).json()

    def decode(data_url: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))

    rgb = decode(answer["labels"]).astype(np.int64)
    labels = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    lines = decode(answer["line_mask"]).astype(bool)
    sizes = np.bincount(labels[~lines].ravel(), minlength=answer["count"])
    points = []
    for region in np.argsort(-sizes, kind="stable")[1 : count + 1]:
        inside = np.pad((labels == region) & ~lines, 1)  # the image border counts as a border
        depth = ndimage.distance_transform_edt(inside)[1:-1, 1:-1]
        y, x = np.unravel_index(np.argmax(depth), depth.shape)
        points.append((int(x), int(y)))
    return points


def click_picture(driver, canvas, x: int, y: int, width: int, height: int) -> None:
    """Click a stage canvas at the picture's pixel (x, y) (the picture is drawn `object-fit: contain`)."""
    from selenium.webdriver.common.action_chains import ActionChains

    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", canvas)
    scale = min(rect[0] / width, rect[1] / height)
    offset = (int((x + 0.5 - width / 2) * scale), int((y + 0.5 - height / 2) * scale))
    ActionChains(driver).move_to_element_with_offset(canvas, *offset).click().perform()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--checkpoint", action="append", default=[], metavar="KIND=PATH")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="folder (default: docs/figures)")
    parser.add_argument("--colors", type=int, default=4, help="regions to colour on the Guided tab (default: 4)")
    parser.add_argument("--fills", type=int, default=10, help="areas to fill on the Fill tab (default: 10)")
    parser.add_argument("--gap", type=int, default=3, help="the Fill tab's gap closing in px (default: 3)")
    parser.add_argument(
        "--tabs", default=",".join(TABS), help=f"the tabs to shoot, comma-separated (default: {','.join(TABS)})"
    )
    args = parser.parse_args()
    tabs = [tab.strip() for tab in args.tabs.split(",") if tab.strip()]
    if not tabs or set(tabs) - set(TABS):
        parser.error(f"--tabs: expected some of {', '.join(TABS)}, got {args.tabs!r}")

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ.setdefault("SE_OFFLINE", "true")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server, url = start_server([arg for text in args.checkpoint for arg in ("--checkpoint", text)])
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1360,820", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)

    def wait(condition, timeout=120):
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition())

    def state(panel):
        return driver.find_element(By.ID, f"{panel}-progress").get_attribute("data-state")

    try:
        driver.get(url)
        wait(lambda: driver.find_element(By.ID, "server-status").get_attribute("data-ready") == "true")
        if "guided" in tabs:
            driver.find_element(By.ID, "guide-sketch").send_keys(str(DEMO / "sketch.png"))
            wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#guide-regions .region") and state("guide") == "done")
            count = min(args.colors, len(driver.find_elements(By.CSS_SELECTOR, "#guide-regions .region")))
            for i in range(count):
                driver.find_element(
                    By.CSS_SELECTOR, f'#guide-swatches [data-color="{SWATCHES[i % len(SWATCHES)]}"]'
                ).click()
                time.sleep(0.3)
            expected = json.dumps(SWATCHES[:count], separators=(",", ":"))
            wait(
                lambda: (
                    state("guide") == "done"
                    and driver.find_element(By.ID, "guide-compare").get_attribute("data-colors") == expected
                )
            )
            save_small(driver.get_screenshot_as_png(), out / "studio_guided.png")

        if "fill" in tabs:
            driver.find_element(By.ID, "tab-fill").click()
            driver.execute_script(  # the gap first: the sketch's areas are then fetched once
                "const s = document.getElementById('fill-gap'); s.value = arguments[0];"
                "s.dispatchEvent(new Event('input'));",
                args.gap,
            )
            driver.find_element(By.ID, "fill-sketch").send_keys(str(DEMO / "sketch.png"))
            stage = driver.find_element(By.ID, "fill-stage")
            wait(lambda: state("fill") == "done" and stage.get_attribute("data-gap") == str(args.gap))
            points = fill_points(url, DEMO / "sketch.png", args.gap, args.fills)
            width, height = Image.open(DEMO / "sketch.png").size
            for i, (x, y) in enumerate(points):
                driver.find_element(By.CSS_SELECTOR, f'#fill-swatches [data-color="{FILLS[i % len(FILLS)]}"]').click()
                click_picture(driver, stage, x, y, width, height)
            wait(lambda: stage.get_attribute("data-filled") == str(len(points)))
            ActionChains(driver).move_to_element(driver.find_element(By.ID, "fill-count")).perform()  # no hover
            save_small(driver.get_screenshot_as_png(), out / "studio_fill.png")

        if "reference" in tabs:
            driver.find_element(By.ID, "tab-reference").click()
            driver.find_element(By.ID, "reference-sketch").send_keys(str(DEMO / "sketch.png"))
            driver.find_element(By.ID, "reference-reference").send_keys(str(DEMO / "reference.png"))
            wait(lambda: state("reference") == "done")
            save_small(driver.get_screenshot_as_png(), out / "studio_reference.png")

        if "exemplar" in tabs:
            driver.find_element(By.ID, "tab-exemplar").click()
            if driver.find_element(By.ID, "exemplar-update").is_enabled():  # the server has an exemplar model
                with tempfile.TemporaryDirectory() as folder:
                    gray = Path(folder) / "reference_gray.png"
                    Image.open(DEMO / "reference.png").convert("L").save(gray)
                    driver.find_element(By.ID, "exemplar-image").send_keys(str(gray))
                    driver.find_element(By.ID, "exemplar-reference").send_keys(str(DEMO / "reference.png"))
                    wait(lambda: state("exemplar") == "done")
            save_small(driver.get_screenshot_as_png(), out / "studio_exemplar.png")
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
