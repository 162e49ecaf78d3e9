"""CLV page: a calculator anyone can use, predictive CLV per customer, and an honest check of the prediction."""

from datetime import timedelta

import pandas as pd
import streamlit as st

import app_state

app_state.wait_for_imports()  # the model modules, never imported by two threads at once

from clm_core.charts import (  # noqa: E402
    calculator_years_figure,
    clv_distribution_figure,
    clv_interval_figure,
    holdout_by_frequency_figure,
    probability_alive_figure,
    sensitivity_figure,
    tracking_figure,
    value_concentration_figure,
)
from clm_core.clv import MODELS, PURCHASE_MODELS, default_calibration_end, value_concentration  # noqa: E402
from clm_core.clv_calculator import FORMULA, CalculatorInputs, calculate, sensitivity, sensitivity_axes  # noqa: E402
from clm_core.errors import ClmError, ConvergenceError  # noqa: E402
from clm_core.export import XLSX_MIME  # noqa: E402
from clm_core.segments import LABELS  # noqa: E402

st.title("Customer lifetime value")
st.write("What is a customer worth? Use the **calculator** with your own assumptions, or let the models "
         "**predict** each customer's future purchases and value from your data, and **check** how good that "
         "prediction was on a period the model did not see.")

ws = app_state.workspace()
dataset = ws.dataset if ws.has_dataset else None
# Only the open tab runs (a click on another reruns the page): the models are fitted when someone opens their tab,
# and the browser draws one tab's charts, not three.
calculator_tab, predictive_tab, check_tab = st.tabs(["Calculator", "Predictive CLV", "Model check"], key="clv_tab",
                                                    on_change="rerun")

_DEFAULTS = {"clv_calc_aov": 50.0, "clv_calc_orders": 3.0, "clv_calc_margin": 30.0, "clv_calc_retention": 60.0,
             "clv_calc_discount": 10.0, "clv_calc_years": 5, "clv_calc_unlimited": False, "clv_calc_cac": 40.0}
for key, value in _DEFAULTS.items():
    st.session_state.setdefault(key, value)


def _prefill() -> None:
    """Button callback: copy measured values into the calculator's inputs before they are drawn; remember what
    was filled, how it was measured and what could not be filled."""
    st.session_state.pop("clv_calc_prefill_error", None)
    try:
        figures = app_state.cached_calculator_prefill(dataset.fingerprint, ws)
    except ClmError as error:
        st.session_state["clv_calc_prefill_error"] = str(error)
        st.session_state.pop("clv_calc_prefill_figures", None)
        return
    keys = {"average_order_value": ("clv_calc_aov", 1, 2), "orders_per_year": ("clv_calc_orders", 1, 2),
            "annual_retention": ("clv_calc_retention", 100, 1)}
    for figure in figures:
        if figure.value is not None:
            key, scale, digits = keys[figure.name]
            st.session_state[key] = round(scale * float(figure.value), digits)
    st.session_state["clv_calc_prefill_figures"] = (dataset.fingerprint, figures)


def _prefill_line(figure) -> str:
    """One line per pre-filled input: its value, what it rests on and how it is measured (plain text)."""
    if figure.value is None:
        return f"{figure.label}, {figure.definition[0].lower()}{figure.definition[1:]}"
    value = f"{figure.value:.1%}" if figure.name == "annual_retention" else f"{figure.value:,.2f}"
    source = "model forecast" if figure.source == "model" else "counted in your data"
    return f"{figure.label} {value} ({source}, based on {figure.basis:,} {figure.basis_label}): {figure.definition}"


# --- calculator ------------------------------------------------------------------------------------------
@st.fragment
def _calculator() -> None:
    """The calculator: a fragment, so changing one of its inputs reruns only it, not the models' tabs."""
    st.caption("No data needed: enter what you know about an average customer.")
    prefilled = []
    if dataset is not None:
        st.button(f"Fill in from {app_state.plain(dataset.name)}", key="clv_calc_prefill", on_click=_prefill,
                  help="Average order value, orders per customer per year and annual retention measured in the "
                       "loaded data, each with its definition and the number of customers behind it. Margin, "
                       "discount rate and acquisition cost stay yours to set.")
        if "clv_calc_prefill_error" in st.session_state:
            st.warning(app_state.plain(st.session_state["clv_calc_prefill_error"]))
        fingerprint, prefilled = st.session_state.get("clv_calc_prefill_figures", (None, []))
        if fingerprint != dataset.fingerprint:
            prefilled = []  # filled from another dataset: its figures no longer describe this one
        for figure in prefilled:
            show = st.caption if figure.value is not None else st.warning
            show(app_state.plain(_prefill_line(figure)))
    row = st.columns(4)
    aov = row[0].number_input("Average order value", min_value=0.0, step=5.0, key="clv_calc_aov",
                              help="Revenue per order, in your currency.")
    orders = row[1].number_input("Orders per year", min_value=0.0, step=0.5, key="clv_calc_orders",
                                 help="How often an active customer orders in a year.")
    margin = row[2].number_input("Gross margin (%)", min_value=0.0, max_value=100.0, step=5.0, key="clv_calc_margin",
                                 help="Share of revenue left after the cost of goods (and shipping, if you like).")
    cac = row[3].number_input("Acquisition cost", min_value=0.0, step=5.0, key="clv_calc_cac",
                              help="What it costs to win one new customer (ads, discounts...), in your currency.")
    row = st.columns(4)
    retention = row[0].number_input("Annual retention (%)", min_value=0.0, max_value=100.0, step=5.0,
                                    key="clv_calc_retention",
                                    help="Of the customers active this year, the share still buying next year.")
    discount = row[1].number_input("Annual discount rate (%)", min_value=0.0, max_value=100.0, step=1.0,
                                   key="clv_calc_discount",
                                   help="How much less money next year is worth than money today (your cost of "
                                        "capital); 8-12 % is common.")
    unlimited = row[2].toggle("Unlimited horizon", key="clv_calc_unlimited",
                              help="Count value for as long as customers stay, instead of a fixed number of years.")
    years = row[3].number_input("Horizon (years)", min_value=1, max_value=50, step=1, key="clv_calc_years",
                                disabled=unlimited, help="How many years of future value to count.")
    try:
        inputs = CalculatorInputs(average_order_value=aov, orders_per_year=orders, gross_margin=margin / 100,
                                  annual_retention=retention / 100, annual_discount_rate=discount / 100,
                                  horizon_years=None if unlimited else int(years), acquisition_cost=cac)
        result = calculate(inputs)
    except ValueError as error:
        st.error(f"These inputs have no finite CLV: {error}.")
    else:
        cells = st.columns(4)
        cells[0].metric("CLV per customer", app_state.money(result.clv, 2),
                        help="Discounted gross margin an acquired customer brings over the horizon.")
        cells[1].metric("CLV / acquisition cost", "n/a" if result.clv_to_cac is None else f"{result.clv_to_cac:.2f}",
                        help="Above 3 is usually called healthy; below 1 loses money on every new customer.")
        payback = ("immediately" if result.payback_years == 0 else "never" if result.payback_years is None
                   else f"{result.payback_years:.1f} years")
        cells[2].metric("Payback period", payback,
                        help="When the cumulative discounted margin first covers the acquisition cost.")
        cells[3].metric("Margin per active year", app_state.money(inputs.annual_margin, 2),
                        help="m = average order value x orders per year x gross margin.")
        st.latex(FORMULA)
        st.caption("Convention: each customer still active at the end of a year brings that year's margin m; "
                   "a share r (annual retention) of them stays for the next year; money in year t is divided "
                   "by (1 + d)^t. With an unlimited horizon the sum has the closed form m / (1 + d - r).")
        left, right = st.columns(2)
        left.plotly_chart(calculator_years_figure(result.table, cac), key="clv_calc_years_chart")
        grid = sensitivity(inputs, *sensitivity_axes(inputs))
        right.plotly_chart(sensitivity_figure(grid, current=(inputs.annual_retention, inputs.annual_discount_rate)),
                           key="clv_calc_sensitivity")
        shown = result.table.rename(columns={
            "year": "Year", "share_active": "Customers still active (%)", "margin": "Expected margin",
            "discounted_margin": "Discounted margin", "cumulative_discounted_margin": "Cumulative discounted margin"})
        shown["Customers still active (%)"] = 100 * shown["Customers still active (%)"]
        caption = " (first 50 years of an unlimited horizon)" if unlimited else ""
        st.markdown(f"**Year by year, per acquired customer{caption}**")
        st.dataframe(shown, hide_index=True, column_config={
            column: st.column_config.NumberColumn(format="%.2f") for column in shown.columns if column != "Year"})


if calculator_tab.open:
    with calculator_tab:
        _calculator()


# --- predictive CLV ------------------------------------------------------------------------------------
_TRY = {"bgnbd": "Pareto/NBD", "pareto": "BG/NBD"}


def _model_settings(prefix: str, container) -> tuple[str, str]:
    left, right = container.columns(2)
    purchase_model = left.radio(
        "Purchase model", list(PURCHASE_MODELS), format_func=MODELS.get, horizontal=True, key=f"{prefix}_model",
        help="BG/NBD: customers may stop right after a purchase (fast, the usual choice). Pareto/NBD: they may stop "
             "at any moment. Both predict how many purchases each customer will make.")
    unit = right.radio("Time unit", ["week", "day"], format_func=str.title, horizontal=True, key=f"{prefix}_unit",
                       help="The unit the model counts time in: its rate parameters (alpha, beta) are per week or "
                            "per day; the predictions are the same (the fit in days is the fit in weeks, its time "
                            "scales times 7). Weeks are the convention.")
    return purchase_model, unit


def _fit(purchase_model: str, unit: str, calibration_end=None):
    """Fit (or fetch from the cache) under a spinner; a model that does not converge gives way to the other
    purchase model, with a warning saying so. Returns (attempt, purchase model used), or (None, None) after
    saying what went wrong and what to try."""
    label = MODELS[purchase_model] + (" and Gamma-Gamma" if dataset.has_money else "")
    with st.spinner(f"Fitting {label} to your data (a new computation; kept for the next change)..."):
        attempt = app_state.cached_clv_fit_attempt(dataset.fingerprint, ws, purchase_model, unit, calibration_end)
    if attempt.error is None:
        return attempt, purchase_model
    if isinstance(attempt.error, ConvergenceError):
        other = "pareto" if purchase_model == "bgnbd" else "bgnbd"
        with st.spinner(f"{MODELS[purchase_model]} could not be fitted; trying {MODELS[other]}..."):
            fallback = app_state.cached_clv_fit_attempt(dataset.fingerprint, ws, other, unit, calibration_end)
        if fallback.error is None:
            st.warning(f"**{MODELS[purchase_model]} could not be fitted to this data**: "
                       f"{app_state.plain(attempt.error)} Showing **{MODELS[other]}** instead, which could. To try "
                       f"{MODELS[purchase_model]} again, switch the time unit, or load a longer stretch of data.",
                       icon="⚠️")
            return fallback, other
        st.error(f"**Neither purchase model could be fitted to this data.** {app_state.plain(attempt.error)} "
                 "What to try: switch the time unit (days or weeks), load a longer stretch of data, or check on "
                 "the Data page that customer ids and dates were read as you expect. The calculator still works.")
        return None, None
    st.error(app_state.plain(attempt.error))
    return None, None


def _fitted_caption(attempt, purchase_model: str) -> None:
    summary, fitted = attempt.result
    label = MODELS[purchase_model] + (" and Gamma-Gamma" if fitted.spend is not None else "")
    st.caption(f"{label} fitted on {len(summary.frame):,} customers in {attempt.seconds:.1f} s; kept for this "
               "dataset and these settings, so other changes only re-score.")


def _count_note(scored: int) -> None:
    """Why the page scores fewer customers than the Data page counts, when it does."""
    counts = app_state.cached_customer_counts(dataset.fingerprint, ws)
    if counts["customers"] == scored:
        return
    reasons = []
    if counts["only_returns"]:
        reasons.append(f"{counts['only_returns']:,} {'has' if counts['only_returns'] == 1 else 'have'} only returns")
    if counts["all_cancelled"]:
        reasons.append(f"{counts['all_cancelled']:,} {'more ' if reasons else ''}had every purchase cancelled by "
                       "returns")
    because = " and ".join(reasons) if reasons else "some have no purchase"
    st.caption(f"ℹ️ {scored:,} of the {counts['customers']:,} customers on the Data page are scored: {because}, so "
               "the models have no purchase to predict from.")


def _parameters_table(fitted) -> pd.DataFrame:
    meaning = {
        "r": "shape of purchase rates", "alpha": "scale of purchase rates (time units)",
        "a": "drop-out shape (a)", "b": "drop-out shape (b)", "s": "shape of lifetimes", "beta": "scale of lifetimes",
        "p": "shape of order values", "q": "spread of customers' typical spend", "gamma": "scale of typical spend",
    }
    models = [("Purchases (" + fitted.purchase_label + ")", fitted.purchase)]
    if fitted.spend is not None:
        models.append(("Spend (Gamma-Gamma)", fitted.spend))
    rows = [(label, row.parameter, row.value, row.se, row.lower_95, row.upper_95, meaning[row.parameter])
            for label, model in models for row in model.summary.itertuples()]
    return pd.DataFrame(rows, columns=["Model", "Parameter", "Value", "Standard error", "95 % from", "95 % to",
                                       "What it describes"])


_SHOWN = {
    "customer_id": "Customer", "first_purchase_date": "First purchase", "last_purchase_date": "Last purchase",
    "days_since_last_purchase": "Days since last purchase", "orders": "Orders", "revenue": "Revenue (net)",
    "probability_alive": "P(active)", "expected_order_value": "Expected order value", **LABELS,
}


@st.fragment
def _predictive() -> None:
    """Predictive CLV: a fragment, so its settings rerun only this tab. A new model or time unit refits (a new
    computation, under a spinner); horizon, discount rate and margin only re-score."""
    purchase_model, unit = _model_settings("clv_pred", st)
    row = st.columns(3)
    horizon = row[0].slider("Horizon (months)", 1, 60, app_state.CLV_HORIZON_MONTHS, key="clv_pred_horizon",
                            help="How far ahead to count each customer's purchases and value.")
    monthly_discount = row[1].number_input(
        "Monthly discount rate (%)", min_value=0.0, max_value=10.0, value=app_state.CLV_MONTHLY_DISCOUNT_PCT,
        step=0.25, key="clv_pred_discount",
        help="Money next month is worth this much less than today; 1 % a month is about 12.7 % a year.")
    margin_pct = row[2].number_input("Gross margin (%)", min_value=1.0, max_value=100.0, value=app_state.CLV_MARGIN_PCT,
                                     step=5.0, key="clv_pred_margin",
                                     help="100 % gives CLV in revenue; set your margin for CLV in profit.")
    attempt, used = _fit(purchase_model, unit)
    if attempt is None:
        return
    summary, fitted = attempt.result
    settings = (dataset.fingerprint, ws, used, unit, int(horizon), monthly_discount / 100, margin_pct / 100)
    with st.spinner("Scoring every customer..."):
        forecast = app_state.cached_clv_scores(*settings)
    scores = forecast.scores
    _fitted_caption(attempt, used)
    for note in fitted.notes:
        st.caption("ℹ️ " + app_state.plain(note))
    cells = st.columns(4)
    cells[0].metric("Customers scored", f"{len(scores):,}",
                    help="Customers with at least one purchase day left after returns.")
    cells[1].metric(f"Expected purchases, next {horizon} months", f"{scores['expected_purchases'].sum():,.0f}",
                    help="Sum over customers of the purchase days the model expects.")
    cells[2].metric("Likely still active", f"{scores['probability_alive'].mean():.0%}",
                    help="Average probability that a customer has not silently left.")
    _count_note(len(scores))
    if "clv" in scores:
        shares = value_concentration(scores["clv"])
        interval = forecast.total_interval
        cells[3].metric(f"Predicted CLV, next {horizon} months", app_state.money(forecast.total),
                        help=f"Total over all customers; average {scores['clv'].mean():,.2f} per customer. "
                             f"The top 10 % hold {shares[0.1]:.0%} of it, the top 20 % {shares[0.2]:.0%}.")
        if interval is not None:
            st.caption(f"Total CLV: {forecast.level:.0%} interval {app_state.money(interval[0])} to "
                       f"{app_state.money(interval[1])}. It reflects how precisely the models' parameters are "
                       "known from your data; each customer's own interval is in the download (CLV low / "
                       "high). It does not cover changes in your business, or each customer's own luck.")
        st.caption("Returns are netted first: a purchase sent back in full (same product, same customer, the "
                   "latest purchase before the return) is not a purchase; a partly returned one counts at "
                   "what was kept. Customers with no repeat purchase are given the average customer's order "
                   "value. Customers who bought again only at no charge get an expected order value, and so "
                   "a CLV, of 0: the spend model only describes positive orders, and the average would "
                   "overstate them.")
        left, right = st.columns(2)
        left.plotly_chart(clv_distribution_figure(scores["clv"], horizon_months=int(horizon)),
                          key="clv_pred_distribution")
        right.plotly_chart(value_concentration_figure(scores["clv"]), key="clv_pred_concentration")
        if scores["clv_low"].notna().any():
            st.plotly_chart(clv_interval_figure(scores, horizon_months=int(horizon), level=forecast.level),
                            key="clv_pred_interval")
    else:
        st.info("This dataset has no amount column, so CLV in money cannot be computed; the purchase "
                "predictions and the probability of being active below still work.")
    alive = app_state.cached_probability_alive(dataset.fingerprint, ws, used, unit)
    st.plotly_chart(probability_alive_figure(alive, unit=unit), key="clv_pred_alive")
    st.caption(f"For a customer whose first purchase was {summary.frame['T'].max():,.0f} {unit}s before the "
               "end of the data. Many purchases with none lately (bottom left) means the customer has "
               "probably left.")
    st.subheader("Top customers")
    choice = app_state.label_filters("clv_pred", dataset.fingerprint, ws)
    listed = app_state.cached_labelled_clv_scores(*settings, choice)
    model_names = {
        "model_repeat_purchase_days": "Repeat purchase days (model)",
        f"model_{unit}s_first_to_last_purchase": f"{unit.title()}s from first to last purchase (model)",
        f"model_{unit}s_first_purchase_to_end": f"{unit.title()}s since first purchase (model)",
        "model_average_repeat_order_value": "Average repeat order (model)",
        "expected_purchases": f"Purchases next {horizon} months", "clv": f"CLV next {horizon} months",
        "clv_low": f"CLV low ({forecast.level:.0%})", "clv_high": f"CLV high ({forecast.level:.0%})",
    }
    st.dataframe(listed.head(50).rename(columns={**_SHOWN, **model_names}), hide_index=True, column_config={
        "P(active)": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)})
    st.caption("Days since last purchase count to the last day of your data. The model columns follow the "
               f"CLV literature: {unit}s from the first purchase to the last (the model's 'recency', not the time "
               f"since the last purchase) and {unit}s from the first purchase to the end of the data.")
    a, b = st.columns(2)
    a.download_button("Per-customer CLV (CSV)",
                      data=lambda: app_state.cached_clv_download(*settings, choice, "csv"),
                      file_name="customer_clv.csv", mime="text/csv", key="clv_pred_dl_csv", on_click="ignore",
                      help="Every customer the segment and stage filters keep, with the contact columns of "
                           "your file, RFM segment and lifecycle stage, first and last purchase, days since the "
                           "last purchase, orders, revenue and the predictions, for campaigns. Built when you "
                           "click.")
    a.caption(f"{len(listed):,} customers" + ("" if len(listed) == len(scores) else f" of {len(scores):,}"))
    b.download_button("Per-customer CLV (Excel)",
                      data=lambda: app_state.cached_clv_download(*settings, choice, "xlsx"),
                      file_name="customer_clv.xlsx", mime=XLSX_MIME, key="clv_pred_dl_xlsx", on_click="ignore",
                      help="The same table as an Excel workbook, built when you click (a few seconds for tens of "
                           "thousands of customers).")
    with st.expander("Model parameters"):
        st.dataframe(_parameters_table(fitted), hide_index=True)
        st.caption(f"Fitted by maximum likelihood on {fitted.purchase.n_customers_:,} customers; time in "
                   f"{unit}s. Log-likelihood {fitted.purchase.log_likelihood_:,.1f}. Standard errors come "
                   "from the curvature of the likelihood at the estimate; the 95 % range is where the true "
                   "value most likely lies. A blank standard error means the data say nothing about that "
                   "parameter (see the Model check tab).")


if predictive_tab.open:
    with predictive_tab:
        if dataset is None:
            st.info("Load data on the **Data** page to predict each customer's value.")
        else:
            _predictive()


# --- model check -----------------------------------------------------------------------------------------
def _show_diagnostics(purchase_model: str, unit: str) -> None:
    """The checks of the fit behind the predictions (all of your data), a warning for each that fails."""
    st.subheader("Can these predictions be trusted?")
    try:
        with st.spinner("Checking the fit..."):
            findings = app_state.cached_clv_diagnostics(dataset.fingerprint, ws, purchase_model, unit)
    except ClmError as error:
        st.error(app_state.plain(error))
        return
    for finding in findings:
        text = f"**{app_state.plain(finding.title)}.** {app_state.plain(finding.message)}"
        if finding.ok:
            st.success(text, icon="✅")
        else:
            st.warning(text, icon="⚠️")
    st.caption("Checks of the models fitted on all of your data, the ones behind the Predictive CLV tab.")


@st.fragment
def _check() -> None:
    """The model check: a fragment, so its settings rerun only this tab."""
    st.write("The model is fitted on purchases up to the **calibration end** only; its predictions for the "
             "period after are then compared with what customers really did.")
    purchase_model, unit = _model_settings("clv_check", st)
    attempt, used = _fit(purchase_model, unit)
    if attempt is not None:
        _show_diagnostics(used, unit)
    st.subheader("Predictions against what happened")
    summary_all = app_state.cached_summary(dataset.fingerprint, ws)
    first, last = summary_all.first_date.date(), summary_all.last_date.date()
    if first >= last - timedelta(days=1):
        st.warning("Your data cover less than two days, too short for a check.")
        return
    calibration_end = st.date_input(
        "Calibration end", value=default_calibration_end(first, last), min_value=first,
        max_value=last - timedelta(days=1), key="clv_check_end", format="DD/MM/YYYY",
        help="Purchases up to and including this day train the model; the rest is the check period. "
             "The middle of your data is a good start.")
    attempt, used = _fit(purchase_model, unit, calibration_end)
    if attempt is None:
        return
    try:
        with st.spinner("Comparing predictions with the check period..."):
            check = app_state.cached_clv_check(dataset.fingerprint, ws, used, unit, calibration_end)
    except ClmError as error:
        st.error(app_state.plain(error))
        return
    totals, summary = check["totals"], check["summary"]
    holdout = f"{calibration_end + timedelta(days=1):%d %b %Y} to {summary.data_end:%d %b %Y}"
    cells = st.columns(4)
    cells[0].metric("Repeat purchases in the check period", f"{totals['actual']:,.0f}",
                    help=f"What the {len(summary.frame):,} customers acquired by the calibration end "
                         f"really did, {holdout}.")
    cells[1].metric("Predicted", f"{totals['predicted']:,.0f}",
                    delta=f"{totals['error']:+.1%} vs actual", delta_color="off")
    if check["spend"] is not None:
        spend = check["spend"]
        cells[2].metric("Average purchase value, actual", app_state.money(spend["actual"], 2))
        cells[3].metric("Predicted", app_state.money(spend["predicted"], 2),
                        delta=f"{spend['error']:+.1%} vs actual", delta_color="off")
    left, right = st.columns(2)
    left.plotly_chart(tracking_figure(check["tracking"], calibration_end), key="clv_check_tracking")
    right.plotly_chart(holdout_by_frequency_figure(check["by_frequency"], holdout_label=holdout),
                       key="clv_check_frequency")
    st.caption("Bars close to each other mean the model ranks customers well: those who bought more "
               "before also buy more after. A tracking line that bends away in the check period means "
               "the total is off.")


if check_tab.open:
    with check_tab:
        if dataset is None:
            st.info("Load data on the **Data** page to check the predictions.")
        else:
            _check()
