"""refcolor studio in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (nothing is downloaded: the driver path is given, Selenium Manager stays
offline). Colours a sketch region by region, undoes, downloads the full-size result, and keeps a
screenshot per tab (in $REFCOLOR_STUDIO_ARTIFACTS, else pytest's tmp dir)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the studio extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the studio extra (uvicorn) is not installed")
pytest.importorskip("selenium", reason="selenium (test extra) is not installed")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(
        "Chromium and its driver are not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from refcolor.studio.app import create_app  # noqa: E402
from refcolor.studio.models import load_colorizers  # noqa: E402
from tests.studio_helpers import colour_image, oracle_painter, running_server, save_tiny_models, sketch_image  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
WIDTH, HEIGHT = 160, 120  # the sketch; larger than the models' 32 px working size
RED, BLUE = (224, 60, 49), (42, 91, 215)  # "#e03c31" typed as HEX, "#2a5bd7" a suggested swatch
GRAY = (128, 128, 128)  # the oracle's colour of a region without a hint
# Points inside the oracle's regions (1: right half, 2: bottom-left, 3: top-left), away from lines.
INSIDE = {1: (130, 60), 2: (40, 100), 3: (40, 25)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio_browser")
    sketch_image(WIDTH, HEIGHT).save(root / "sketch.png")
    colour_image(60, 40).save(root / "reference.png")
    (root / "broken.png").write_bytes((root / "sketch.png").read_bytes()[:120])  # truncated
    (root / "downloads").mkdir()
    return root


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    folder = os.environ.get("REFCOLOR_STUDIO_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("studio_screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    return save_tiny_models(tmp_path_factory.mktemp("studio_browser_models"))


@pytest.fixture(scope="module")
def server(tiny_paths, tmp_path_factory):
    """guide (the oracle) and scft served; exemplar not: no checkpoint given and none bundled."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFCOLOR_PRETRAINED_DIR", str(tmp_path_factory.mktemp("nothing_bundled")))
        colorizers = load_colorizers({"guide": tiny_paths["guide"], "scft": tiny_paths["scft"]})
    assert colorizers.exemplar is None
    colorizers.guide = oracle_painter()  # exact colours: the test can check the result's pixels
    with running_server(create_app(colorizers)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(files):
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(files / "downloads"), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for js_errors()
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def js_errors(driver) -> list[str]:
    """Uncaught exceptions and Content-Security-Policy violations in the page's console since the
    last call (failed requests the page reports itself, such as a 4xx, are not errors here)."""
    entries = driver.get_log("browser")
    return [e["message"] for e in entries if "Uncaught" in e["message"] or "Content Security Policy" in e["message"]]


@pytest.fixture(autouse=True)
def no_js_errors(browser):
    browser.get_log("browser")  # start clean
    yield
    assert js_errors(browser) == []


def wait(driver, condition, timeout: float = 40, what: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def result_pixel(driver, panel: str, x: int, y: int) -> tuple[int, int, int]:
    """The result image's pixel (x, y) at its natural size, read in the page through a canvas."""
    return tuple(
        driver.execute_script(
            """const img = document.querySelector(`#${arguments[0]}-compare img.after`);
            const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
            const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
            return Array.from(ctx.getImageData(arguments[1], arguments[2], 1, 1).data.slice(0, 3));""",
            panel,
            x,
            y,
        )
    )


def close(a, b, tolerance: int = 3) -> bool:
    return all(abs(int(p) - int(q)) <= tolerance for p, q in zip(a, b, strict=True))


def shown_colors(driver) -> list[str] | None:
    """The colours of the result on screen (set when its request's answer arrives), once idle."""
    state = driver.find_element(By.ID, "guide-progress").get_attribute("data-state")
    value = driver.find_element(By.ID, "guide-compare").get_attribute("data-colors")
    return json.loads(value) if state == "done" and value is not None else None


def wait_colors(driver, colors: list[str]):
    wait(driver, lambda d: shown_colors(d) == colors, what=f"result for {colors}, got {shown_colors(driver)}")


def click_stage(driver, x: int, y: int) -> None:
    """Click the region canvas at sketch pixel (x, y) (the canvas is shown scaled)."""
    stage = driver.find_element(By.ID, "guide-stage")
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", stage)
    sx, sy = rect[0] / WIDTH, rect[1] / HEIGHT
    ActionChains(driver).move_to_element_with_offset(
        stage, int((x + 0.5) * sx - rect[0] / 2), int((y + 0.5) * sy - rect[1] / 2)
    ).click().perform()


def downloaded(folder: Path, name: str, timeout: float = 20) -> Path:
    path = folder / name
    deadline = time.monotonic() + timeout
    while not (path.exists() and not list(folder.glob("*.crdownload"))):
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} was not downloaded (folder holds {sorted(os.listdir(folder))})")
        time.sleep(0.1)
    return path


def test_guided_tab_colours_region_by_region_undoes_and_downloads(browser, server, files, artifacts):
    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    d.find_element(By.ID, "guide-sketch").send_keys(str(files / "sketch.png"))
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#guide-regions .region")) == 3, what="3 regions")
    wait_colors(d, [])  # the model's own colours first
    assert close(result_pixel(d, "guide", *INSIDE[1]), GRAY)
    assert d.find_element(By.ID, "guide-current").text == "1"
    assert "next: 1 of 3" in d.find_element(By.ID, "guide-next").text

    # Region 1 by key, colour by HEX entry.
    d.find_element(By.TAG_NAME, "body").send_keys("1")
    hex_field = d.find_element(By.ID, "guide-hex")
    hex_field.clear()
    hex_field.send_keys("#E03C31", Keys.ENTER)
    wait_colors(d, ["#e03c31"])
    assert d.find_element(By.ID, "guide-current").text == "2"  # moved on to the next region

    # A later region is refused (priority order); region 2 by a click on the canvas, a swatch's colour.
    click_stage(d, *INSIDE[3])
    assert "region 2 is next" in d.find_element(By.ID, "guide-message").text
    click_stage(d, *INSIDE[2])
    assert d.find_element(By.ID, "guide-current").text == "2"
    d.find_element(By.CSS_SELECTOR, '#guide-swatches [data-color="#2a5bd7"]').click()
    wait_colors(d, ["#e03c31", "#2a5bd7"])
    progress = d.find_element(By.ID, "guide-progress").text
    assert "s on the server" in progress, progress
    assert close(result_pixel(d, "guide", *INSIDE[1]), RED)
    assert close(result_pixel(d, "guide", *INSIDE[2]), BLUE)
    assert close(result_pixel(d, "guide", *INSIDE[3]), GRAY)
    d.save_screenshot(str(artifacts / "studio_guided.png"))

    # Undo (button and Ctrl+Z) and redo.
    d.find_element(By.ID, "guide-undo").click()
    wait_colors(d, ["#e03c31"])
    assert close(result_pixel(d, "guide", *INSIDE[2]), GRAY)
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.CONTROL, "z")
    wait_colors(d, [])
    d.find_element(By.ID, "guide-redo").click()
    wait_colors(d, ["#e03c31"])

    # RGB entry recolours region 1 (editing an earlier region is allowed).
    d.find_element(By.CSS_SELECTOR, '#guide-regions .region[data-region="1"]').click()
    for field, value in (("guide-r", "10"), ("guide-g", "200"), ("guide-b", "30")):
        d.find_element(By.ID, field).clear()
        d.find_element(By.ID, field).send_keys(value)
    d.find_element(By.ID, "guide-b").send_keys(Keys.ENTER)
    wait_colors(d, ["#0ac81e"])

    # Download: the full-size PNG with the chosen colour; export: the `refcolor guide --colors` JSON.
    d.find_element(By.ID, "guide-download").click()
    result = Image.open(downloaded(files / "downloads", "sketch_colorized.png")).convert("RGB")
    assert result.size == (WIDTH, HEIGHT)
    assert close(result.getpixel(INSIDE[1]), (10, 200, 30)) and close(result.getpixel(INSIDE[2]), GRAY)
    d.find_element(By.ID, "guide-export").click()
    exported = json.loads(downloaded(files / "downloads", "sketch_colors.json").read_text())
    assert exported == ["#0ac81e"]

    # Update on demand only: a change does not reach the server until Update is pressed.
    d.find_element(By.ID, "guide-auto").click()
    d.find_element(By.CSS_SELECTOR, '#guide-regions .region[data-region="2"]').click()
    d.find_element(By.CSS_SELECTOR, '#guide-swatches [data-color="#f6d155"]').click()
    wait(d, lambda d: d.find_element(By.ID, "guide-progress").get_attribute("data-state") == "stale", what="stale")
    time.sleep(0.3)
    assert json.loads(d.find_element(By.ID, "guide-compare").get_attribute("data-colors")) == ["#0ac81e"]
    d.find_element(By.ID, "guide-update").click()
    wait_colors(d, ["#0ac81e", "#f6d155"])

    # Reset, then a broken file: a clear message, and the page keeps working.
    d.find_element(By.ID, "guide-auto").click()
    d.find_element(By.ID, "guide-reset").click()
    wait_colors(d, [])
    d.find_element(By.ID, "guide-sketch").send_keys(str(files / "broken.png"))
    wait(d, lambda d: d.find_element(By.ID, "guide-progress").get_attribute("data-state") == "error", what="error")
    assert "sketch: corrupt or truncated PNG" in d.find_element(By.ID, "guide-message").text


def test_reference_tab_colorizes_at_full_size(browser, server, files, artifacts):
    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    d.find_element(By.ID, "tab-reference").click()
    assert d.find_element(By.ID, "panel-reference").is_displayed()
    assert not d.find_element(By.ID, "panel-guide").is_displayed()
    d.find_element(By.ID, "reference-sketch").send_keys(str(files / "sketch.png"))
    d.find_element(By.ID, "reference-reference").send_keys(str(files / "reference.png"))
    wait(d, lambda d: d.find_element(By.ID, "reference-progress").get_attribute("data-state") == "done", what="done")
    size = d.execute_script(
        "const i = document.querySelector('#reference-compare img.after'); return [i.naturalWidth, i.naturalHeight];"
    )
    assert size == [WIDTH, HEIGHT]
    d.save_screenshot(str(artifacts / "studio_reference.png"))


def test_exemplar_tab_says_it_has_no_model(browser, server, artifacts):
    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    d.find_element(By.ID, "tab-exemplar").click()
    notice = d.find_element(By.ID, "exemplar-unavailable")
    assert notice.is_displayed()
    assert "no bundled exemplar model" in notice.text and "--checkpoint exemplar=PATH" in notice.text
    assert not d.find_element(By.ID, "exemplar-image").is_enabled()
    assert not d.find_element(By.ID, "exemplar-update").is_enabled()
    d.save_screenshot(str(artifacts / "studio_exemplar.png"))


JS_IMAGE_FILE = """
// A File holding a PNG drawn here: `arguments[0]` x `arguments[1]`, white with a dark line.
async function pngFile(width, height, name, fill) {
  const c = document.createElement('canvas'); c.width = width; c.height = height;
  const ctx = c.getContext('2d'); ctx.fillStyle = fill; ctx.fillRect(0, 0, width, height);
  ctx.strokeStyle = '#000'; ctx.lineWidth = 2; ctx.strokeRect(5, 5, width - 10, height - 10);
  const blob = await new Promise((resolve) => c.toBlob(resolve, 'image/png'));
  return new File([blob], name, { type: 'image/png' });
}
"""


def test_paste_drop_import_and_eyedropper(browser, server, files):
    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    # Paste a sketch (a clipboard image), then drop another one on the drop zone.
    d.execute_script(
        JS_IMAGE_FILE
        + """pngFile(100, 80, 'pasted.png', '#fff').then((file) => {
            const data = new DataTransfer(); data.items.add(file);
            document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data }));
        });"""
    )
    wait(d, lambda d: d.find_element(By.ID, "guide-progress").get_attribute("data-state") == "done", what="pasted")
    wait(d, lambda d: shown_colors(d) == [], what="pasted sketch colorized")
    assert d.execute_script("return document.querySelector('#guide-compare img.after').naturalWidth") == 100
    d.execute_script(
        JS_IMAGE_FILE
        + """pngFile(120, 90, 'dropped.png', '#fff').then((file) => {
            const data = new DataTransfer(); data.items.add(file);
            document.getElementById('guide-drop').dispatchEvent(new DragEvent('drop', { dataTransfer: data }));
        });"""
    )
    wait(
        d,
        lambda d: d.execute_script("return document.querySelector('#guide-compare img.after').naturalWidth") == 120,
        what="dropped sketch colorized",
    )

    # Import colours in the `refcolor guide --colors` format ("#rgb" and [r, g, b] entries).
    (files / "colors.json").write_text(json.dumps(["#f00", [0, 0, 255]]))
    d.find_element(By.ID, "guide-import").send_keys(str(files / "colors.json"))
    wait_colors(d, ["#ff0000", "#0000ff"])
    assert close(result_pixel(d, "guide", 100, 45), (255, 0, 0))
    (files / "bad_colors.json").write_text(json.dumps(["red"]))
    d.find_element(By.ID, "guide-import").send_keys(str(files / "bad_colors.json"))
    wait(d, lambda d: "colors[0]" in d.find_element(By.ID, "guide-message").text, what="import error")

    # Eyedropper: a reference image; a click on it colours the selected region (3, the next).
    colour_image(60, 40).save(files / "eyedropper.png")
    d.find_element(By.ID, "guide-eyedropper-file").send_keys(str(files / "eyedropper.png"))
    swatches = "#guide-swatches .swatch-button"
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, swatches)) > 16, what="eyedropper image and its colours")
    canvas = d.find_element(By.ID, "guide-eyedropper")
    ActionChains(d).move_to_element(canvas).click().perform()  # its centre
    picked = d.find_element(By.ID, "guide-hex").get_attribute("value")
    assert picked.startswith("#") and len(picked) == 7
    wait_colors(d, ["#ff0000", "#0000ff", picked])
    expected = tuple(int(picked[i : i + 2], 16) for i in (1, 3, 5))
    assert close(result_pixel(d, "guide", 20, 15), expected)  # region 3: top-left quarter


def test_a_large_sketch_is_drawn_reduced_and_clicks_map_to_full_size(browser, server, files):
    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    sketch_image(1600, 1200).save(files / "large.png")
    d.find_element(By.ID, "guide-sketch").send_keys(str(files / "large.png"))
    wait_colors(d, [])
    stage = d.find_element(By.ID, "guide-stage")
    assert (stage.get_attribute("width"), stage.get_attribute("height")) == ("1024", "768")
    assert d.execute_script("return document.querySelector('#guide-compare img.after').naturalWidth") == 1600
    d.find_element(By.CSS_SELECTOR, '#guide-swatches [data-color="#e03c31"]').click()  # region 1
    wait_colors(d, ["#e03c31"])
    rect = d.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", stage)
    # Regions 1 (right half), 3 (top-left: refused, 2 comes first) and 2 (bottom-left).
    for (x, y), current in (((1200, 600), "1"), ((400, 300), "1"), ((400, 900), "2")):
        offset = (int(x * rect[0] / 1600 - rect[0] / 2), int(y * rect[1] / 1200 - rect[1] / 2))
        ActionChains(d).move_to_element_with_offset(stage, *offset).click().perform()
        assert d.find_element(By.ID, "guide-current").text == current
        if (x, y) == (400, 300):
            assert "region 2 is next" in d.find_element(By.ID, "guide-message").text


def test_exemplar_tab_colorizes_with_an_exemplar_model(browser, files, tiny_paths):
    """An (untrained) tiny ExemplarColorizer served from its checkpoint: the tab is on, and its
    result is the model's own answer at the image's full size."""
    colorizers = load_colorizers(tiny_paths)
    colorizers.guide = oracle_painter()
    with running_server(create_app(colorizers)) as url:
        d = browser
        d.get(url)
        wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
        d.find_element(By.ID, "tab-exemplar").click()
        assert not d.find_element(By.ID, "exemplar-unavailable").is_displayed()
        gray, exemplar = Image.new("RGB", (90, 70), (120, 120, 120)), Image.new("RGB", (20, 20), (200, 40, 120))
        gray.save(files / "gray.png")
        exemplar.save(files / "exemplar.png")
        d.find_element(By.ID, "exemplar-image").send_keys(str(files / "gray.png"))
        d.find_element(By.ID, "exemplar-reference").send_keys(str(files / "exemplar.png"))
        wait(d, lambda d: d.find_element(By.ID, "exemplar-progress").get_attribute("data-state") == "done", what="done")
        expected = colorizers.exemplar(gray, exemplar).getpixel((45, 35))
        assert not close(expected, (120, 120, 120))  # the model colours it: the check below means something
        assert close(result_pixel(d, "exemplar", 45, 35), expected)
        assert d.execute_script("return document.querySelector('#exemplar-compare img.after').naturalWidth") == 90
        # The before / after slider moves the split.
        d.execute_script(
            "const s = document.querySelector('#exemplar-compare .compare-slider'); s.value = 20;"
            "s.dispatchEvent(new Event('input'));"
        )
        split = d.execute_script("return document.getElementById('exemplar-compare').style.getPropertyValue('--split')")
        assert split == "20%"


# --------------------------------------------------------------------------- the Fill tab

FILL_W, FILL_H = 160, 120
# Inside the closed box, inside the box with a 3-pixel opening, and outside both (away from lines).
BOX_A, BOX_B, OUTSIDE = (40, 60), (120, 60), (80, 5)


def fill_sketch() -> Image.Image:
    """Two boxes with 2-px lines: A closed, B open by 3 pixels on its left side. Without gap closing
    or closing gaps of 2 px (the Fill tab's default), B's inside is the outside (2 areas); closing
    gaps of 4 px makes it an area of its own (3)."""
    image = Image.new("L", (FILL_W, FILL_H), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle([10, 15, 70, 105], outline=0, width=2)
    draw.rectangle([90, 15, 150, 105], outline=0, width=2)
    draw.rectangle([90, 58, 91, 60], fill=255)  # the opening: rows 58..60 of B's left side
    return image


def expected_regions(image: Image.Image, gap: int):
    """(labels, line mask) as the server computes them (refcolor.ops.line_regions, threshold 0.8)."""
    import torch

    from refcolor.data.sketch_preparation import prepare_sketch
    from refcolor.ops import line_regions

    rgb = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    sketch = prepare_sketch(rgb)
    return line_regions(sketch, threshold=0.8, gap=gap)[0].numpy(), sketch[0, 0].numpy() < 0.8


def fill_layer(driver):
    """The Fill tab's flats layer, encoded by the browser as a PNG (the download's code path) -> RGBA array."""
    url = driver.execute_script(
        """const tab = window.studio.tabs.fill; const c = document.createElement('canvas');
        c.width = tab.width; c.height = tab.height; c.getContext('2d').putImageData(tab.flatsLayer(), 0, 0);
        return c.toDataURL('image/png');"""
    )
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.mode == "RGBA" and image.size == (FILL_W, FILL_H)
    return np.asarray(image)


def expected_layer(labels, lines, fills: dict[tuple[int, int], tuple[int, int, int]]):
    """The flats layer that fills (click point -> colour, later wins) must give: exactly the clicked
    regions' non-line pixels opaque in their colour, everything else transparent."""
    layer = np.zeros((*labels.shape, 4), dtype=np.uint8)
    for (x, y), colour in fills.items():
        where = (labels == labels[y, x]) & ~lines
        layer[where] = (*colour, 255)
    return layer


def click_canvas(driver, element_id: str, x: int, y: int, width: int, height: int, *, alt: bool = False) -> None:
    """Click the picture of a canvas at its pixel (x, y), wherever `object-fit: contain` put it."""
    canvas = driver.find_element(By.ID, element_id)
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", canvas)
    scale = min(rect[0] / width, rect[1] / height)
    offset = (int((x + 0.5 - width / 2) * scale), int((y + 0.5 - height / 2) * scale))
    actions = ActionChains(driver).move_to_element_with_offset(canvas, *offset)
    if alt:
        actions.key_down(Keys.ALT).click().key_up(Keys.ALT).perform()
    else:
        actions.click().perform()


def fill_state(driver) -> tuple:
    """(progress state, gap, number of areas, number filled) of the Fill tab, as the page shows them."""
    stage = driver.find_element(By.ID, "fill-stage")
    state = driver.find_element(By.ID, "fill-progress").get_attribute("data-state")
    return (state, *(stage.get_attribute(f"data-{name}") for name in ("gap", "regions", "filled")))


def test_fill_tab_fills_areas_closes_gaps_undoes_and_downloads_the_layers(browser, server, files, artifacts):
    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    fill_sketch().save(files / "boxes.png")
    d.find_element(By.ID, "tab-fill").click()
    assert d.find_element(By.ID, "panel-fill").is_displayed()
    assert not d.find_element(By.ID, "panel-guide").is_displayed()
    assert d.find_element(By.ID, "fill-gap").get_attribute("max") == "32"  # from /api/health
    d.find_element(By.ID, "fill-sketch").send_keys(str(files / "boxes.png"))
    wait(d, lambda d: fill_state(d) == ("done", "2", "2", "0"), what=f"2 areas, got {fill_state(d)}")
    labels, lines = expected_regions(fill_sketch(), 2)
    assert labels.max() + 1 == 2 and labels[BOX_B[1], BOX_B[0]] == labels[OUTSIDE[1], OUTSIDE[0]]
    assert "2 areas" in d.find_element(By.ID, "fill-progress").text
    assert d.find_element(By.ID, "fill-undo").get_attribute("disabled") == "true"

    # A swatch's blue into box A; red typed as HEX into B, which leaks to the outside at gap 2.
    d.find_element(By.CSS_SELECTOR, '#fill-swatches [data-color="#2a5bd7"]').click()
    click_canvas(d, "fill-stage", *BOX_A, FILL_W, FILL_H)
    wait(d, lambda d: fill_state(d)[3] == "1", what="box A filled")
    assert np.array_equal(fill_layer(d), expected_layer(labels, lines, {BOX_A: BLUE}))
    hex_field = d.find_element(By.ID, "fill-hex")
    hex_field.clear()
    hex_field.send_keys("#E03C31", Keys.ENTER)
    click_canvas(d, "fill-stage", *BOX_B, FILL_W, FILL_H)
    wait(d, lambda d: fill_state(d)[3] == "2", what="box B filled")
    both = expected_layer(labels, lines, {BOX_A: BLUE, BOX_B: RED})
    assert np.array_equal(fill_layer(d), both)
    assert tuple(both[OUTSIDE[1], OUTSIDE[0]]) == (*RED, 255)  # the leak, as the areas say
    click_canvas(d, "fill-stage", *BOX_B, FILL_W, FILL_H)  # the same colour again: no history step
    d.find_element(By.ID, "fill-undo").click()
    wait(d, lambda d: fill_state(d)[3] == "1", what="undo of B")
    d.find_element(By.ID, "fill-redo").click()
    wait(d, lambda d: fill_state(d)[3] == "2", what="redo of B")

    # Close gaps of 4 px (the slider, by keyboard): B's inside becomes its own area and the same
    # clicks are replayed on the new areas (red stays in B, the outside is empty).
    slider = d.find_element(By.ID, "fill-gap")
    slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # from the default 2
    wait(d, lambda d: fill_state(d) == ("done", "4", "3", "2"), what=f"3 areas at gap 4, got {fill_state(d)}")
    assert d.find_element(By.ID, "fill-gap-value").text == "4 px"
    labels4, lines4 = expected_regions(fill_sketch(), 4)
    assert labels4.max() + 1 == 3 and labels4[BOX_B[1], BOX_B[0]] != labels4[OUTSIDE[1], OUTSIDE[0]]
    layer = fill_layer(d)
    assert np.array_equal(layer, expected_layer(labels4, lines4, {BOX_A: BLUE, BOX_B: RED}))
    assert layer[OUTSIDE[1], OUTSIDE[0], 3] == 0
    d.save_screenshot(str(artifacts / "studio_fill.png"))

    # Undo / redo by keys (Ctrl+Z, Ctrl+Shift+Z) and buttons; the eraser; Alt+click picks a fill's colour.
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.CONTROL, "z")
    wait(d, lambda d: fill_state(d)[3] == "1", what="Ctrl+Z")
    assert np.array_equal(fill_layer(d), expected_layer(labels4, lines4, {BOX_A: BLUE}))
    ActionChains(d).key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys("z").key_up(Keys.SHIFT).key_up(
        Keys.CONTROL
    ).perform()
    wait(d, lambda d: fill_state(d)[3] == "2", what="Ctrl+Shift+Z")
    body.send_keys("e")  # E toggles the eraser, as the button does
    assert d.find_element(By.ID, "fill-eraser").get_attribute("aria-pressed") == "true"
    d.find_element(By.ID, "fill-eraser").click()
    assert d.find_element(By.ID, "fill-eraser").get_attribute("aria-pressed") == "false"
    d.find_element(By.ID, "fill-eraser").click()
    assert d.find_element(By.ID, "fill-eraser").get_attribute("aria-pressed") == "true"
    click_canvas(d, "fill-stage", *BOX_A, FILL_W, FILL_H)
    wait(d, lambda d: fill_state(d)[3] == "1", what="box A erased")
    assert np.array_equal(fill_layer(d), expected_layer(labels4, lines4, {BOX_B: RED}))
    d.find_element(By.ID, "fill-undo").click()
    wait(d, lambda d: fill_state(d)[3] == "2", what="erase undone")
    click_canvas(d, "fill-stage", *BOX_A, FILL_W, FILL_H, alt=True)
    assert d.find_element(By.ID, "fill-hex").get_attribute("value") == "#2a5bd7"
    assert d.find_element(By.ID, "fill-eraser").get_attribute("aria-pressed") == "false"  # a colour: painting again
    assert fill_state(d)[3] == "2"  # picking is not a fill

    # Downloads at full size: the flats layer (RGBA, transparent lines) and the picture (lines multiplied).
    d.find_element(By.ID, "fill-download-flats").click()
    flats = Image.open(downloaded(files / "downloads", "boxes_flats.png"))
    assert flats.mode == "RGBA" and flats.size == (FILL_W, FILL_H)
    flats_array = np.asarray(flats)
    assert np.array_equal(flats_array, expected_layer(labels4, lines4, {BOX_A: BLUE, BOX_B: RED}))
    assert lines4.sum() > 0 and (flats_array[lines4, 3] == 0).all()
    d.find_element(By.ID, "fill-download-picture").click()
    picture = np.asarray(Image.open(downloaded(files / "downloads", "boxes_filled.png")).convert("RGB"))
    assert picture.shape == (FILL_H, FILL_W, 3)
    assert tuple(picture[BOX_A[1], BOX_A[0]]) == BLUE and tuple(picture[BOX_B[1], BOX_B[0]]) == RED
    assert tuple(picture[OUTSIDE[1], OUTSIDE[0]]) == (255, 255, 255)  # unfilled paper
    assert (picture[lines4] == 0).all()  # the black lines on top

    # Clear is one undoable step.
    d.find_element(By.ID, "fill-clear").click()
    wait(d, lambda d: fill_state(d)[3] == "0", what="cleared")
    assert not fill_layer(d)[..., 3].any()
    body.send_keys(Keys.CONTROL, "z")
    wait(d, lambda d: fill_state(d)[3] == "2", what="clear undone")


def test_fill_and_guided_keep_their_own_histories(browser, server, files):
    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    fill_sketch().save(files / "boxes.png")
    d.find_element(By.ID, "guide-sketch").send_keys(str(files / "sketch.png"))
    wait_colors(d, [])
    d.find_element(By.CSS_SELECTOR, '#guide-swatches [data-color="#e03c31"]').click()
    wait_colors(d, ["#e03c31"])

    d.find_element(By.ID, "tab-fill").click()  # it starts on the Guided tab's sketch
    fill_file = "const f = window.studio.tabs.fill.file; return f && f.name;"
    wait(d, lambda d: d.execute_script(fill_file) == "sketch.png", what="the guided sketch")
    wait(d, lambda d: fill_state(d)[0] == "done", what="its areas")
    d.find_element(By.ID, "fill-sketch").send_keys(str(files / "boxes.png"))
    wait(d, lambda d: d.execute_script(fill_file) == "boxes.png", what="its own sketch")
    wait(d, lambda d: fill_state(d) == ("done", "2", "2", "0"), what="fill sketch loaded")
    click_canvas(d, "fill-stage", *BOX_A, FILL_W, FILL_H)
    wait(d, lambda d: fill_state(d)[3] == "1", what="box A filled")
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.CONTROL, "z")  # undoes the fill, not the guided colour
    wait(d, lambda d: fill_state(d)[3] == "0", what="fill undone")
    body.send_keys(Keys.CONTROL, "z")  # nothing left to undo here
    assert fill_state(d)[3] == "0"

    d.find_element(By.ID, "tab-guide").click()
    assert shown_colors(d) == ["#e03c31"]
    body.send_keys(Keys.CONTROL, "z")
    wait_colors(d, [])
    d.find_element(By.ID, "tab-fill").click()
    body.send_keys(Keys.CONTROL, Keys.SHIFT, "z")
    wait(d, lambda d: fill_state(d)[3] == "1", what="fill redone")
    d.find_element(By.ID, "tab-guide").click()
    assert shown_colors(d) == []  # the fill's redo left the guided colours alone


def test_fill_tab_on_a_large_drawing_draws_reduced_and_fills_at_full_size(browser, server, files):
    """A 1600 x 1200 drawing: the stage is 1024 px wide, clicks map to the full-size label map and
    the flats layer comes out at full size."""
    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    big = fill_sketch().resize((1600, 1200), Image.NEAREST)
    big.save(files / "boxes_large.png")
    d.find_element(By.ID, "tab-fill").click()
    d.find_element(By.ID, "fill-sketch").send_keys(str(files / "boxes_large.png"))
    wait(d, lambda d: fill_state(d)[:3] == ("done", "2", "2"), what=f"large drawing, got {fill_state(d)}")
    stage = d.find_element(By.ID, "fill-stage")
    assert (stage.get_attribute("width"), stage.get_attribute("height")) == ("1024", "768")
    click_canvas(d, "fill-stage", 400, 600, 1600, 1200)  # box A, scaled by 10
    wait(d, lambda d: fill_state(d)[3] == "1", what="box A filled")
    labels, lines = expected_regions(big, 2)
    layer = d.execute_script(
        """const t = window.studio.tabs.fill; const f = t.flatsLayer();
        let opaque = 0; for (let i = 3; i < f.data.length; i += 4) opaque += f.data[i] === 255;
        return [f.width, f.height, opaque];"""
    )
    inside_a = int(((labels == labels[600, 400]) & ~lines).sum())
    assert layer == [1600, 1200, inside_a] and 0 < inside_a < 1600 * 1200 // 2  # box A only


def test_fill_tab_keeps_its_work_when_a_sketch_fails_and_takes_pasted_ones(browser, server, files):
    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    fill_sketch().save(files / "boxes.png")
    d.find_element(By.ID, "tab-fill").click()
    d.find_element(By.ID, "fill-sketch").send_keys(str(files / "boxes.png"))
    wait(d, lambda d: fill_state(d) == ("done", "2", "2", "0"), what="loaded")
    click_canvas(d, "fill-stage", *BOX_A, FILL_W, FILL_H)
    wait(d, lambda d: fill_state(d)[3] == "1", what="box A filled")
    d.find_element(By.ID, "fill-sketch").send_keys(str(files / "broken.png"))
    wait(d, lambda d: fill_state(d)[0] == "error", what="error")
    assert "sketch: corrupt or truncated PNG" in d.find_element(By.ID, "fill-message").text
    assert fill_state(d)[1:] == ("2", "2", "1")  # the drawing and its fill are still there
    assert d.execute_script("return window.studio.tabs.fill.width") == FILL_W

    # A pasted sketch replaces it (and starts a new history).
    d.execute_script(
        JS_IMAGE_FILE
        + """pngFile(100, 80, 'pasted.png', '#fff').then((file) => {
            const data = new DataTransfer(); data.items.add(file);
            document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data }));
        });"""
    )
    wait(d, lambda d: d.execute_script("return window.studio.tabs.fill.width") == 100, what="pasted sketch")
    wait(d, lambda d: fill_state(d) == ("done", "2", "2", "0"), what=f"its 2 areas, got {fill_state(d)}")
    assert d.find_element(By.ID, "fill-undo").get_attribute("disabled") == "true"


def result_image(driver, panel: str) -> np.ndarray:
    """The result shown on a tab, at its natural size, read back through a canvas -> RGB array."""
    url = driver.execute_script(
        """const img = document.querySelector(`#${arguments[0]}-compare img.after`);
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0); return c.toDataURL('image/png');""",
        panel,
    )
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_flat_colours_toggle_on_the_guided_and_reference_tabs(browser, server, files, tiny_paths):
    """The toggle sends `flat` with every update: the result is the models' own flat output (the
    oracle painter and the tiny SCFT model served here), and off again gives the soft one."""
    from refcolor.inference.colorizer import Colorizer

    d = browser
    d.get(server)
    wait(d, lambda d: d.find_element(By.ID, "server-status").get_attribute("data-ready") == "true", what="health")
    sketch = Image.open(files / "sketch.png")
    d.find_element(By.ID, "guide-sketch").send_keys(str(files / "sketch.png"))
    wait_colors(d, [])
    d.find_element(By.CSS_SELECTOR, '#guide-swatches [data-color="#e03c31"]').click()
    wait_colors(d, ["#e03c31"])
    assert d.find_element(By.ID, "guide-compare").get_attribute("data-flat") == "false"
    d.find_element(By.ID, "guide-flat").click()
    wait(d, lambda d: d.find_element(By.ID, "guide-compare").get_attribute("data-flat") == "true", what="flat result")
    wait_colors(d, ["#e03c31"])
    painter = oracle_painter()
    assert np.array_equal(result_image(d, "guide"), np.asarray(painter.colorize(sketch, ["#e03c31"], flat=True)))
    assert not np.array_equal(result_image(d, "guide"), np.asarray(painter.colorize(sketch, ["#e03c31"])))
    assert d.find_element(By.ID, "guide-download").get_attribute("download") == "sketch_flat.png"
    d.find_element(By.ID, "guide-flat").click()
    wait(d, lambda d: d.find_element(By.ID, "guide-compare").get_attribute("data-flat") == "false", what="soft again")
    wait_colors(d, ["#e03c31"])
    assert np.array_equal(result_image(d, "guide"), np.asarray(painter.colorize(sketch, ["#e03c31"], flat=False)))

    d.find_element(By.ID, "tab-reference").click()
    d.find_element(By.ID, "reference-flat").click()  # before the images: their first update is flat
    d.find_element(By.ID, "reference-sketch").send_keys(str(files / "sketch.png"))
    d.find_element(By.ID, "reference-reference").send_keys(str(files / "reference.png"))
    wait(d, lambda d: d.find_element(By.ID, "reference-progress").get_attribute("data-state") == "done", what="done")
    assert d.find_element(By.ID, "reference-compare").get_attribute("data-flat") == "true"
    colorizer = Colorizer.from_checkpoint(tiny_paths["scft"])
    reference = Image.open(files / "reference.png").convert("RGB")
    expected = colorizer(sketch.convert("RGB"), reference, flat=True)
    assert np.array_equal(result_image(d, "reference"), np.asarray(expected))
