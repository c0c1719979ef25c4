"""Write `.dvc/plots/offline.html`: the page `dvc plots show` fills (`.dvc/config` `plots.html_template`),
with Vega, Vega-Lite and Vega-Embed inline, so the plots render without a network (DVC's own page loads
them from a CDN, and offline its curves are blank).

The libraries are the bundle vl-convert builds (`vl_convert.javascript_bundle`, BSD-3-licensed Vega
code); vl-convert is needed only to regenerate the file, not to use it:

    pip install vl-convert-python==1.9.0.post1 && python tools/plots_template.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <title>DVC Plot</title>
    <!-- Vega, Vega-Lite and Vega-Embed ({version}), inline: written by tools/plots_template.py -->
    <script type="text/javascript">{bundle}</script>
    <style>table {{ border-spacing: 15px; }}</style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""
#: dvc_render fills these in the page; the bundle must not contain them
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / ".dvc/plots/offline.html")
    args = parser.parse_args()
    import vl_convert

    bundle = vl_convert.javascript_bundle()
    clashes = [p for p in PLACEHOLDERS if p in bundle]
    if clashes or "</script" in bundle:
        raise SystemExit(f"the bundle holds {clashes or '</script'}, which would break the page")
    args.out.write_text(PAGE.format(version=f"vl-convert {vl_convert.__version__}", bundle=bundle))
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
