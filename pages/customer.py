"""Customer page: look one customer up and see who they are, what they bought, what to offer and what to do."""

import pandas as pd
import streamlit as st

import app_state

app_state.wait_for_imports()  # the model modules, never imported by two threads at once

from clm_core import charts  # noqa: E402
from clm_core.customer_view import FIGURES, close_matches, customer_profile, find_customers  # noqa: E402
from clm_core.errors import ClmError  # noqa: E402
from clm_core.export import to_csv_bytes  # noqa: E402
from clm_core.recommend import METHOD_LABELS  # noqa: E402

# Up to this many customers, the picker lists every id (it filters as you type); beyond, the search box finds them
# (a list of tens of thousands of ids is sent to the browser on every change and filters slowly as one types).
_PICKER_LIMIT = 5_000

st.title("Customer")
dataset = app_state.require_dataset()
ws = app_state.workspace()
table = app_state.cached_full_customer_table(dataset.fingerprint, ws)
ids = table["customer_id"]
contacts = list(dataset.contact_columns.values())

st.write("Find a customer by their id" + (f" or a contact detail ({', '.join(contacts)})" if contacts else "")
         + ": their figures, purchases, the products to offer them and the next best action.")
search = st.text_input("Search", key="customer_search", placeholder="Part of an id" + (" or e-mail" if contacts
                                                                                       else ""),
                       help="Any part of the id" + (" or of a contact detail" if contacts else "") + ", any case.")
if search.strip():
    found = find_customers(ws, search, limit=50)
    if found.empty:
        suggestions = close_matches(ids, search.strip())
        st.warning(f"No customer matches “{app_state.plain(search.strip())}”."
                   + (f" Did you mean {', '.join(app_state.plain(s) for s in suggestions)}?" if suggestions else ""))
        st.stop()
    options = found["customer_id"].tolist()
    labels = {}
    if contacts:
        first_contact = found[contacts[0]].astype(object).where(found[contacts[0]].notna(), "")
        labels = {customer: f"{customer} · {contact}" if contact else customer
                  for customer, contact in zip(found["customer_id"], first_contact)}
    customer = st.selectbox(f"Customers matching ({len(found)} shown)", options, key="customer_found",
                            format_func=lambda value: labels.get(value, value))
elif len(ids) <= _PICKER_LIMIT:
    customer = st.selectbox("Customer id", ids.tolist(), index=None, key="customer_pick",
                            placeholder="Type a customer id", help="Type to filter the list.")
else:
    customer = None
if customer is None:
    st.info("Type in the search box or pick a customer id.")
    st.stop()

try:
    profile = customer_profile(ws, customer, table=table)
except ClmError as error:
    st.error(app_state.plain(str(error)))
    st.stop()

st.subheader(app_state.plain(f"Customer {profile.customer_id}"))
figures = profile.figures


def _shown(key: str) -> str:
    value = figures.get(key)
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    if key in ("first_purchase", "last_purchase"):
        return f"{value:%d %b %Y}"
    if key in ("revenue", "average_order_value"):
        return app_state.money(value, 2)
    if key == "return_rate":
        return f"{value:.0%}"
    if key == "usual_gap_days":
        return f"{value:,.0f} days"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.0f}"


labels, labels_note, _ = app_state.customer_labels(dataset.fingerprint, ws)
mine = labels[labels["customer_id"] == profile.customer_id]
if len(mine) and "rfm_segment" in mine:
    st.markdown(f"**RFM segment:** {app_state.plain(mine['rfm_segment'].iloc[0])} · **Lifecycle stage:** "
                f"{app_state.plain(mine['lifecycle_stage'].iloc[0])}",
                help=f"{app_state.plain(labels_note)}; see the Segments page.")

cells = st.columns(4)  # four a row: dates and long labels fit whole
for position, key in enumerate(["orders", "revenue", "average_order_value", "first_purchase", "last_purchase",
                                "days_since_last_purchase", "usual_gap_days", "purchase_days", "products",
                                "return_rate"]):
    cells[position % 4].metric(FIGURES[key], _shown(key))

# Model figures: probability alive and CLV (BG/NBD + Gamma-Gamma), churn risk, the next best action.
with st.spinner("Reading the models' view of this customer..."):
    try:
        horizon = app_state.churn_horizon_in_use(dataset.fingerprint, ws)
    except ClmError:
        horizon = None
    try:
        scored, notes = app_state.cached_action_customers(dataset.fingerprint, ws, horizon)
        actions = app_state.cached_next_best_actions(dataset.fingerprint, ws, horizon,
                                                     app_state.action_rules(dataset.fingerprint, ws))
    except ClmError as error:
        scored, notes, actions = None, [str(error)], None
model_cells = st.columns(4)
row = scored[scored["customer_id"] == profile.customer_id] if scored is not None else pd.DataFrame()
if not row.empty:
    row = row.iloc[0]
    if pd.notna(row.get("probability_alive")):
        model_cells[0].metric("Probability still active", f"{row['probability_alive']:.0%}",
                              help="BG/NBD model on every customer's purchase history (Customer lifetime value page).")
    if pd.notna(row.get("clv")):
        model_cells[1].metric("CLV, next 12 months", app_state.money(row["clv"], 2),
                              help="Expected purchases x expected order value, discounted 1 % a month.")
    if pd.notna(row.get("risk")):
        model_cells[2].metric(f"Churn risk ({horizon} days)", f"{row['risk']:.0%}",
                              help="Chance of no purchase in the next days, from the Churn risk page's model.")
for note in notes:
    st.caption("⚠️ " + app_state.plain(note))
if actions is not None:
    action = actions[actions["customer_id"] == profile.customer_id]
    if not action.empty:
        action = action.iloc[0]
        model_cells[3].metric("Next best action", str(action["action"]),
                              help="From the rules on the Recommendations page (Next best action).")
        net = action["expected_net_value"]
        st.info(app_state.plain(f"Next best action: {action['action']} ({action['reason']})."
                                + (f" Expected net value {net:,.2f}" + (" orders." if action["value_unit"] == "orders"
                                                                        else ".") if net else "")
                                + (f" Offer: {action['product_name']}." if pd.notna(action.get("product_name"))
                                   else "")), icon="🎯")

if profile.segments or profile.contacts:
    details = {**profile.segments, **profile.contacts}
    st.caption(app_state.plain(" · ".join(f"{name}: {value}" for name, value in details.items()
                                          if value is not None and not pd.isna(value))))

timeline_column, products_column = st.columns([3, 2])
with timeline_column:
    if profile.timeline.empty:
        st.info("No purchase yet (only returns).")
    else:
        st.plotly_chart(charts.customer_timeline_figure(profile.timeline, has_money=profile.has_money),
                        key="customer_timeline")
with products_column:
    st.markdown("**What they bought most**")
    if profile.top_products.empty:
        st.caption("No product column in this file, or nothing kept after returns.")
    else:
        top = profile.top_products.head(10)
        st.dataframe(pd.DataFrame({"Product": top["product_name"].fillna(top["product_id"]),
                                   "Purchase days": top["purchase_days"],
                                   "Last bought": pd.to_datetime(top["last_purchase"]).dt.strftime("%d %b %Y"),
                                   "Units": top["quantity"]}), hide_index=True)

if dataset.has_products:
    st.markdown("**Products to offer**")
    repeats = st.session_state.get("rec_repeats")
    try:
        with st.spinner("Recommending..."):
            recommender = app_state.cached_recommender(dataset.fingerprint, ws, None)
            picks = recommender.for_customer(profile.customer_id, top=10, include_repeats=repeats)
    except ClmError as error:
        st.warning(app_state.plain(str(error)))
    else:
        shown = pd.DataFrame({"Rank": picks["rank"], "Product": picks["product_name"].astype(str),
                              "Why": picks["reason"].astype(str),
                              "Picked by": picks["method"].astype(str).map(METHOD_LABELS)})
        st.dataframe(shown, hide_index=True)
        st.caption(app_state.plain(recommender.method_reason))
        st.download_button("Download this customer's recommendations (CSV)", data=lambda: to_csv_bytes(picks),
                           file_name="recommendations_customer.csv", mime="text/csv", key="customer_download_recs",
                           on_click="ignore")
