"""clm_core: customer-lifecycle analytics over DataFrames and DuckDB (no UI code)."""

__version__ = "0.1.0"
