"""Segments page: RFM segments, clusters and lifecycle stages, with how customers move between stages."""

import dataclasses
from datetime import timedelta

import streamlit as st

import app_state

app_state.wait_for_imports()  # the model modules, never imported by two threads at once

from clm_core import charts, segments  # noqa: E402
from clm_core.errors import ClmError  # noqa: E402
from clm_core.export import XLSX_MIME, to_csv_bytes, to_excel_bytes  # noqa: E402


st.title("Segments")
st.write("Groups of customers a marketer already knows how to act on: **RFM segments** (recency, frequency, "
         "money), **clusters** found in the data, and **lifecycle stages**, with how customers move between them.")
dataset = app_state.require_dataset()
ws = app_state.workspace()
summary = app_state.cached_summary(dataset.fingerprint, ws)
first, last = summary.first_date.date(), summary.last_date.date()
controls = st.columns([1, 1, 2])
as_of = controls[0].date_input("As of", value=last, min_value=first, max_value=last, key="seg_as_of",
                               format="DD/MM/YYYY", help="Scores and stages as they were on this day.")
with_models = controls[1].toggle("Use the CLV models", value=False, key="seg_with_models", disabled=as_of != last,
                                 help="Probability still active (BG/NBD) marks churned customers, and each segment "
                                      "shows its 12-month CLV. Only for the last day of the data.")
with st.expander("Stage thresholds"):
    defaults = segments.StageSettings()
    columns = st.columns(4)
    settings = segments.StageSettings(
        period_days=int(columns[0].number_input("New / reactivated within (days)", 1, 365, defaults.period_days,
                                                key="seg_period",
                                                help="A first purchase (or a comeback) this recent is acquisition "
                                                     "(or reactivation).")),
        churn_days=int(columns[1].number_input("Churned after (days without a purchase)", 2, 3650,
                                               defaults.churn_days, key="seg_churn")),
        one_time_days=int(columns[2].number_input("One-time buyers at risk after (days)", 1, 3650,
                                                  defaults.one_time_days, key="seg_one_time")),
        gap_ratio=float(columns[3].number_input("At risk past this many usual gaps", 0.5, 10.0, defaults.gap_ratio,
                                                step=0.25, key="seg_gap",
                                                help="A repeat customer whose days since their last purchase exceed "
                                                     "their usual gap times this is at risk.")),
        alive_threshold=defaults.alive_threshold, risk_threshold=defaults.risk_threshold)
settings_key = tuple(dataclasses.astuple(settings))
rfm_tab, cluster_tab, stage_tab = st.tabs(["RFM segments", "Clusters", "Lifecycle stages"])

with rfm_tab:
    with st.expander("Segment rules (edit the score ranges; the first rule a customer fits, by priority, wins)"):
        edited = st.data_editor(segments.default_segment_rules(), key="seg_rules", hide_index=True,
                                num_rows="dynamic",
                                column_config={name: st.column_config.Column(label)
                                               for name, label in segments.SEGMENT_RULE_COLUMNS.items()})
    try:
        rules = segments.validate_segment_rules(edited)
        with st.spinner("Scoring every customer..."):
            result = app_state.cached_segments(dataset.fingerprint, ws, as_of, rules, settings_key, with_models)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        st.stop()
    for note in result.notes:
        st.caption("⚠️ " + app_state.plain(note))
    scored = result.customers
    headline = st.columns(3)
    headline[0].metric("Customers", f"{len(scored):,}")
    headline[1].metric("Segments in use", f"{int((result.profiles['customers'] > 0).sum())}")
    headline[2].metric("As of", f"{as_of:%d %b %Y}")
    by_revenue = st.toggle("Size by revenue", key="seg_by_revenue", disabled=not result.has_money,
                           help="Area by revenue (net of returns) instead of number of customers.")
    st.plotly_chart(charts.segment_treemap_figure(result.profiles, by_revenue=by_revenue), key="seg_treemap")
    profiles = result.profiles.rename(columns={
        "rfm_segment": "Segment", "customers": "Customers", "share_of_customers": "Share of customers",
        "revenue": "Revenue", "share_of_revenue": "Share of revenue", "average_order_value": "Average order value",
        "median_days_since_last_purchase": "Median days since last purchase", "clv": "CLV, next 12 months"})
    st.dataframe(profiles, hide_index=True, column_config={
        "Share of customers": st.column_config.NumberColumn(format="percent"),
        "Share of revenue": st.column_config.NumberColumn(format="percent"),
        "Revenue": st.column_config.NumberColumn(format="localized"),
        "Average order value": st.column_config.NumberColumn(format="%.2f"),
        "Median days since last purchase": st.column_config.NumberColumn(format="%.0f"),
        "CLV, next 12 months": st.column_config.NumberColumn(format="localized")})
    with st.expander("How the scores are given"):
        st.dataframe(result.score_rules, hide_index=True)
        st.caption("Each score is the customer's quintile (1 to 5) of days since last purchase (fewer days: higher "
                   "R), purchase days (F) and purchase value (M), ties sharing one score; F(M) is the mean of F "
                   "and M rounded up.")
    downloads = st.columns(2)
    downloads[0].download_button("Download customers with segments and stages (CSV)",
                                 data=lambda: to_csv_bytes(scored), file_name="segments.csv", mime="text/csv",
                                 key="seg_download_csv", on_click="ignore", type="primary")
    downloads[1].download_button("Download (Excel)", data=lambda: to_excel_bytes({"segments": scored}),
                                 file_name="segments.xlsx", mime=XLSX_MIME, key="seg_download_xlsx", on_click="ignore")
    in_use = st.columns([1, 2])
    if in_use[0].button("Use these on every page", key="seg_store",
                        help="The Cohorts, Customer lifetime value, Churn risk and Recommendations pages filter by "
                             "these segments and stages, and every download carries them."):
        standard = (as_of == last and not with_models and settings == segments.StageSettings()
                    and rules.reset_index(drop=True).equals(segments.validate_segment_rules(
                        segments.default_segment_rules()).reset_index(drop=True)))
        segments.store_labels(ws, result, chosen=not standard)
        st.toast("The other pages now use these segments and stages.")
    stored = ws.customer_labels_info()
    in_use[1].caption("Other pages use: " + (app_state.plain(stored[0]) if stored else
                                             "the standard segments and stages as of the last day of the data") + ".")

with cluster_tab:
    options = st.columns(4)
    method = options[0].radio("Method", ["kmeans", "dbscan"], key="seg_cluster_method", horizontal=True,
                              format_func={"kmeans": "k-means", "dbscan": "DBSCAN (outliers)"}.get,
                              help="k-means splits everyone into k groups; DBSCAN finds dense groups and leaves "
                                   "unusual customers out as outliers.")
    table = app_state.cached_customer_table_at(dataset.fingerprint, ws, as_of)
    numeric = [column for column in ("tenure_days", "mean_gap_days", "products", "return_rate", "spend_trend",
                                     "average_order_value") if column in table]
    extra = options[1].multiselect("Also cluster on", numeric, key="seg_cluster_features",
                                   help="Recency, purchase days and purchase value are always used (log-scaled, "
                                        "standardized).")
    k, eps, min_samples = None, 0.5, 10
    if method == "kmeans":
        k_choice = options[2].selectbox("Number of clusters", ["best by silhouette", *range(2, 11)],
                                        key="seg_cluster_k",
                                        help="By default the k (2 to 8) whose clusters are best separated.")
        k = None if k_choice == "best by silhouette" else int(k_choice)
    else:
        eps = float(options[2].number_input("Neighbourhood (eps)", 0.1, 5.0, 0.5, step=0.1, key="seg_eps",
                                            help="How close (in standard deviations) customers must be to count "
                                                 "as neighbours."))
        min_samples = int(options[3].number_input("Neighbours for a dense group", 2, 500, 10, key="seg_min_samples",
                                                  help="A customer with at least this many neighbours is the core "
                                                       "of a group; customers near no core are outliers."))
    try:
        with st.spinner("Finding clusters..."):
            clusters = app_state.cached_clusters(dataset.fingerprint, ws, as_of, method, k, (2, 8), tuple(extra), eps,
                                                 min_samples)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
    else:
        for note in clusters.notes:
            st.caption("⚠️ " + app_state.plain(note))
        if method == "kmeans" and len(clusters.silhouette) > 1:
            st.plotly_chart(charts.silhouette_figure(clusters.silhouette, clusters.k), key="seg_silhouette")
        st.dataframe(clusters.profiles, hide_index=True)

with stage_tab:
    stages = result.stages.rename(columns={"lifecycle_stage": "Stage", "customers": "Customers",
                                           "share_of_customers": "Share"})
    st.dataframe(stages, hide_index=True, column_config={"Share": st.column_config.NumberColumn(format="percent")})
    try:
        with st.spinner("Stages at every month end..."):
            history = app_state.cached_stage_history(dataset.fingerprint, ws, settings_key)
        st.plotly_chart(charts.stage_history_figure(history), key="seg_stage_history")
        span = st.columns(2)
        start = span[0].date_input("Flow from", value=max(first, last - timedelta(days=90)), min_value=first,
                                   max_value=last, key="seg_flow_start", format="DD/MM/YYYY")
        end = span[1].date_input("to", value=last, min_value=first, max_value=last, key="seg_flow_end",
                                 format="DD/MM/YYYY")
        flows = app_state.cached_stage_flows(dataset.fingerprint, ws, start, end, settings_key)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
    else:
        st.plotly_chart(charts.stage_flow_figure(flows, start, end), key="seg_flows")
        st.dataframe(flows.reset_index().rename(columns={"from_stage": f"Stage on {start:%d %b %Y}"}),
                     hide_index=True)
        st.caption(f"Rows: the stage on {start:%d %b %Y}; columns: on {end:%d %b %Y}. Every customer is counted "
                   "once; 'Not yet a customer' are those who first bought after the start.")
