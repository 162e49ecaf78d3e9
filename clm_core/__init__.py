"""clm_core: customer-lifecycle analytics over DataFrames and DuckDB (no UI code)."""

__version__ = "0.1.0"

_blas_limited = False


def use_one_blas_thread() -> None:
    """Run the BLAS library numpy and scipy use (OpenBLAS) on one thread, for the whole process; once.

    The models call BLAS on small vectors (a few thousand distinct purchase histories, a handful of parameters),
    where OpenBLAS's threads cost more than they save: each call wakes them and waits for them, and while another
    computation or the web server holds the other core that wait is long. A BG/NBD fit on CDNOW master's 11,104
    distinct histories took 0.5 to 1.5 s with OpenBLAS's threads on a busy two-core machine, and 0.013 s on
    one; churn training on it 7.8 s against 2.5 s. The app and the command line call this at start; library users
    may too. Large sparse and tree computations do not use BLAS and keep their own threads."""
    global _blas_limited
    if not _blas_limited:
        import os
        import threading

        from threadpoolctl import threadpool_limits

        # numpy and scipy each bundle their own OpenBLAS, loaded when first imported: the variable reaches those
        # not loaded yet, threadpoolctl those already loaded. threadpoolctl runs on a thread of its own: called
        # on a Streamlit script thread, it kept that session's state alive after the session ended, so its
        # folder was never removed (tests/browser/test_session_lifecycle.py).
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        worker = threading.Thread(target=threadpool_limits, args=(1,), kwargs={"user_api": "blas"})
        worker.start()
        worker.join()
        _blas_limited = True
