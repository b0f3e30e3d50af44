"""The playground in a real headless browser (Debian's chromium + chromium-driver, driven by
Selenium; `.ci/run` installs them): load the page, type a spec, see the table and totals,
introduce an error and see it underlined with its message, click a row for its explanation,
save, and see an edit made on disk. `nnspec html`'s file opened offline, too.

Screenshots of each step are kept in test-artifacts/serve/ (git-ignored) for a reviewer.
"""

from __future__ import annotations

import os
import pathlib
import time

import pytest

import nnspec
from nnspec.errors import SpecError
from nnspec.explain import explain

from conftest import ROOT, SPECS
from serve_util import running

pytest.importorskip("selenium", reason="selenium is in the test extra: pip install -e '.[test]'")
CHROMEDRIVER = "/usr/bin/chromedriver"
if not os.path.exists(CHROMEDRIVER):
    pytest.skip("no chromium-driver here (apt-get install chromium chromium-driver; CI has it)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # a browser and a server: ~20 s in all

ARTIFACTS = ROOT / "test-artifacts" / "serve"
LENET = (SPECS / "lenet5.nn").read_text()


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1500,950", "--disable-extensions", "--no-first-run"):
        opts.add_argument(a)
    # Service with the distribution's driver: Selenium Manager never downloads anything
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def shot(driver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait(driver, cond, what: str, timeout: float = 20):
    return WebDriverWait(driver, timeout).until(lambda d: cond(d), message=what)


def editor_text(driver) -> str:
    return driver.execute_script("return document.getElementById('src').value")


def totals(driver) -> dict:
    return driver.execute_script(
        "const out = {}; const dl = document.getElementById('totals');"
        "for (const dt of dl.querySelectorAll('dt')) out[dt.textContent] = dt.nextElementSibling.textContent;"
        "return out;")


def rows(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#table tbody tr')].map(tr => tr.dataset.name)")


def type_into_editor(driver, text: str) -> None:
    src = driver.find_element(By.ID, "src")
    src.click()
    src.send_keys(Keys.CONTROL, "a")
    src.send_keys(Keys.DELETE)
    src.send_keys(text)


def test_the_playground_end_to_end(browser, tmp_path):
    path = tmp_path / "net.nn"
    path.write_text((SPECS / "resnet18.nn").read_text())
    with running(path, workers=2) as app:
        d = browser
        d.get(app.url)
        # the page loads the file and shows its table
        wait(d, lambda d: len(rows(d)) == len(nnspec.load(path).graph.nodes) - 1, "ResNet-18's rows")
        assert totals(d)["parameters"].startswith("11,689,512")  # domain.md: torchvision ResNet-18
        shot(d, "1-loaded-resnet18")

        # type a spec: the table and the totals follow
        type_into_editor(d, LENET)
        wait(d, lambda d: rows(d)[:2] == ["c1", "c1_tanh"] and "61,706" in totals(d).get("parameters", ""),
             "LeNet-5's table and 61,706 parameters")
        assert editor_text(d) == LENET
        assert rows(d) == [nd.name for nd in nnspec.loads(LENET).graph.nodes[1:]]
        shot(d, "2-typed-lenet5")

        # an error: underlined at its line and column, with the checker's message
        at = LENET.index("conv(16, 5)") + len("conv(16, 5)")
        d.execute_script(f"const s = document.getElementById('src'); s.focus(); s.setSelectionRange({at}, {at});")
        d.find_element(By.ID, "src").send_keys(Keys.BACKSPACE)
        broken = LENET[:at - 1] + LENET[at:]
        with pytest.raises(SpecError) as e:
            nnspec.loads(broken, str(path))
        want = e.value.diagnostics[0]
        mark = wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#hl .d-error"), "an underline")[0]
        line = mark.find_element(By.XPATH, "ancestor::span[@class='ln' or contains(@class,'ln ')]")
        assert int(line.get_attribute("data-line")) == want.span.line
        src_line = broken.split("\n")[want.span.line - 1]
        assert mark.get_attribute("textContent") == src_line[want.span.column - 1:want.span.end_column - 1]
        assert mark.get_attribute("title") == want.message
        # the pointer over the underline: the message as the editor's tooltip
        ActionChains(d).move_to_element(mark).perform()
        wait(d, lambda d: d.find_element(By.ID, "src").get_attribute("title") == f"{want.code} {want.message}",
             "the tooltip")
        problems = d.find_element(By.ID, "problems").text
        assert want.message in problems and want.code in problems
        assert "has-error" in d.find_elements(By.CSS_SELECTOR, "#gutter div")[want.span.line - 1].get_attribute("class")
        shot(d, "3-error-underlined")

        # fixed again; a click on a row shows `nnspec explain` for it
        d.find_element(By.ID, "src").send_keys(")")
        wait(d, lambda d: not d.find_elements(By.CSS_SELECTOR, "#hl .d-error"), "the error gone")
        wait(d, lambda d: d.find_element(By.ID, "stale").get_attribute("hidden") is not None, "fresh table")
        d.find_element(By.CSS_SELECTOR, '#table tbody tr[data-name="c3"]').click()
        expected = explain(nnspec.loads(LENET, str(path)).analyze(), "c3")
        wait(d, lambda d: d.find_element(By.ID, "explain-text").get_attribute("textContent") == expected,
             "c3's explanation")
        assert "selected" in d.find_element(By.CSS_SELECTOR, '#table tbody tr[data-name="c3"]').get_attribute("class")
        shot(d, "4-explain-c3")

        # save: the file on disk is the editor's text
        d.find_element(By.ID, "save").click()
        wait(d, lambda d: path.read_text() == LENET, "the file saved")
        assert d.find_element(By.ID, "dirty").get_attribute("hidden") is not None

        # an edit made on disk shows up in the page
        edited = LENET.replace("f6: linear(84) tanh", "f6: linear(42) tanh")
        time.sleep(0.05)  # a new mtime even on coarse clocks
        path.write_text(edited)
        wait(d, lambda d: editor_text(d) == edited, "the disk edit in the editor")
        total = nnspec.loads(edited).analyze().totals.params
        wait(d, lambda d: f"{total:,}" in totals(d).get("parameters", ""), "the disk edit's totals")
        shot(d, "5-edited-on-disk")


def test_the_static_report_opens_offline(browser, tmp_path):
    from nnspec.cli import main
    out = tmp_path / "report.html"
    spec = tmp_path / "lenet5.nn"
    spec.write_text(LENET)
    assert main(["html", str(spec), "-o", str(out)]) == 0
    d = browser
    d.get(pathlib.Path(out).as_uri())
    wait(d, lambda d: len(rows(d)) == len(nnspec.load(spec).graph.nodes) - 1, "the report's rows")
    assert totals(d)["parameters"].startswith("61,706")
    assert editor_text(d) == LENET
    d.find_element(By.CSS_SELECTOR, '#table tbody tr[data-name="f5"]').click()
    expected = explain(nnspec.load(spec).analyze(), "f5")
    wait(d, lambda d: d.find_element(By.ID, "explain-text").get_attribute("textContent") == expected,
         "f5's explanation")
    # nothing fetched: every asset is inline
    assert d.execute_script("return performance.getEntriesByType('resource').length") == 0
    shot(d, "6-static-report")


def test_a_click_on_a_diagram_box_explains_it(browser, tmp_path):
    pytest.importorskip("nnspec.diagram", reason="the diagram module (branch diagram) is not merged yet")
    path = tmp_path / "net.nn"
    path.write_text((SPECS / "resnet18.nn").read_text())
    with running(path) as app:
        d = browser
        d.get(app.url)
        box = wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, '#diagram .nn-node[data-name="layer2.0.conv1"]'),
                   "layer2.0.conv1's box")[0]
        assert int(box.get_attribute("data-line")) == nnspec.load(path).graph.find("layer2.0.conv1").span.line
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        box.click()
        expected = explain(nnspec.load(path).analyze(), "layer2.0.conv1")
        wait(d, lambda d: d.find_element(By.ID, "explain-text").get_attribute("textContent") == expected,
             "layer2.0.conv1's explanation")
        assert "selected" in box.get_attribute("class")
        assert "selected" in d.find_element(By.CSS_SELECTOR, '#table tbody tr[data-name="layer2.0.conv1"]').get_attribute("class")
        shot(d, "7-diagram-box-explained")
        # a click on a row far down: its box is scrolled into the diagram's view
        d.execute_script("document.getElementById('diagram').scrollTop = 0")
        row = d.find_element(By.CSS_SELECTOR, '#table tbody tr[data-name="layer4.1.conv2"]')
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
        row.click()
        inside = ("const b = document.querySelector('#diagram .nn-node[data-name=\"layer4.1.conv2\"]')"
                  ".getBoundingClientRect(), c = document.getElementById('diagram').getBoundingClientRect();"
                  "return b.top >= c.top && b.bottom <= c.bottom;")
        wait(d, lambda d: d.execute_script(inside), "layer4.1.conv2's box in view")


def test_the_downloads_are_the_spec_the_table_json_and_the_svg(browser, tmp_path):
    from nnspec.report import to_json
    path = tmp_path / "lenet5.nn"
    path.write_text(LENET)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    with running(path) as app:
        d = browser
        d.get(app.url)
        wait(d, lambda d: len(rows(d)) == len(nnspec.load(path).graph.nodes) - 1, "the rows")
        for button, name in (("dl-spec", "lenet5.nn"), ("dl-json", "lenet5.json"), ("dl-svg", "lenet5.svg")):
            d.find_element(By.ID, button).click()
            wait(d, lambda d: (downloads / name).exists() and (downloads / name).stat().st_size > 0, name)
    assert (downloads / "lenet5.nn").read_text() == LENET
    assert (downloads / "lenet5.json").read_text() == to_json(nnspec.load(path).analyze()) + "\n"
    svg = (downloads / "lenet5.svg").read_text()
    assert svg.startswith("<svg") and 'data-name="c3"' in svg
