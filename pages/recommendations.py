"""Recommendations page: what to offer each customer, which action to take, and what sells together."""

import pandas as pd
import streamlit as st

import app_state

app_state.wait_for_imports()  # the model modules, never imported by two threads at once

from clm_core import actions, charts  # noqa: E402
from clm_core.errors import ClmError  # noqa: E402
from clm_core.export import XLSX_MIME, to_csv_bytes, to_excel_bytes  # noqa: E402
from clm_core.recommend import METHOD_LABELS  # noqa: E402
from clm_core.segments import LABELS  # noqa: E402

REPEATS = {None: "Decide from my data", True: "Include them (up to half the list)",
           False: "Only products they have not bought"}

st.title("Recommendations")
st.write("What to offer each customer next, which action to take with them, and which products sell together. "
         "Look up one customer on the **Customer** page.")
dataset = app_state.require_dataset()
ws = app_state.workspace()
views = ["Products to offer", "Next best action", "Bought together"]
view = st.radio("Show", views, horizontal=True, key="rec_view", label_visibility="collapsed")
segments = dataset.segment_columns  # stored name -> name in the file


def _no_products() -> None:
    st.info("This file has no product column (product id or name), so there is nothing to recommend and no "
            "products to pair. Map a product column on the Data page to use this part; the next best action "
            "works without one.")


def _segment_picker(key: str, label: str, help_text: str) -> str | None:
    if not segments:
        return None
    return st.selectbox(label, [None, *segments], key=key, help=help_text,
                        format_func=lambda name: "All customers together" if name is None else segments[name])


def show_evaluation(evaluation) -> None:
    """The offline check behind the method: which won on this data, why, and the table with intervals."""
    st.info(app_state.plain(f"Method used: {METHOD_LABELS[evaluation.chosen]}. {evaluation.reason}"), icon="🧪")
    with st.expander("How the method was chosen: the check on your data"):
        table = evaluation.table.copy()
        shown = pd.DataFrame({
            "Method": table["method"].map(METHOD_LABELS),
            "Products counted": table["items"].map({"new items": "New to the customer",
                                                     "with repeats": "Including repeat purchases"}),
            "Customers checked": table["customers"],
        })
        for metric, label in (("hit_rate", "Hit rate @10"), ("recall", "Recall @10"), ("precision", "Precision @10")):
            shown[label] = [f"{value:.1%} ({low:.1%}-{high:.1%})" for value, low, high in
                            zip(table[metric], table[f"{metric}_low"], table[f"{metric}_high"])]
        shown["Catalogue coverage"] = table["coverage"].map("{:.1%}".format)
        st.dataframe(shown, hide_index=True)
        st.caption(
            f"Recommendations were made from the data up to {evaluation.cutoff:%d %b %Y} and compared with what "
            f"customers bought from then to {evaluation.end:%d %b %Y}. Hit rate: the share of customers who bought "
            "at least one of their 10 recommended products; recall: the share of what they bought that was "
            "recommended; precision: the share of the 10 that they bought; coverage: the share of the catalogue "
            "recommended to anyone. In brackets, 95 % intervals. Personalised recommendations are used only when "
            "they beat the most popular products beyond chance; a tie goes to the simpler popular list.")
        for note in evaluation.notes:
            st.caption("⚠️ " + app_state.plain(note))


def show_and_offer(shown: pd.DataFrame, full: pd.DataFrame, name: str, rows_word: str, *,
                   column_config: dict | None = None) -> None:
    """The first 2,000 rows of ``shown`` on the page and all of ``full`` as CSV and Excel downloads (built when
    clicked), named after ``name``."""
    st.dataframe(shown.head(2000), hide_index=True, column_config=column_config)
    if len(full) > 2000:
        st.caption(f"The first 2,000 of {len(full):,} {rows_word}; the downloads hold them all.")
    stem, key = name.replace(" ", "_"), "rec_" + name.replace(" ", "_")
    downloads = st.columns(2)
    downloads[0].download_button(f"Download {name} (CSV)", data=lambda: to_csv_bytes(full), file_name=f"{stem}.csv",
                                 mime="text/csv", key=f"{key}_csv", on_click="ignore", type="primary")
    downloads[1].download_button(f"Download {name} (Excel)", data=lambda: to_excel_bytes({name[:31]: full}),
                                 file_name=f"{stem}.xlsx", mime=XLSX_MIME, key=f"{key}_xlsx", on_click="ignore")


def products_view() -> None:
    if not dataset.has_products:
        _no_products()
        return
    controls = st.columns(4)
    with controls[0]:
        segment = _segment_picker("rec_segment", "Popular products within",
                                  "Customers with too little history get the products most bought in the last 90 "
                                  "days; pick an attribute to use what is popular in their own group instead.")
    repeats = controls[1].selectbox(
        "Products they already buy", list(REPEATS), format_func=REPEATS.get, key="rec_repeats",
        help="For shops where people buy the same things again (supplies, groceries), reminding them of their "
             "usual products works. 'Decide from my data' includes them when at least 10 % of what repeat "
             "customers buy is bought on two days or more.")
    top = int(controls[2].number_input("Products per customer", min_value=1, max_value=20, value=app_state.FIRST_TOP,
                                       step=1, key="rec_top"))
    try:
        with st.spinner("Checking personalised recommendations against the most popular products on the last "
                        "3 months, then recommending for every customer..."):
            recommender = app_state.cached_recommender(dataset.fingerprint, ws, segment)
            evaluation = app_state.cached_recommend_evaluation(dataset.fingerprint, ws, segment)
            table = app_state.cached_recommendations(dataset.fingerprint, ws, segment, repeats, top)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        return
    if evaluation is None:
        st.info(app_state.plain(recommender.method_reason), icon="🧪")
    else:
        show_evaluation(evaluation)
    if repeats is None:
        included = "included (first, up to half the list)" if recommender.include_repeats_ else "left out"
        st.caption(f"Products customers already buy are {included}: {recommender.repeat_share_:.0%} of what repeat "
                   "customers buy is bought on two days or more.")
    with controls[3]:
        who = _customer_filter(table)
    chosen = table[table["customer_id"].isin(who)] if who is not None else table
    chosen = app_state.with_customer_labels(dataset.fingerprint, ws, chosen,
                                            app_state.label_filters("rec", dataset.fingerprint, ws))
    headline = st.columns(3)
    headline[0].metric("Customers", f"{chosen['customer_id'].nunique():,}")
    headline[1].metric("Distinct products recommended", f"{chosen['product_id'].nunique():,}")
    headline[2].metric("Personalised picks", f"{(chosen['method'] == 'cf').mean():.0%}",
                       help="Share of the recommendations that come from what similar customers bought; the rest "
                            "are popular products (customers with little history) or products they buy again.")
    shown = chosen.head(2000).rename(columns={"customer_id": "Customer", "rank": "Rank", "product_id": "Product id",
                                              "product_name": "Product", "reason": "Why", "method": "Picked by",
                                              **LABELS})
    shown["Picked by"] = shown["Picked by"].astype(str).map(METHOD_LABELS)
    show_and_offer(shown.drop(columns=["score"]), chosen, "recommendations", "rows")


def _customer_filter(table: pd.DataFrame) -> set | None:
    """Which customers to list: everyone, one value of a segment attribute, or the at-risk list."""
    options = ["all"] + (["segment"] if segments else []) + ["at_risk"]
    labels = {"all": "All customers", "segment": "One group (segment attribute)",
              "at_risk": "The at-risk list (Churn risk page)"}
    scope = st.selectbox("Customers", options, format_func=labels.get, key="rec_scope",
                         help="Export the recommendations of a group or of the customers most likely to leave.")
    if scope == "all":
        return None
    full = app_state.cached_full_customer_table(dataset.fingerprint, ws)
    if scope == "segment":
        label = st.selectbox("Attribute", list(segments.values()), key="rec_scope_attribute")
        values = sorted(full[label].dropna().astype(str).unique())
        picked = st.selectbox(f"{label}", values, key=f"rec_scope_value_{label}")
        return set(full.loc[full[label].astype(str) == picked, "customer_id"])
    threshold = st.slider("Risk of at least (%)", 0, 100, 70, 5, key="rec_scope_risk",
                          help="The customers whose churn risk on the Churn risk page is at least this.") / 100
    try:
        with st.spinner("Scoring churn risk (the Churn risk page's models)..."):
            result = app_state.churn_for_other_pages(dataset.fingerprint, ws)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        return set()
    return set(result.scores.loc[result.scores["risk"] >= threshold, "customer_id"])


def together_view() -> None:
    if not dataset.has_products:
        _no_products()
        return
    names = app_state.cached_product_names(dataset.fingerprint, ws)
    controls = st.columns([3, 1])
    product = controls[0].selectbox("Product", list(names.index), index=None, key="rec_together_product",
                                    format_func=lambda key: f"{names[key]} ({key})" if names[key] != key else key,
                                    placeholder="Type to search a product", help="Type part of a name or code.")
    min_orders = int(controls[1].number_input("In at least this many orders together", min_value=2, value=5,
                                              step=1, key="rec_together_min",
                                              help="Pairs seen in fewer orders are left out as chance."))
    everything = st.toggle("Strongest pairs across the whole catalogue", key="rec_together_all",
                           help="Each product's three most likely companions, strongest first (counts every order "
                                "of every product: a few seconds on large files).")
    if product is None and not everything:
        st.info("Pick a product to see what is bought with it, or switch on the strongest pairs across the "
                "catalogue.")
        return
    try:
        with st.spinner("Counting the products in each order..."):
            rules = app_state.cached_bought_together(dataset.fingerprint, ws, None if everything else product,
                                                     min_orders)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        return
    if rules.empty:
        st.info("No pair of products was bought together that often. Lower the number of orders.")
        return
    if everything:
        rules = rules.sort_values(["lift", "orders_both"], ascending=False).head(200)
        st.caption("The 200 strongest pairs by lift (each product's three most likely companions).")
    shown = pd.DataFrame({
        "Product": rules["product_name"], "Bought with": rules["other_product_name"],
        "Orders with both": rules["orders_both"],
        "Support": rules["support"].map("{:.2%}".format),
        "Confidence": rules["confidence"].map("{:.0%}".format),
        "Lift": rules["lift"].round(1),
    })
    st.dataframe(shown, hide_index=True)
    st.caption("Support: share of all orders that hold both. Confidence: of the orders with the product, the share "
               "that also hold the other. Lift: how many times likelier the other product is in an order with this "
               "one than in any order (above 1: they go together).")
    st.download_button("Download these pairs (CSV)", data=lambda: to_csv_bytes(rules), file_name="bought_together.csv",
                       mime="text/csv", key="rec_together_csv", on_click="ignore")


def actions_view() -> None:
    use_churn = st.toggle("Use churn risk (the Churn risk page's model)", value=True, key="nba_use_churn",
                          help="Off: risk is read from how overdue each customer is against their usual gap "
                               "between purchases, which needs no model.")
    horizon = app_state.churn_horizon_in_use(dataset.fingerprint, ws) if use_churn else None
    try:
        with st.spinner("Gathering each customer's value and churn risk..."):
            customers, notes = app_state.cached_action_customers(dataset.fingerprint, ws, horizon)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        return
    for note in notes:
        st.caption("⚠️ " + app_state.plain(note))
    st.write("Each customer gets the first action, by priority, that fits them and is expected to pay: success rate "
             "x value if it works - cost per contact. Edit the numbers; the actions are recomputed.")
    st.caption(app_state.plain(actions.value_note(customers)))
    edited = st.data_editor(
        actions.default_rules(customers), key=f"nba_editor_{dataset.fingerprint}", hide_index=True, num_rows="dynamic",
        column_config={
            **{column: st.column_config.Column(label, help=HELP.get(column)) for column, label in
               actions.RULE_COLUMNS.items()},
            "action": st.column_config.SelectboxColumn(actions.RULE_COLUMNS["action"], options=list(actions.ACTIONS),
                                                       required=True),
            "who": st.column_config.TextColumn(actions.RULE_COLUMNS["who"], disabled=True,
                                               help="Written from the numbers to its right."),
            "value_if_it_works": st.column_config.SelectboxColumn(
                actions.RULE_COLUMNS["value_if_it_works"], options=list(actions.VALUE_BASES), required=True,
                help="customer value: the customer's CLV (or yearly spend); extra orders: that many orders at their "
                     "average order value."),
        })
    try:
        rules = actions.validate_rules(edited)
    except ClmError as error:
        st.error(app_state.plain(str(error)))
        return
    st.session_state[f"nba_rules_{dataset.fingerprint}"] = rules  # the Customer page applies the same rules
    st.caption("Rules as applied, by priority: " + app_state.plain(
        "; ".join(f"{rule.priority:.0f}. {rule.action}: {rule.who}" for rule in rules.itertuples())))
    with st.spinner("Choosing an action for every customer..."):
        chosen = app_state.cached_next_best_actions(dataset.fingerprint, ws, horizon, rules)
    summary = actions.action_summary(chosen)
    st.plotly_chart(charts.action_summary_figure(summary), key="nba_summary_chart")
    unit = "orders" if (summary["value_unit"] == "orders").all() else "money"
    st.dataframe(pd.DataFrame({
        "Action": summary["action"].astype(str), "Customers": summary["customers"],
        "Share": summary["share"].map("{:.0%}".format),
        "Cost of contacting them": summary["contact_cost"].round(0 if unit == "money" else 2),
        "Expected net value": summary["expected_net_value"].round(0 if unit == "money" else 2),
    }), hide_index=True)
    picked = st.multiselect("List the customers of", [str(action) for action in summary["action"]],
                            default=[str(action) for action in summary["action"] if action != actions.NO_CONTACT],
                            key="nba_list_actions")
    listed = chosen[chosen["action"].astype(str).isin(picked)].sort_values("expected_net_value", ascending=False)
    listed = app_state.with_customer_labels(dataset.fingerprint, ws, listed,
                                            app_state.label_filters("nba", dataset.fingerprint, ws))
    show_and_offer(listed.rename(columns={**ACTION_NAMES, **LABELS}), listed, "next best actions",
                   "customers by expected net value", column_config=ACTION_FORMATS)


ACTION_NAMES = {
    "customer_id": "Customer", "action": "Action", "reason": "Why", "expected_net_value": "Expected net value",
    "value_unit": "Value in", "value_if_it_works": "Value if it works", "value_basis": "Valued by",
    "success_rate": "Success rate", "cost_per_contact": "Cost per contact", "product_id": "Product id",
    "product_name": "Product", "risk": "Risk", "risk_basis": "Risk from", "value_percentile": "Value percentile",
    "purchase_days": "Purchase days", "days_since_last_purchase": "Days since last purchase"}
ACTION_FORMATS = {
    "Expected net value": st.column_config.NumberColumn(format="%.2f"),
    "Value if it works": st.column_config.NumberColumn(format="%.2f"),
    "Success rate": st.column_config.NumberColumn(format="percent"),
    "Cost per contact": st.column_config.NumberColumn(format="%.2f"),
    "Risk": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1,
                                            help="The chance of leaving the action was chosen on."),
    "Value percentile": st.column_config.NumberColumn(format="%.0f",
                                                      help="The share of buying customers who spent less (in %)."),
}


HELP = {
    "priority": "Rules are tried from 1 up; a customer gets the first that fits and pays.",
    "min_risk": "Only customers whose chance of leaving is at least this (0.6 = 60 %). Blank: no limit.",
    "min_value_percentile": "80 keeps the top 20 % of customers by value. Blank: no limit.",
    "max_purchase_days": "1 keeps customers who bought on one day only.",
    "cost_per_contact": "What one contact costs you (discount given, postage...), in your currency.",
    "success_rate": "The share of contacted customers you expect to respond (0.1 = 10 %): your assumption.",
    "extra_orders": "With 'extra orders': how many orders a success brings.",
}


if view == views[0]:
    products_view()
elif view == views[1]:
    actions_view()
else:
    together_view()
