"""Cohorts page: of the customers acquired in a period, how many still buy and what are they worth now."""

import dataclasses

import pandas as pd
import streamlit as st

import app_state

app_state.wait_for_imports()  # the model modules, never imported by two threads at once

from clm_core.charts import cohort_heatmap_figure, cumulative_revenue_figure, retention_curves_figure  # noqa: E402
from clm_core.cohorts import DEFINITIONS, FEW_COHORTS, PERIODS, WEEK_START  # noqa: E402
from clm_core.errors import ClmError  # noqa: E402
from clm_core.export import XLSX_MIME, to_csv_bytes, to_excel_bytes  # noqa: E402
from clm_core.segments import LABELS  # noqa: E402

_LABEL = "label:"  # a split by a stored customer label, not a column of the file

st.title("Cohorts")
st.write("Customers are grouped by when they first bought. Follow each group to see how many come back "
         "and how much revenue they bring over time.")
dataset = app_state.require_dataset()
ws = app_state.workspace()
summary = app_state.cached_summary(dataset.fingerprint, ws)

controls = st.columns(4)
period = controls[0].radio("Cohort period", list(PERIODS), index=1, format_func=PERIODS.get, horizontal=True,
                           key="cohorts_period",
                           help="Group customers by the week, month or quarter of their first purchase. " + WEEK_START)
definition = controls[1].radio(
    "Retention definition", list(DEFINITIONS), format_func=str.title, horizontal=True, key="cohorts_definition",
    help=DEFINITIONS["classic"] + " " + DEFINITIONS["rolling"],
)
segment_options = {None: "No split", **dataset.segment_columns,
                   **{f"{_LABEL}{kind}": name for kind, name in LABELS.items()}}
split = controls[2].selectbox("Split by", list(segment_options), format_func=segment_options.get,
                              key="cohorts_segment",
                              help="Show separate cohorts for each value of a segment attribute of your file, or of "
                                   "each customer's RFM segment or lifecycle stage (Segments page).")
label = split[len(_LABEL):] if split and split.startswith(_LABEL) else None
segment = None if label else split
min_size = controls[3].number_input("Minimum cohort size", min_value=1, value=1, step=5, key="cohorts_min_size",
                                    help="Hide cohorts with fewer customers than this: small cohorts jump around.")
first, last = summary.first_date.date(), summary.last_date.date()
date_range = (first, last)
if first < last:  # with one day of data there is no range to choose; cohort_table explains what is missing
    date_range = st.slider("First purchase between", min_value=first, max_value=last, value=(first, last),
                           format="DD MMM YYYY", key="cohorts_dates",
                           help="Only cohorts whose period starts in this range are shown.")

try:
    labels_version = app_state.customer_labels(dataset.fingerprint, ws)[2] if label else None
    with st.spinner("Computing cohorts..."):
        table = app_state.cached_cohorts(dataset.fingerprint, ws, period, definition, segment, label, labels_version,
                                         pd.Timestamp(date_range[0]), pd.Timestamp(date_range[1]), int(min_size))
except ClmError as error:
    st.warning(app_state.plain(error))
    st.stop()
if split is not None:
    groups = list(dict.fromkeys(table.long["segment"].astype(str)))
    shown = st.multiselect(f"Show only these groups ({segment_options[split]})", groups, key=f"cohorts_groups_{split}",
                           placeholder="All groups",
                           help="Keep only some groups on the charts, the headline figures and the downloads.")
    if shown:
        table = dataclasses.replace(table, long=table.long[table.long["segment"].astype(str).isin(shown)])
    if label:
        st.caption(f"{segment_options[split]}: {app_state.plain(app_state.customer_labels(dataset.fingerprint, ws)[1])}"
                   " (each customer's group now, not when they first bought). Choose others on the Segments page.")

for note in table.notes:
    st.caption("⚠️ " + app_state.plain(note))
if period == "week":
    st.caption(WEEK_START)
unit = PERIODS[period].lower()
has_first_cohort = bool(table.long["left_censored"].any())
include_first = st.toggle(
    "Include the first cohort in the average", key="cohorts_include_first", disabled=not has_first_cohort,
    help="The first cohort of the data may hold customers who had bought before the data start, so its retention "
         "is not that of new customers. It is left out of the average cohort and the headline figures unless you "
         "switch this on.")
headline = table.headline(include_left_censored=include_first)
cells = st.columns(4)
cells[0].metric("Cohorts shown", f"{table.long[['cohort', 'segment']].drop_duplicates().shape[0]:,}")
for cell, offset in zip(cells[1:], (1, 3, 12)):
    value = headline[offset]
    cell.metric(f"{unit.title()} {offset} retention", "n/a" if value is None else f"{value:.1%}",
                help=f"Average cohort, weighted by size: share of customers who bought {offset} {unit}(s) after "
                     "their first purchase. n/a when no cohort is that old yet.")
st.caption(DEFINITIONS[definition] + " Churn rate = 1 - retention.")

pick = st.columns([3, 1])
metric = pick[0].radio("Heatmap shows", ["retention", "churn_rate", "revenue_retention"], horizontal=True,
                       format_func={"retention": "Customer retention", "churn_rate": "Churn rate",
                                    "revenue_retention": "Revenue retention"}.get, key="cohorts_metric",
                       help="Revenue retention: net revenue in the period divided by the cohort's revenue in its "
                            "first period.")
rows = pick[1].selectbox(
    "Cohorts on the heatmap", [12, 24, 36, 52, 104, 0], index=2, key="cohorts_max_rows",
    format_func=lambda n: "All" if n == 0 else f"The {n} most recent",
    help="Long histories (weekly cohorts over years) make a heatmap too tall to read: show only the most recent "
         "cohorts. The averages, curves and downloads always use every cohort.")
if metric == "revenue_retention" and not dataset.has_money:
    st.info("Revenue retention needs an amount column; this dataset has none.")
else:
    st.plotly_chart(cohort_heatmap_figure(table, metric, max_cohorts=rows or None), key="cohorts_heatmap")
left, right = st.columns(2)
left.plotly_chart(retention_curves_figure(table, include_left_censored=include_first), key="cohorts_curves")
if table.average_curve(include_left_censored=include_first).empty:
    left.info("The average cohort is empty: only the first cohort is shown, and it is left out of the average. "
              "Switch on 'Include the first cohort in the average' or widen the filters.")
else:
    left.caption(f"Faded points of the average rest on fewer than {FEW_COHORTS} cohorts (hover for how many "
                 "customers): read them as anecdotes, not trends.")
if dataset.has_money:
    right.plotly_chart(cumulative_revenue_figure(table), key="cohorts_ltv")
else:
    right.info("Cumulative revenue per customer needs an amount column.")

st.subheader("Export")
st.caption("The downloads hold every cohort. Counts and rates of periods not complete yet are blank; the columns "
           "complete, censored (rolling retention: a lower bound) and left_censored (the first cohort) say which.")
long = table.export_long()
wide = table.wide("retention").reset_index()
a, b, c = st.columns(3)
# Built when clicked (on_click="ignore": no rerun), not on every change of a control.
a.download_button("Cohort table, long (CSV)", lambda: to_csv_bytes(long), "cohorts_long.csv", "text/csv",
                  key="cohorts_dl_long", on_click="ignore")
b.download_button("Retention, wide (CSV)", lambda: to_csv_bytes(wide), "cohorts_wide.csv", "text/csv",
                  key="cohorts_dl_wide", on_click="ignore")
c.download_button("Both (Excel)", lambda: to_excel_bytes({"long": long, "retention_wide": wide}), "cohorts.xlsx",
                  XLSX_MIME, key="cohorts_dl_xlsx",
                  on_click="ignore")
