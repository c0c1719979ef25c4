"""What `dvc plots show` gives a user of this repository: a page that draws offline, with titled axes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_dvc_plots_show_draws_offline_with_titled_axes(tmp_path):
    """The page loads Vega from the template (.dvc/config plots.html_template), never from a CDN, and every
    curve's axes carry the titles dvc.yaml gives its folder, not the columns' names x and y."""
    dvc = Path(sys.executable).with_name("dvc")
    subprocess.run([str(dvc), "plots", "show", "-o", str(tmp_path)], cwd=PROJECT, check=True, capture_output=True)
    page = (tmp_path / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "http://" not in page.split("<body>")[0].replace("http://www.w3.org", "")
    assert "window.vegaEmbed=" in page                      # the library itself, inline
    specs = [json.loads(s) for s in re.findall(r"var spec = (\{.*?\});\n", page, re.S)]
    curves = [s for s in specs if str(s.get("title", "")).startswith("reports/curves/")]
    assert len(curves) >= 4, [s.get("title") for s in specs]
    for spec in curves:
        x, y = spec["encoding"]["x"]["title"], spec["encoding"]["y"]["title"]
        assert x not in ("x", "") and y not in ("y", ""), (spec["title"], x, y)
    titles = {spec["encoding"]["x"]["title"] for spec in curves}
    assert {"epoch", "PIT of the truth (bin centre)", "nominal level of the interval"} <= titles
