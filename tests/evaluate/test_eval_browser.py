"""The report as a person sees it: index.html rendered by headless Chromium (Debian's
``chromium`` package; ``apt-get install -y chromium``).  Slow (``make test-all``)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from evalsynth import read_real

from fastmc.evaluate import FloorConfig, evaluate
from fastmc.evaluate.wholeevent import ClassifierConfig

_CHECK = """
<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const head = document.getElementById("headline");
  let table = head; while (table && table.tagName !== "TABLE") table = table.nextElementSibling;
  const rows = table ? table.querySelectorAll("tr").length : 0;
  const firstH2 = document.querySelector("h2");
  const out = document.createElement("pre");
  out.id = "fastmc-check";
  out.textContent = `images=${imgs.length} broken=${broken.length} [${broken.join(",")}] ` +
    `headline_rows=${rows} first_h2=${firstH2 ? firstH2.id : ""} ` +
    `headline_text=${table ? table.innerText.replace(/\\s+/g, " ") : ""}`;
  document.body.appendChild(out);
});
</script>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium binary on PATH: install Debian's package (apt-get install -y chromium) to render "
                "the report in a browser")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path, data_dir):
    browser = _chromium()
    ev = read_real(data_dir / "glgl1400_neutralino1100_chan1.csv")
    perm = np.random.default_rng(0).permutation(len(ev))
    ref, gen = ev[np.sort(perm[:1500])], ev[np.sort(perm[1500:3000])]
    other = read_real(data_dir / "sqsq1_sq1400_neut800_chan1.csv")[:1500]
    out = tmp_path / "report"
    evaluate(ref, {"half": gen, "sqsq1": other}, out_dir=out, seed=0, config=FloorConfig(repeats=3),
             classifier_config=ClassifierConfig(folds=3))
    index = out / "index.html"
    html = index.read_text(encoding="utf-8")
    checker = tmp_path / "check.html"
    checker.write_text(html.replace("</body>", _CHECK + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=20000", "--dump-dom", checker.as_uri()],
                         capture_output=True, text=True, timeout=180, check=True).stdout
    m = re.search(r'<pre id="fastmc-check">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    check = m.group(1)
    n_images = int(re.search(r"images=(\d+)", check).group(1))
    assert n_images == html.count("<img ") and n_images > 40
    assert "broken=0 " in check, check
    # the headline table comes first and holds both samples with their AUCs and sizes
    assert "first_h2=headline" in check, check
    assert int(re.search(r"headline_rows=(\d+)", check).group(1)) == 3, check
    assert "half" in check and "sqsq1" in check and "1500 vs 1500" in check, check
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, "--window-size=1400,1800", f"--screenshot={shot}", index.as_uri()],
                   capture_output=True, text=True, timeout=180, check=True)
    from PIL import Image

    with Image.open(shot) as im:
        px = np.asarray(im.convert("L"), dtype=np.float64)
    assert px.shape == (1800, 1400)
    top = px[:900]
    # a rendered page: text and table borders, not a blank or an error page
    assert (top < 128).mean() > 0.003 and top.std() > 10
