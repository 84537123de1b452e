"""The explorer in a real browser: headless Chromium (the system package, driven by playwright) against a real
`python -m service` on 127.0.0.1 serving the committed checkpoints, so the map has real points and the judge real
verdicts. One browser and one server for the whole module; each test opens its own page.

Without chromium the tests skip with the command that installs it (CI installs it: .ci/run).
Screenshots go to a temporary folder, or to $DIGITAE_SCREENSHOT_DIR (`DIGITAE_SCREENSHOT_DIR=docs` refreshes the
README's).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from models.checkpoint import DEFAULT_CHECKPOINTS_DIR, read_card
from tests.support import REPO_ROOT, ServerProcess, png_bytes

CHROMIUM = Path(os.environ.get("DIGITAE_CHROMIUM", "/usr/bin/chromium"))
INSTALL_HINT = "sudo apt-get install -y chromium (Debian/Ubuntu), then run again; never `playwright install`"
MNIST_TEST_IMAGES = REPO_ROOT.parent / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra has it)")
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"CI needs {CHROMIUM}: .ci/run installs it with apt-get")
    pytest.skip(f"no chromium at {CHROMIUM}: {INSTALL_HINT}", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)

Page = Any  # playwright's Page (kept loose: playwright is a dev dependency only)


@pytest.fixture(scope="module")
def served_models() -> Path:
    """The committed checkpoints (the conftest's `server` serves them): real points on the map, real verdicts."""
    return DEFAULT_CHECKPOINTS_DIR


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


class Console:
    """The page's console errors and uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.console = Console(page)
    yield page
    context.close()


def open_explorer(page: Page, url: str, query: str = "") -> Page:
    page.goto(f"{url}/{query}")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return page


def wait_for(page: Page, expression: str, timeout: float = 30_000) -> None:
    """Until `expression` is true in the page. Playwright's wait_for_function runs its text through eval(), which the
    page's CSP (no 'unsafe-eval') refuses; page.evaluate goes through the DevTools protocol, outside the CSP."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout / 1000:g} s: {expression}")
        page.wait_for_timeout(50)


def draw_a_one(page: Page) -> None:
    """A vertical stroke with the mouse: down, moves, up."""
    box = page.locator("#pad").bounding_box()
    x = box["x"] + box["width"] * 0.5
    page.mouse.move(x, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    for i in range(1, 13):
        page.mouse.move(x + i * 0.5, box["y"] + box["height"] * (0.2 + i * 0.05))
    page.mouse.up()


def nearest_digit(page: Page) -> int:
    page.wait_for_selector("#nearest strong", timeout=15_000)
    return int(page.locator("#nearest strong").text_content())


def mnist_test_png(index: int = 100) -> tuple[bytes, int | None]:
    """A real MNIST test digit as PNG bytes (and its label when known); the example two without the test set."""
    if not MNIST_TEST_IMAGES.exists():
        return (REPO_ROOT / "examples" / "two.png").read_bytes(), 2
    images = gzip.decompress(MNIST_TEST_IMAGES.read_bytes())[16:]
    pixels = np.frombuffer(images, np.uint8)[index * 784 : (index + 1) * 784].reshape(28, 28)
    return png_bytes(pixels), None


# -- 1: draw or drop --------------------------------------------------------------------------------


def test_drawing_with_the_mouse_shows_reconstruction_losses_and_nearest_digit(page: Page, server: ServerProcess):
    open_explorer(page, server.url, "?model=ae-6")
    draw_a_one(page)
    digit = nearest_digit(page)
    assert 0 <= digit <= 9
    assert page.locator("#recon").get_attribute("src").startswith("data:image/png;base64,")
    assert page.locator("#seen").get_attribute("src").startswith("data:image/png;base64,")
    losses = page.locator("#losses dt").all_text_contents()
    assert losses == ["MSE", "BCE"]  # an AE: no KL/ELBO
    assert float(page.locator("#losses dd").first.text_content()) < 1
    assert page.locator("#distances rect").count() == 10
    assert page.locator("#nearest").get_attribute("aria-live") == "polite"
    assert page.locator("#recon-verdict").text_content().startswith("judge: ")
    assert page.console.errors == []


def test_drawing_by_touch(page: Page, server: ServerProcess):
    open_explorer(page, server.url, "?model=vae-6")
    box = page.locator("#pad").bounding_box()
    cdp = page.context.new_cdp_session(page)
    x, y0 = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.2

    def touch(kind: str, y: float | None) -> None:
        points = [] if y is None else [{"x": x, "y": y, "radiusX": 4, "radiusY": 4, "force": 1, "id": 1}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", y0)
    for i in range(1, 12):
        touch("touchMove", y0 + i * box["height"] * 0.05)
    touch("touchEnd", None)
    nearest_digit(page)
    assert page.locator("#losses dt").all_text_contents() == ["MSE", "BCE", "KL", "ELBO"]  # a VAE
    assert page.locator("#recon").get_attribute("src").startswith("data:image/png")
    assert page.console.errors == []


def test_dropping_a_real_mnist_digit_shows_the_apis_nearest_digit(page: Page, server: ServerProcess):
    data, _ = mnist_test_png()
    expected = httpx.post(f"{server.url}/v1/models/ae-6/encode", files={"file": ("d.png", data)}).json()
    open_explorer(page, server.url, "?model=ae-6")
    page.evaluate(
        """async (b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "digit.png", { type: "image/png" }));
            const drop = new DragEvent("drop", { dataTransfer: dt, bubbles: true });
            document.getElementById("drop-zone").dispatchEvent(drop);
        }""",
        base64.b64encode(data).decode(),
    )
    assert nearest_digit(page) == expected["nearest_digit"]
    assert page.console.errors == []


def test_a_text_file_gets_the_apis_415_message_on_the_page(page: Page, server: ServerProcess, tmp_path: Path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image\n")
    api = httpx.post(f"{server.url}/v1/models/ae-6/reconstruct", files={"file": ("notes.txt", text.read_bytes())})
    assert api.status_code == 415
    open_explorer(page, server.url, "?model=ae-6")
    page.set_input_files("#file", str(text))
    error = page.locator("#draw-error")
    error.wait_for(state="visible")
    assert error.text_content() == f"415: {api.json()['error']['message']}"
    assert error.get_attribute("role") == "alert"


def test_the_keyboard_can_pick_an_example_digit(page: Page, server: ServerProcess):
    open_explorer(page, server.url, "?model=ae-6")
    button = page.get_by_role("button", name="example digit 7")
    button.focus()
    page.keyboard.press("Enter")
    assert nearest_digit(page) == 7  # a clean MNIST 7: ae-6's centroids get it right
    for control in page.locator("input, select").all():  # every control has an accessible name
        assert control.evaluate("(e) => e.labels.length > 0 || !!e.getAttribute('aria-label')"), control


# -- 2: robustness -----------------------------------------------------------------------------------


def test_robustness_sliders_corrupt_and_report_losses(page: Page, server: ServerProcess):
    open_explorer(page, server.url, "?model=ae-6")
    page.get_by_role("button", name="example digit 3").click()
    nearest_digit(page)
    page.wait_for_selector("#corrupt-losses dd")
    clean_mse = float(page.locator("#losses dd").first.text_content())
    page.locator("#noise").fill("1.5")
    wait_for(page, "document.getElementById('noise-out').textContent === '1.50'")
    wait_for(page, f"Number(document.querySelector('#corrupt-losses dd').textContent) > {clean_mse}")
    assert "noise=1.5" in page.url


# -- 3: the map --------------------------------------------------------------------------------------


def test_hovering_a_centroid_decodes_it_and_shows_the_judges_verdict(page: Page, server: ServerProcess):
    detail = httpx.get(f"{server.url}/v1/models/ae-2").json()
    atlas = httpx.get(f"{server.url}/v1/models/ae-2/atlas").json()
    assert len(atlas["labels"]) >= 1000 and set(atlas["labels"]) == set(range(10))
    # a digit whose centroid the judge recognises, as the API says
    verdicts = {}
    for d in range(10):
        image = httpx.post(f"{server.url}/v1/models/ae-2/decode", json={"latent": detail["centroids"][str(d)]})
        verdicts[d] = httpx.post(f"{server.url}/v1/classify", json={"image": image.json()["image"]}).json()["digit"]
    digit = next(d for d in (1, 0, 7, 2, 3, 4, 5, 6, 8, 9) if verdicts[d] == d)
    open_explorer(page, server.url, "?model=ae-2")
    page.locator("#map").scroll_into_view_if_needed()
    x, y = page.evaluate("(z) => window.digitae.screenOf(z)", detail["centroids"][str(digit)])
    page.mouse.move(x + 3, y + 3)
    page.mouse.move(x, y)
    hover = page.locator("#hover")
    hover.wait_for(state="visible")
    wait_for(page, "document.getElementById('hover').dataset.digit !== undefined")
    wait_for(page, f"document.getElementById('hover').dataset.digit === '{digit}'", timeout=10_000)
    assert hover.locator("img").get_attribute("src").startswith("data:image/png")
    assert hover.locator("span").text_content().startswith(f"{digit} · ")
    assert page.console.errors == []


def test_hover_to_image_latency(page: Page, server: ServerProcess):
    """Pointer move -> decoded image shown, measured in the page (p95 printed; the README quotes it)."""
    open_explorer(page, server.url, "?model=vae-2")
    page.locator("#map").scroll_into_view_if_needed()
    box = page.locator("#map").bounding_box()
    page.evaluate("window.digitae.timings.hover.length = 0")
    for i in range(60):
        t = i / 59
        page.mouse.move(
            box["x"] + box["width"] * (0.15 + 0.7 * t), box["y"] + box["height"] * (0.3 + 0.4 * (i % 7) / 6)
        )
        page.wait_for_timeout(25)
    page.wait_for_timeout(300)
    timings = page.evaluate("window.digitae.timings.hover")
    assert len(timings) >= 20  # latest wins: some moves are superseded before their answer, most are shown
    p50, p95 = statistics.median(timings), float(np.percentile(timings, 95))
    print(f"\nexplorer hover-to-image latency over {len(timings)} moves: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    assert page.console.errors == []


def test_higher_dimensional_models_get_pca_and_one_slider_per_dimension(page: Page, server: ServerProcess):
    open_explorer(page, server.url, "?model=ae-6&dd=4")
    assert "PCA" in page.locator("#map-kind").text_content()
    sliders = page.locator("#dim-sliders input")
    assert sliders.count() == 6
    centroid = httpx.get(f"{server.url}/v1/models/ae-6").json()["centroids"]["4"]
    assert [float(s.input_value()) for s in sliders.all()] == pytest.approx(centroid, abs=1e-3)
    wait_for(page, "document.getElementById('pinned-verdict').textContent.startsWith('judge: ')")
    before = page.locator("#pinned-img").get_attribute("src")
    sliders.nth(0).fill(str(centroid[0] + 3))
    wait_for(page, f"document.getElementById('pinned-img').src !== {json.dumps(before)}")


# -- 4, 5, 6: paths, sampling, compare -----------------------------------------------------------------


def test_an_interpolation_strip_with_its_path_on_the_map(page: Page, server: ServerProcess):
    open_explorer(page, server.url, "?model=ae-2")
    page.select_option("#path-from", "d0")
    page.select_option("#path-to", "d6")
    page.locator("#steps").fill("7")
    wait_for(page, "document.querySelectorAll('#strip figure').length === 7")
    captions = page.locator("#strip figcaption").all_text_contents()
    assert captions[0] == "t=0.00" and captions[-1] == "t=1.00"
    wait_for(page, "[...document.querySelectorAll('#strip .verdict')].every((v) => v.textContent)")
    with page.expect_download() as download:
        page.click("#path-download")
    assert download.value.suggested_filename == "digitae-ae-2-path.png"
    assert "from=d0" in page.url and "to=d6" in page.url


def test_dragging_the_sigma_slider_shows_n_samples(page: Page, server: ServerProcess):
    open_explorer(page, server.url, "?model=vae-2&n=12")
    wait_for(page, "document.querySelectorAll('#grid figure').length === 12")
    slider = page.locator("#sigma")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    page.mouse.move(box["x"] + 4, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    sigma = float(page.locator("#sigma-out").text_content())
    assert 3 < sigma < 7
    wait_for(
        page,
        f"document.getElementById('sample-summary').textContent.includes('of 12 samples')"
        f" && location.search.includes('sigma={slider.input_value()}')",
    )
    assert page.locator("#grid figure").count() == 12


def test_comparing_two_models_side_by_side(page: Page, server: ServerProcess):
    open_explorer(page, server.url, "?model=vae-2")
    page.get_by_role("button", name="example digit 2").click()
    nearest_digit(page)
    page.select_option("#compare", "ae-2")
    page.wait_for_selector(".compare-col[data-model=ae-2] .compare-recon img")
    columns = page.locator(".compare-col")
    assert [c.get_attribute("data-model") for c in columns.all()] == ["vae-2", "ae-2"]
    card = read_card(DEFAULT_CHECKPOINTS_DIR / "ae-2")
    metrics = card["metrics"].get("heldout") or card["metrics"]["test_split"]
    shown = page.locator(".compare-col[data-model=ae-2] .metrics td").first.text_content()
    assert float(shown) == pytest.approx(metrics["mse"], abs=1e-4)
    assert page.locator(".compare-col[data-model=vae-2] .losses dt").all_text_contents() == ["MSE", "BCE", "KL", "ELBO"]
    assert page.locator(".compare-col[data-model=ae-2] .grid figure").count() == 20
    with page.expect_download() as download:
        page.locator(".compare-col[data-model=ae-2] button").click()
    assert download.value.suggested_filename == "digitae-ae-2-samples.png"
    assert page.console.errors == []


# -- 8: share and keep ----------------------------------------------------------------------------------


def test_a_shared_url_reloads_the_same_view(page: Page, server: ServerProcess, browser: Any):
    open_explorer(page, server.url, "?model=ae-6")
    page.get_by_role("button", name="example digit 5").click()
    nearest_digit(page)
    page.locator("#occl").fill("0.3")
    page.select_option("#sample-digit", "8")
    page.locator("#sample-seed").fill("42")
    page.wait_for_selector("#grid[data-seed='42'][data-digit='8']")
    shared = page.url
    seen = page.locator("#seen").get_attribute("src")
    samples = page.locator("#grid img").evaluate_all("(imgs) => imgs.map((i) => i.src)")

    other = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        other.goto(shared)
        other.wait_for_selector("body[data-ready=true]")
        assert other.locator("#model").input_value() == "ae-6"
        assert other.locator("#occl").input_value() == "0.3"
        assert other.locator("#sample-digit").input_value() == "8"
        other.wait_for_selector("#grid[data-seed='42'][data-digit='8']")
        assert other.locator("#grid img").evaluate_all("(imgs) => imgs.map((i) => i.src)") == samples
        wait_for(other, f"document.getElementById('seen').src === {json.dumps(seen)}")
        assert nearest_digit(other) == nearest_digit(page)
    finally:
        other.close()


# -- docs, console, screenshots ------------------------------------------------------------------------


def test_docs_and_explorer_link_to_each_other(page: Page, server: ServerProcess):
    open_explorer(page, server.url)
    page.click("a.docs")
    page.wait_for_url("**/docs")
    description = httpx.get(f"{server.url}/openapi.json").json()["info"]["description"]
    assert "](/)" in description
    assert httpx.get(f"{server.url}/").headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("width", [375, 1440])
def test_screenshots_and_layout(page: Page, server: ServerProcess, width: int, tmp_path: Path):
    """The page fits a phone (no sideways scrolling) and a desktop; the screenshots are the README's."""
    page.set_viewport_size({"width": width, "height": 900})
    open_explorer(page, server.url, "?model=vae-2&compare=ae-2&from=d1&to=d7")
    page.get_by_role("button", name="example digit 4").click()
    nearest_digit(page)
    page.wait_for_selector(".compare-col[data-model=ae-2] .compare-recon img")
    wait_for(page, "document.querySelectorAll('#strip .verdict').length === 10")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.locator("#map").scroll_into_view_if_needed()
    x, y = page.evaluate("(z) => window.digitae.screenOf(z)", [0.0, 0.5])
    page.mouse.move(x, y)
    wait_for(page, "document.getElementById('hover').dataset.digit")
    page.evaluate("window.scrollTo(0, 0)")
    out = Path(os.environ.get("DIGITAE_SCREENSHOT_DIR", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"explorer-{width}.png"
    page.screenshot(path=str(path), full_page=width == 375)
    assert path.stat().st_size > 10_000
    assert page.console.errors == []


# -- a service with API keys, and a checkpoint without an atlas ----------------------------------------------


def test_api_key_prompt_and_a_map_without_points(browser: Any, tmp_path: Path, start_server: Any):
    models = tmp_path / "models"
    for name in ("ae-2", "classifier"):
        shutil.copytree(DEFAULT_CHECKPOINTS_DIR / name, models / name)
    card_path = models / "ae-2" / "card.json"  # an older checkpoint: no atlas
    card = json.loads(card_path.read_text())
    del card["files"]["atlas.json"]
    card_path.write_text(json.dumps(card))
    (models / "ae-2" / "atlas.json").unlink()
    server = start_server(models, api_keys="explorer-key-1")
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        page.goto(server.url)
        dialog = page.locator("#key-dialog")
        dialog.wait_for(state="visible")
        assert "API key" in page.locator("#key-message").text_content()
        page.fill("#key-input", "explorer-key-1")
        page.click("#key-form button[value=ok]")
        page.wait_for_selector("body[data-ready=true]")
        assert page.evaluate("sessionStorage.getItem('digitae.apiKey')") == "explorer-key-1"
        empty = page.locator("#map-empty")
        empty.wait_for(state="visible")
        assert "no points" in empty.text_content()
        key = {"Authorization": "Bearer explorer-key-1"}
        assert httpx.get(f"{server.url}/v1/models/ae-2/atlas", headers=key).status_code == 404
    finally:
        page.close()


# -- security headers (round 2 of the bounds issue, finding 11) ----------------------------------------------------

RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""
SECURITY_HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options", "referrer-policy")


def test_the_page_works_under_its_content_security_policy(page: Page, server: ServerProcess):
    """Was: no security header at all. Now the page and every file it loads carry a CSP without 'unsafe-inline',
    frame-ancestors 'none', nosniff and a Referrer-Policy, and the page does everything with none violated."""
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    own: dict[str, Any] = {}  # the page and its files (not the API's answers), by path

    def record(response: Any) -> None:
        path = urlsplit(response.url).path
        if response.url.startswith(server.url) and (path == "/" or path.startswith("/explorer/")):
            own[path] = response

    page.on("response", record)
    open_explorer(page, server.url, "?model=vae-2")
    draw_a_one(page)
    nearest_digit(page)
    page.locator("#examples button").first.click()
    page.wait_for_timeout(500)
    assert set(own) >= {"/", "/explorer/main.js", "/explorer/style.css", "/explorer/favicon.svg"}
    for response in own.values():
        headers = response.all_headers()
        assert all(name in headers for name in SECURITY_HEADERS), (response.url, headers)
        policy = headers["content-security-policy"]
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert page.evaluate("window.cspViolations") == []
    assert page.console.errors == []


def test_another_page_cannot_frame_the_explorer(page: Page, server: ServerProcess):
    """Clickjacking: a foreign page that frames the explorer (and its API-key dialog) gets an empty frame."""
    page.set_content(f'<iframe id="framed" src="{server.url}/" width="800" height="600"></iframe>')
    page.wait_for_timeout(1500)
    framed = page.frame_locator("#framed")
    assert framed.locator("#pad").count() == 0
    refusals = [error for error in page.console.errors if "frame-ancestors" in error or "X-Frame-Options" in error]
    assert refusals, page.console.errors
