"""Build the website with warnings as errors, then open it in headless Chromium.

Both sites: the English one (_build/html) and the Chinese one beside it (html/zh, from the sources
course/i18n_build.py generates), as `make book` builds them."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SITE_BUILD = ROOT / "_build" / "test-site"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
# Jupyter Book 1.0.4 adds sphinx-thebe's inline config script twice; thebe is off
# here (no launch of live kernels), so the second declaration's error is harmless.
KNOWN_JS_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)
ASSET = re.compile(r'<(?:script|img|link)\b[^>]*?(?:src|href)="([^"#]+)"')


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


def _build_book(source: Path, out: Path) -> Path:
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jupyter_book), "build", str(source), "-W", "-n", "--keep-going", "--path-output", str(out)],
        cwd=ROOT, capture_output=True, text=True,
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "WARNING" in line or "ERROR" in line]
    assert result.returncode == 0, "book build failed:\n" + "\n".join(problems or [result.stderr[-3000:]])
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def site() -> Path:
    shutil.rmtree(SITE_BUILD, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "course", "status", "_build/status.md"], cwd=ROOT, check=True)
    return _build_book(ROOT, SITE_BUILD)


@pytest.fixture(scope="module")
def zh_site(site) -> Path:
    """The Chinese site, put where the English pages' language links point: html/zh."""
    sources = SITE_BUILD / "zh-src"
    subprocess.run([sys.executable, "-m", "course", "translate", "build", "--out", str(sources)],
                   cwd=ROOT, check=True)
    html = _build_book(sources, SITE_BUILD / "zh")
    shutil.copytree(html, site / "zh", dirs_exist_ok=True)
    return site / "zh"


@pytest.mark.book
def test_every_toc_page_is_built(site):
    for page in _toc_pages():
        assert (site / f"{page}.html").exists(), f"{page} was not built"


@pytest.mark.book
def test_every_toc_page_is_built_in_chinese_with_a_link_to_its_english_twin(zh_site, site):
    for page in _toc_pages():
        chinese = zh_site / f"{page}.html"
        assert chinese.exists(), f"zh/{page} was not built"
        html = chinese.read_text(encoding="utf-8")
        assert '<html lang="zh-CN"' in html, f"zh/{page} does not say it is Chinese"
        for here, html_here in ((chinese, html), (site / f"{page}.html", None)):
            html_here = html_here or here.read_text(encoding="utf-8")
            link = re.search(r'class="oml-language-switch"><a href="([^"]+)"', html_here)
            assert link, f"{here} has no link to the other language"
            twin = (here.parent / link.group(1)).resolve()
            assert twin.exists() and twin.name == f"{Path(page).name}.html", f"{here} links to {twin}"


@pytest.mark.book
@pytest.mark.parametrize("which", ["en", "zh"])
def test_pages_load_nothing_from_the_internet_and_every_local_asset_exists(which, request):
    site = request.getfixturevalue("site" if which == "en" else "zh_site")
    for page in _toc_pages():
        html_path = site / f"{page}.html"
        html = html_path.read_text(encoding="utf-8")
        for ref in ASSET.findall(html):
            if ref.startswith(("http://", "https://", "//")):
                tag = re.search(rf'<[^>]*"{re.escape(ref)}"[^>]*>', html).group(0)
                assert "<link" in tag and "stylesheet" not in tag and "preload" not in tag, (
                    f"{page} loads {ref} from the internet"
                )
                continue
            target = (html_path.parent / urlparse(ref).path).resolve()
            assert target.exists(), f"{page} refers to missing {ref}"


def _chromium() -> str | None:
    found = [p for p in CHROMIUM_PATHS if os.path.exists(p)] or [shutil.which("chromium")]
    return found[0]


class _QuietHandler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript"}

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.book
@pytest.mark.parametrize("page, needs", [
    ("book/intro", ("math",)),
    ("notebooks/00_setup_and_tour", ("math", "widget", "diagram", "image")),
    # the Chinese site: three chapters of the edition, and search in Chinese
    ("zh/notebooks/00_setup_and_tour", ("math", "widget", "diagram", "image", "cjk")),
    ("zh/notebooks/01_backpropagation", ("math", "image", "cjk")),
    ("zh/notebooks/04_rnn", ("math", "image", "cjk")),
    ("zh/search", ("search",)),
])
def test_site_renders_in_chromium(server, zh_site, page, needs):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI requires the browser test: install Debian's chromium (apt-get install chromium)")
        pytest.skip("Chromium not found (apt-get install chromium to run the browser test)")
    from playwright.sync_api import sync_playwright

    requests, failures, errors = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.on("request", lambda r: requests.append(r.url))
        tab.on("requestfailed", lambda r: failures.append(f"{r.url} ({r.failure})"))
        tab.on("response", lambda r: r.status >= 400 and failures.append(f"{r.url} -> HTTP {r.status}"))
        tab.on("pageerror", lambda e: str(e) in KNOWN_JS_ERRORS or errors.append(str(e)))
        query = "?q=反向传播" if "search" in needs else ""
        tab.goto(f"{server}/{page}.html{query}", wait_until="load")
        if "math" in needs:
            tab.wait_for_function("document.querySelectorAll('mjx-container').length > 0", timeout=30_000)
        if "widget" in needs:
            tab.wait_for_selector(".widget-slider", timeout=30_000)
        if "diagram" in needs:
            tab.wait_for_selector(".mermaid svg", timeout=30_000)
        if "image" in needs:
            loaded = "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
            assert tab.evaluate(loaded) > 0
        if "search" in needs:  # the index splits Chinese into words (jieba); a Chinese query finds them
            tab.wait_for_selector("#search-results li a", timeout=30_000)
            hits = tab.eval_on_selector_all("#search-results li a", "links => links.map(a => a.href)")
            assert any("01_backpropagation" in h for h in hits), f"search for 反向传播 found {hits}"
        tab.wait_for_load_state("networkidle")
        if "cjk" in needs:  # Chinese text is drawn with the course's own CJK font (oml-cjk.css)
            tab.evaluate("document.fonts.ready")
            faces = tab.evaluate("[...document.fonts].filter(f => f.family.includes('OML WenQuanYi'))"
                                 ".map(f => f.status)")
            assert "loaded" in faces, f"the course's CJK font was not used on {page}: {faces}"
            assert "中文" not in tab.inner_text(".oml-language-switch")  # it links to English
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = ("zh-" if page.startswith("zh/") else "") + Path(page).name
        tab.screenshot(path=str(SCREENSHOTS / f"{shot}.png"), full_page=True)
        browser.close()
    outside = [u for u in requests if not u.startswith(server) and not u.startswith("data:")]
    assert not outside, f"{page} requested from the internet: {outside}"
    assert not failures, f"{page} has missing local assets: {failures}"
    assert not errors, f"{page} raised JavaScript errors: {errors}"
