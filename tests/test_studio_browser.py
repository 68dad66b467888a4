"""refcolor studio in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (nothing is downloaded: the driver path is given, Selenium Manager stays
offline). Colours a sketch region by region, undoes, downloads the full-size result, and keeps a
screenshot per tab (in $REFCOLOR_STUDIO_ARTIFACTS, else pytest's tmp dir)."""

from __future__ import annotations

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

from PIL import Image  # noqa: E402
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
