"""Churn risk page: who is about to leave, what is at stake, how sure we are, and the list to act on."""

from datetime import timedelta

import pandas as pd
import streamlit as st

import app_state

app_state.wait_for_imports()  # the model modules, never imported by two threads at once

from clm_core import charts, churn  # noqa: E402
from clm_core.errors import ClmError  # noqa: E402
from clm_core.export import XLSX_MIME, to_csv_bytes, to_excel_bytes  # noqa: E402
from clm_core.segments import LABELS  # noqa: E402

st.title("Churn risk")
st.write("Who is likely to stop buying, how much value is at stake, and the list to send to your campaign tool. "
         "Defaults are set from your data: change the horizon, the model or the campaign costs if you like.")
mode = st.radio("Start from", ["transactions", "table"], horizontal=True, key="churn_mode",
                format_func={"transactions": "The transactions loaded on the Data page",
                             "table": "A customer table with a churn column (e.g. a CRM export)"}.get,
                help="With transactions, a customer has churned when they make no purchase within the horizon. "
                     "A customer table needs a column that says who left.")


def model_table(result: churn.ChurnResult) -> pd.DataFrame:
    rows = []
    for name, metrics in result.models.items():
        low, high = metrics["roc_auc_interval"]
        rows.append({
            "Model": "Recency only (baseline)" if name == churn.BASELINE else churn.MODEL_NAMES[name],
            "Used": "✔" if name == result.best_model else "",
            "ROC AUC (95 % interval)": f"{metrics['roc_auc']:.3f} ({low:.3f}-{high:.3f})",
            "PR AUC": round(metrics["pr_auc"], 3),
            "Brier score": round(metrics["brier"], 3),
            "Lift, riskiest 10 %": round(metrics["lift_top_decile"], 2),
            "Leavers in riskiest 10 %": f"{metrics['capture_top_decile']:.0%}",
        })
    return pd.DataFrame(rows)


def show_quality(result: churn.ChurnResult) -> None:
    st.dataframe(model_table(result), hide_index=True)
    st.caption("Checked on customers the models never saw: ROC AUC 0.5 is chance, 1 is perfect; the interval comes "
               "from 200 bootstrap resamples. Brier score: mean squared error of the probabilities (lower is "
               "better). Lift: how many times more leavers the riskiest 10 % hold than a random 10 %.")
    if result.curves:
        left, middle, right = st.columns(3)
        auc = result.models[result.best_model]["roc_auc"]
        left.plotly_chart(charts.roc_figure(result.curves["roc"], auc), key="churn_roc")
        middle.plotly_chart(charts.calibration_figure(result.curves["calibration"]), key="churn_calibration")
        right.plotly_chart(charts.gains_figure(result.curves["gains"]), key="churn_gains")
        st.plotly_chart(charts.importance_figure(result.importance, churn.FEATURES), key="churn_importance")


_LIST_NAMES = {"customer_id": "Customer", "risk": "Risk", "risk_band": "Risk band", "drivers": "Why",
               "last_purchase": "Last purchase", "days_since_last_purchase": "Days since last purchase",
               "orders": "Orders", "revenue": "Revenue", "clv": "CLV, next 12 months", **LABELS}


def _show_table(shown: pd.DataFrame, predictive: bool) -> None:
    """The list on screen with plain column names and readable numbers (the downloads keep the exact values and
    the file's own column names)."""
    risk = (st.column_config.ProgressColumn("Risk", format="percent", min_value=0, max_value=1,
                                            help="Probability of no purchase in the horizon.") if predictive
            else st.column_config.NumberColumn("Risk", format="%.1f x",
                                               help="Days since the last purchase divided by the usual gap."))
    st.dataframe(shown.rename(columns=_LIST_NAMES), hide_index=True, column_config={
        "Risk": risk, "Revenue": st.column_config.NumberColumn(format="localized"),
        "CLV, next 12 months": st.column_config.NumberColumn(format="localized"),
        "Last purchase": st.column_config.DateColumn(format="DD MMM YYYY")})


@st.fragment
def show_list(result: churn.ChurnResult, table: pd.DataFrame, value: pd.Series | None, value_words: str,
              segments: dict[str, str], labelled: bool = False) -> None:
    """Filters, threshold, campaign calculator, and the downloads of the chosen list: a fragment, so moving one
    of its controls reruns only this part of the page."""
    predictive = result.predictive
    filters = st.columns(4)
    bands = filters[0].multiselect("Risk band", ["High", "Medium", "Low"], default=["High", "Medium", "Low"],
                                   key="churn_bands",
                                   help="High: risk 70 % or more; Medium: 40-70 %. Without a predictive model: "
                                        "High is twice the usual gap overdue, Medium past the usual gap.")
    keep = table["risk_band"].isin(bands)
    if segments:
        label = filters[1].selectbox("Segment attribute", list(segments.values()), key="churn_segment",
                                     help="Limit the list to some values of an attribute of your file.")
        values = sorted(table[label].dropna().astype(str).unique())
        chosen = filters[2].multiselect(f"{label} values", values, default=values, key=f"churn_segment_{label}")
        keep &= table[label].astype(str).isin(chosen)
    if "last_purchase" in table:
        dates = pd.to_datetime(table["last_purchase"])
        first, last = dates.min().date(), dates.max().date()
        if first < last:
            picked = filters[3].slider("Last purchase between", min_value=first, max_value=last, value=(first, last),
                                       format="DD MMM YYYY", key="churn_last_purchase",
                                       help="Keep customers whose last purchase falls in this range.")
            keep &= dates.dt.date.between(*picked)
    if labelled:  # transactions: the segments and stages of the Segments page
        choice = app_state.label_filters("churn", dataset.fingerprint, ws)
        if choice.segments:
            keep &= table["rfm_segment"].isin(choice.segments)
        if choice.stages:
            keep &= table["lifecycle_stage"].isin(choice.stages)
    if value is not None and "clv" in table:
        minimum = st.number_input("Only customers with a CLV of at least", min_value=0.0, value=0.0, step=50.0,
                                  key="churn_min_clv", help=f"Customer value: {value_words}.")
        keep &= table["clv"].fillna(0) >= minimum
    chosen_table = table[keep]

    st.subheader("Campaign")
    economics = st.columns(3)
    cost = economics[0].number_input("Cost per contact", min_value=0.0, value=1.0, step=0.5, key="churn_cost",
                                     help="What one e-mail, voucher or call costs you, in your file's currency.")
    success = economics[1].number_input("Success rate (%)", min_value=0.0, max_value=100.0, value=10.0, step=1.0,
                                        key="churn_success",
                                        help="Of the contacted customers who would have left, how many stay thanks "
                                             "to the campaign.") / 100
    basis = value if value is not None else None
    worth = (chosen_table["customer_id"].map(basis).astype(float) if basis is not None
             else pd.Series(economics[2].number_input(
                 "Value of a customer who stays", min_value=0.0, value=50.0, step=10.0, key="churn_value",
                 help="No customer value could be computed from your data, so give an average."),
                 index=chosen_table.index))
    if basis is not None:
        economics[2].metric("Value of a customer", "CLV", help=f"Per customer: {value_words}.")
    curve = churn.campaign_curve(churn.chance_of_leaving(chosen_table["risk"], predictive=predictive)
                                 .reset_index(drop=True), worth.reset_index(drop=True),
                                 cost_per_contact=cost, success_rate=success)
    if curve.empty:
        st.info("No customer matches these filters.")
        return
    best = curve.loc[curve["net_benefit"].idxmax()]
    shortfall = churn.campaign_shortfall(curve, cost_per_contact=cost, success_rate=success)
    if shortfall:  # the threshold still starts at the riskiest customer: say that no list pays, and what to try
        st.info(shortfall)
    top = float(chosen_table["risk"].max())
    best_threshold = float(chosen_table["risk"].sort_values(ascending=False).iloc[int(best["customers"]) - 1])
    key = f"churn_threshold_{result.horizon_days}_{result.best_model}"
    threshold = st.slider(
        "Contact customers with a risk of at least", min_value=0.0, max_value=max(top, 0.01),
        value=min(best_threshold, top), step=0.01 if predictive else 0.05, key=key,
        help="Starts at the threshold with the best net benefit for the campaign above. "
             + ("Risk is the probability of no purchase in the horizon." if predictive
                else "Risk is days since last purchase divided by the customer's usual gap."))
    selected = chosen_table[chosen_table["risk"] >= threshold]
    cells = st.columns(4)
    cells[0].metric("Customers on the list", f"{len(selected):,}")
    if "revenue" in selected:
        cells[1].metric("Their revenue so far", app_state.money(selected["revenue"].sum()))
    if "clv" in selected:
        cells[2].metric("Their CLV, next 12 months", app_state.money(selected["clv"].sum()))
    chosen_share = churn.chance_of_leaving(threshold, predictive=predictive)
    chosen_curve = curve[curve["threshold"] >= chosen_share]
    cells[3].metric("Net benefit of this list", app_state.money(chosen_curve["net_benefit"].iloc[-1])
                    if len(chosen_curve) else "0",
                    help="Success rate x risk x value, less the cost, summed over the list.")
    left, right = st.columns(2)
    left.plotly_chart(charts.risk_distribution_figure(chosen_table["risk"], threshold, predictive=predictive),
                      key="churn_distribution")
    right.plotly_chart(charts.campaign_figure(curve, chosen_share), key="churn_campaign")
    st.subheader("The at-risk list")
    _show_table(selected.head(200), predictive)
    st.caption((f"First 200 of {len(selected):,} customers" if len(selected) > 200 else
                f"All {len(selected):,} customers") + ", riskiest first. The downloads hold all of them, with "
               "the contact and segment columns of your file and each customer's RFM segment and lifecycle stage.")
    downloads = st.columns(2)
    downloads[0].download_button("Download the at-risk list (CSV)", data=lambda: to_csv_bytes(selected),
                                 file_name="at_risk_customers.csv", mime="text/csv", key="churn_download_csv",
                                 on_click="ignore", type="primary")
    downloads[1].download_button("Download the at-risk list (Excel)", data=lambda: to_excel_bytes(
        {"at risk": selected}), file_name="at_risk_customers.xlsx", mime=XLSX_MIME, key="churn_download_xlsx",
        on_click="ignore")


if mode == "transactions":
    dataset = app_state.require_dataset()
    ws = app_state.workspace()
    summary = app_state.cached_summary(dataset.fingerprint, ws)
    try:
        suggested, gaps = app_state.cached_churn_horizon(dataset.fingerprint, ws)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        st.stop()
    horizons, start = app_state.churn_horizons(dataset.fingerprint, ws)
    controls = st.columns(3)
    horizon = int(controls[0].select_slider(
        "Horizon (days)", options=horizons, value=start, key=f"churn_horizon_{dataset.fingerprint}",
        format_func=lambda days: f"{days} days",
        help=f"A customer is lost when they make no purchase for this many days. Suggested: {suggested} days, which "
             "most of your repeat customers come back within (chart below). Offered up to the longest your data can "
             "train and check: a horizon needs twice its length of data, and a day."))
    options = [None, *churn.MODEL_NAMES]
    model = controls[1].selectbox("Model", options, key="churn_model",
                                  format_func=lambda name: "Best on the check (automatic)" if name is None
                                  else churn.MODEL_NAMES[name],
                                  help="All three are trained; the one that predicted best on customers it never "
                                       "saw is used unless you pick another.")
    latest = (summary.last_date - timedelta(days=horizon)).date()
    custom = controls[2].toggle("Choose the check date", key="churn_custom_cutoff",
                                help=f"By default models are checked on the last {horizon} days of your data "
                                     f"(from {latest:%d %b %Y}) and trained on the {horizon} days before.")
    chosen = None
    dates = app_state.churn_check_dates(dataset.fingerprint, ws, horizon) if custom else []
    if len(dates) == 1:
        st.caption(f"With a {horizon}-day horizon your data leave one check date: {latest:%d %b %Y}.")
    elif dates:
        chosen = st.select_slider(
            "Check the model from", options=dates, value=dates[-1], key=f"churn_cutoff_{horizon}",
            format_func=lambda day: f"{day:%d %b %Y}",
            help=f"Every {app_state.CHURN_CHECK_STEP} days back from the latest date that leaves {horizon} days to "
                 f"check on, to the earliest that leaves {horizon} days before it to train on.")
    cutoff = None if chosen == latest else chosen  # the default check date: the models already trained for it
    # The chart is made only while the box is open (opening it reruns the page): closed, as it starts, it costs
    # the page's other runs nothing.
    why = st.expander(f"Why {horizon} days? How long repeat customers usually wait between purchases",
                      key="churn_why", on_change="rerun")
    if why.open:
        why.plotly_chart(charts.churn_gap_figure(gaps, horizon), key="churn_gaps")
    try:
        with st.spinner("Training three models and checking them on customers they never saw..." if model is None
                        else f"Scoring every customer with {churn.MODEL_NAMES[model]} (trained with the others)..."), \
                app_state.churn_prepared_around(dataset.fingerprint, ws, horizon, chosen):
            result = app_state.cached_churn(dataset.fingerprint, ws, horizon, cutoff, model)
        value, value_words = app_state.cached_customer_value(dataset.fingerprint, ws)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        st.stop()
    if not result.predictive:
        st.warning("On this data, who leaves cannot be predicted better than chance (or than days since the last "
                   "purchase alone). The list below is ranked by days since the last purchase against each "
                   "customer's usual gap between purchases: a plain rule, not a prediction.")
    for note in result.notes:
        st.caption("⚠️ " + app_state.plain(note))
    headline = st.columns(4)
    headline[0].metric("Customers scored", f"{len(result.scores):,}")
    if result.models:
        best = result.models[result.best_model]
        headline[1].metric("Left in the check period", f"{result.base_rate:.0%}",
                           help=f"Of the {result.test_rows:,} customers at the check date, the share who made no "
                                f"purchase in the next {horizon} days.")
        headline[2].metric("ROC AUC of the model used", f"{best['roc_auc']:.2f}",
                           help="0.5 is chance, 1 is perfect, on customers the model never saw.")
        headline[3].metric("Recency only", f"{result.models[churn.BASELINE]['roc_auc']:.2f}",
                           help="The same check for ranking by days since the last purchase alone.")
    table = app_state.with_customer_labels(dataset.fingerprint, ws, churn.at_risk_list(ws, result, value=value))
    # Only the open tab runs (a click on the other reruns the page): the model check's charts cost nothing until
    # someone looks at them.
    list_tab, quality_tab = st.tabs(["At-risk customers", "How good is the prediction?"], key="churn_tab",
                                    on_change="rerun")
    if list_tab.open:
        with list_tab:
            show_list(result, table, value, value_words, dataset.segment_columns, labelled=True)
    if quality_tab.open:
        with quality_tab:
            if result.models:
                show_quality(result)
            else:
                st.info("No model could be trained on this data (see the note above); the list is the descriptive "
                        "ranking.")
else:
    upload = st.file_uploader("Customer table (CSV or Excel)", type=["csv", "txt", "gz", "xlsx"],
                              key="churn_table_upload",
                              help="One row per customer, a column saying who left (yes/no, 1/0, true/false) and "
                                   "columns describing them (tenure, plan, charges...).")
    if upload is None:
        st.info("Upload a customer table to begin.")
        st.stop()
    try:
        table = app_state.read_customer_table(upload.name, upload.getvalue())
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        st.stop()
    guess = next((c for c in table.columns if c.strip().lower() in ("churn", "churned", "exited", "left", "attrition")),
                 table.columns[-1])
    label = st.selectbox("Column that says who left", list(table.columns), index=list(table.columns).index(guess),
                         key="churn_label", help="Yes/no, 1/0 or true/false.")
    features = st.multiselect("Columns to learn from", [c for c in table.columns if c != label],
                              default=[c for c in table.columns if c != label], key="churn_features",
                              help="An id column with a different value on every row is left out automatically.")
    try:
        with st.spinner("Training three models and checking them on a quarter of the customers..."):
            result = app_state.cached_churn_table(app_state.digest_bytes(upload.getvalue()), table, label,
                                                  tuple(features))
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        st.stop()
    if not result.predictive:
        st.warning("On this table, who leaves cannot be predicted better than chance: treat the ranking as noise.")
    for note in result.notes:
        st.caption("⚠️ " + app_state.plain(note))
    show_quality(result)
    st.subheader("Customers by risk")
    st.dataframe(result.scores.head(200), hide_index=True)
    downloads = st.columns(2)
    downloads[0].download_button("Download all customers by risk (CSV)", data=lambda: to_csv_bytes(result.scores),
                                 file_name="churn_risk.csv", mime="text/csv", key="churn_table_csv",
                                 on_click="ignore", type="primary")
    downloads[1].download_button("Download (Excel)", data=lambda: to_excel_bytes({"churn risk": result.scores}),
                                 file_name="churn_risk.xlsx", mime=XLSX_MIME, key="churn_table_xlsx", on_click="ignore")
