"""The seam between the analytics and the engine that runs their SQL.

Everything above it (cohorts, the customer table, CLV, churn, segments, recommendations) asks an :class:`Engine`
for a named query of :mod:`clm_core.queries` with bound parameters, for the description of the dataset, and to keep
the customer labels (RFM segment, lifecycle stage) the labelled queries split by; none of it imports DuckDB or
Spark. Two engines implement it: :class:`clm_core.workspace.Workspace` (DuckDB, embedded: the
app's and the default) and :class:`clm_core.spark_engine.SparkEngine` (a Spark session, for data past one machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pandas as pd

if TYPE_CHECKING:  # the workspace module imports DuckDB; the seam itself does not
    from clm_core.workspace import DatasetInfo

__all__ = ["Engine"]


class Engine(Protocol):
    """What the analytics read: named queries and the dataset's description. A static protocol (not
    ``runtime_checkable``: an isinstance check would read ``dataset``, which raises when nothing is loaded)."""

    @property
    def dataset(self) -> "DatasetInfo":
        """The loaded dataset; :class:`clm_core.errors.NoDatasetError` when there is none."""
        ...

    @property
    def has_dataset(self) -> bool:
        """Whether a dataset is loaded."""
        ...

    def query(self, name: str, *, segment: str | None = None, attributes: list[str] | None = None,
              **params: object) -> pd.DataFrame:
        """The result of the named query ``name`` with ``params`` bound and its identifier slots filled:
        ``segment`` (a segment column of the dataset) and ``attributes`` (segment or contact columns), checked
        against the dataset first (:class:`clm_core.errors.SchemaError` when one is not there)."""
        ...

    @property
    def read_only(self) -> bool:
        """Whether customer labels cannot be stored (a workspace opened read-only)."""
        ...

    def store_customer_labels(self, labels: pd.DataFrame, note: str) -> str:
        """Replace the stored customer labels with ``labels`` (``customer_id`` and one column per kind) described
        by ``note``; returns their version (:func:`clm_core.workspace.labels_long_form`)."""
        ...

    def customer_labels_info(self) -> tuple[str, str] | None:
        """(note, version) of the stored customer labels; None when none are stored."""
        ...

    def customer_labels(self) -> pd.DataFrame:
        """The stored labels, one row per customer with a label: ``customer_id`` and a column per kind."""
        ...
