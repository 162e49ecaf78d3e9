"""Re-render time of the Cohorts page on Online Retail when the user switches period or definition.

    python benchmarks/bench_cohorts_page.py

Drives the real page with Streamlit's AppTest (no browser); the first switch to a
setting computes it, a switch back is served from the cache. Prints each run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clm_core.workspace import Workspace  # noqa: E402


def main() -> None:
    folder = tempfile.mkdtemp(prefix="clm-bench-")
    workspace = Workspace(Path(folder) / "workspace.duckdb")
    workspace.ingest(ROOT.parent / "shared" / "data" / "online_retail.csv.gz")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["session_folder"] = folder
    at.session_state["workspace"] = workspace
    at.session_state["demo_checked"] = True
    at.run()
    at.switch_page("pages/cohorts.py").run()
    for widget, value in (("cohorts_period", "week"), ("cohorts_period", "quarter"), ("cohorts_period", "month"),
                          ("cohorts_definition", "rolling"), ("cohorts_definition", "classic")):
        started = time.perf_counter()
        at.radio(key=widget).set_value(value).run()
        assert not at.exception, at.exception
        print(f"  {widget.split('_')[1]:<10} -> {value:<8} {time.perf_counter() - started:6.2f} s")


if __name__ == "__main__":
    main()
