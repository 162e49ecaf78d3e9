"""BLAS on one thread (clm_core.use_one_blas_thread): every OpenBLAS the process loads, numpy's and scipy's own,
also the ones loaded after the call, as the app loads scipy lazily."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_blas_library_runs_on_one_thread_even_those_loaded_later():
    script = (
        "import numpy\n"
        "from clm_core import use_one_blas_thread\n"
        "use_one_blas_thread()\n"
        "import scipy.optimize, scipy.linalg  # scipy's own OpenBLAS, loaded after the call\n"
        "from threadpoolctl import threadpool_info\n"
        "import json; print(json.dumps([(i['filepath'], i['num_threads']) for i in threadpool_info()"
        " if i['user_api'] == 'blas']))\n"
    )
    environment = {key: value for key, value in os.environ.items() if not key.endswith("_NUM_THREADS")}
    output = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True,
                            text=True, check=True).stdout
    libraries = json.loads(output)
    assert len(libraries) >= 1
    assert all(threads == 1 for _, threads in libraries), libraries
