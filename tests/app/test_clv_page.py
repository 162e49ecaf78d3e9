"""AppTest of the CLV page: calculator, pre-fill, predictive CLV and the model check on the demo data."""

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import app_state
from tests.app.helpers import open_page, page_metrics

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo_transactions.csv.gz"


PREDICTIVE = {"clv_tab": "Predictive CLV"}


def _page(session: dict | None = None) -> AppTest:
    """The CLV page, on the tab ``session["clv_tab"]`` names (the Calculator by default; only the open tab runs)."""
    return open_page("pages/clv.py", timeout=120, session=session)


def _tab(at: AppTest, name: str) -> AppTest:
    """Another tab opened, as a click does: the page reruns with only that tab."""
    at.session_state["clv_tab"] = name
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    frame = pd.read_csv(DEMO, dtype={"customer_id": str}, parse_dates=["order_date"])
    return frame


def test_calculator_matches_the_formula():
    at = _page()
    for key, value in {"clv_calc_aov": 80.0, "clv_calc_orders": 2.0, "clv_calc_margin": 25.0,
                       "clv_calc_retention": 50.0, "clv_calc_discount": 10.0, "clv_calc_cac": 30.0}.items():
        at.number_input(key=key).set_value(value)
    at.number_input(key="clv_calc_years").set_value(3).run()
    m = 80 * 2 * 0.25
    expected = m / 1.1 + m * 0.5 / 1.1 ** 2 + m * 0.25 / 1.1 ** 3
    metrics = page_metrics(at)
    assert metrics["CLV per customer"] == f"{expected:,.2f}"
    assert metrics["CLV / acquisition cost"] == f"{expected / 30:.2f}"
    at.toggle(key="clv_calc_unlimited").set_value(True).run()
    assert page_metrics(at)["CLV per customer"] == f"{m / (1 + 0.1 - 0.5):,.2f}"


def test_prefill_uses_the_loaded_data(demo):
    at = _page()
    at.button(key="clv_calc_prefill").click().run()
    assert not at.exception, at.exception
    orders = demo.groupby("order_id")["amount"].sum()
    assert at.number_input(key="clv_calc_aov").value == pytest.approx(round(orders.mean(), 2))
    # Two years of data: counted, not modelled. Customers of the year before the last 365 days who bought again
    # in them; orders of the last 365 days per customer who bought in them.
    end = demo["order_date"].max().normalize() + timedelta(days=1)
    year = timedelta(days=365)
    before = set(demo.loc[(demo["order_date"] >= end - 2 * year) & (demo["order_date"] < end - year), "customer_id"])
    last = demo[demo["order_date"] >= end - year]
    retention = round(100 * len(before & set(last["customer_id"])) / len(before), 1)
    assert at.number_input(key="clv_calc_retention").value == pytest.approx(retention)
    assert at.number_input(key="clv_calc_orders").value == pytest.approx(
        round(last["order_id"].nunique() / last["customer_id"].nunique(), 2))
    lines = [caption.value for caption in at.caption if "counted in your data" in caption.value]
    assert len(lines) == 3 and any(f"based on {len(before):,} customers" in line for line in lines)
    # The sensitivity heatmap has one row for the filled retention (off the 5-point grid), and the box sits on it.
    heat = json.loads(next(chart for chart in at.get("plotly_chart")
                           if chart.proto.id.endswith("clv_calc_sensitivity")).proto.spec)
    label = f"{retention:g}%"
    assert heat["data"][0]["y"].count(label) == 1 and heat["data"][1]["y"] == [label]


def test_prefill_without_amounts_says_what_it_could_not_fill(tmp_path, demo):
    path = tmp_path / "no_money.csv"
    demo[["customer_id", "order_id", "order_date"]].to_csv(path, index=False)
    space = app_state.SessionSpace(tmp_path)
    space.workspace.ingest(path)
    at = _page({"session_space": space, "demo_checked": True})
    at.button(key="clv_calc_prefill").click().run()
    assert not at.exception, at.exception
    assert at.number_input(key="clv_calc_aov").value == 50.0  # the default stays, and the page says so
    assert any("Average order value" in warning.value and "no amount column" in warning.value
               for warning in at.warning)
    assert 0 < at.number_input(key="clv_calc_retention").value < 100


def test_predictive_clv_and_check_on_demo(demo):
    at = _page()
    assert "Customers scored" not in page_metrics(at) and len(at.get("plotly_chart")) == 2  # the calculator only
    metrics = page_metrics(_tab(at, "Predictive CLV"))
    assert metrics["Customers scored"] == f"{demo['customer_id'].nunique():,}"
    assert metrics["Predicted CLV, next 12 months"] != "n/a"
    assert len(at.get("plotly_chart")) == 4 and not at.error
    # The top customers' table: days since the last purchase, counted to the last day of the data.
    top = next(frame.value for frame in at.dataframe if "Customer" in frame.value.columns).set_index("Customer")
    last = demo.groupby("customer_id")["order_date"].max().dt.normalize()
    expected = (demo["order_date"].max().normalize() - last.loc[top.index]).dt.days
    assert (top["Days since last purchase"].to_numpy() == expected.to_numpy()).all()
    assert "Weeks from first to last purchase (model)" in top.columns
    # The check period's actual repeat purchases, counted independently: purchase days after the calibration
    # end (the middle of the data) of customers whose first purchase day is on or before it.
    days = demo.assign(day=demo["order_date"].dt.normalize())[["customer_id", "day"]].drop_duplicates()
    first, last = days["day"].min(), days["day"].max()
    end = first + timedelta(days=(last - first).days // 2)
    first_day = days.groupby("customer_id")["day"].transform("min")
    actual = ((days["day"] > end) & (first_day <= end)).sum()
    metrics = page_metrics(_tab(at, "Model check"))
    assert metrics["Repeat purchases in the check period"] == f"{actual:,}"
    assert "Customers scored" not in metrics
    assert len(at.get("plotly_chart")) == 2 and not at.error


def test_switching_model_and_unit():
    at = _page(PREDICTIVE)
    at.radio(key="clv_pred_model").set_value("pareto").run()
    assert not at.exception, at.exception
    at.radio(key="clv_pred_unit").set_value("day").run()
    assert not at.exception, at.exception
    assert page_metrics(at)["Customers scored"] == "3,000"


def test_data_without_repeat_buyers_gets_a_message(tmp_path):
    path = tmp_path / "once.csv"
    path.write_text("customer_id,order_date,amount\na,2021-03-01,5\nb,2021-03-09,7\nc,2021-04-02,9\n")
    space = app_state.SessionSpace(tmp_path)
    space.workspace.ingest(path)
    at = _page({"session_space": space, "demo_checked": True, **PREDICTIVE})
    messages = [error.value for error in at.error]
    assert any("No customer bought more than once" in message for message in messages)
    assert "CLV per customer" in page_metrics(_tab(at, "Calculator"))  # the calculator still works


def test_data_without_amounts_still_predicts_purchases(tmp_path, demo):
    path = tmp_path / "no_money.csv"
    demo[["customer_id", "order_id", "order_date"]].to_csv(path, index=False)
    space = app_state.SessionSpace(tmp_path)
    space.workspace.ingest(path)
    at = _page({"session_space": space, "demo_checked": True, **PREDICTIVE})
    assert not at.error
    assert any("no amount column" in info.value for info in at.info)
    metrics = page_metrics(at)
    assert metrics["Customers scored"] == f"{demo['customer_id'].nunique():,}"
    assert "Predicted CLV, next 12 months" not in metrics
    metrics = page_metrics(_tab(at, "Model check"))
    assert "Repeat purchases in the check period" in metrics and "Average purchase value, actual" not in metrics


def _workspace_from(tmp_path, frame: pd.DataFrame, name: str) -> "app_state.SessionSpace":
    path = tmp_path / name
    frame.to_csv(path, index=False)
    space = app_state.SessionSpace(tmp_path)
    space.workspace.ingest(path)
    return space


def test_a_model_that_does_not_converge_falls_back_and_keeps_the_page(tmp_path, demo, monkeypatch):
    """Pareto/NBD failing to converge: the tab says so and shows BG/NBD, with its downloads; with both failing
    the page says what to try and the calculator and the check tab's inputs stay."""
    from clm_core.clv_models import BetaGeoModel, ParetoNBDModel
    from clm_core.errors import ConvergenceError

    def fail(self, *args, **kwargs):
        raise ConvergenceError(f"The {type(self).__name__} fit did not converge.")

    # A file of its own, so the failures cached under its fingerprint touch no other test.
    space = _workspace_from(tmp_path, demo.head(20_000), "fallback.csv")
    customers = demo.head(20_000)["customer_id"].nunique()
    monkeypatch.setattr(ParetoNBDModel, "fit", fail)
    at = _page({"session_space": space, "demo_checked": True, "clv_pred_model": "pareto", **PREDICTIVE})
    warnings = [warning.value for warning in at.warning]
    assert any("Pareto/NBD could not be fitted" in text and "Showing **BG/NBD** instead" in text for text in warnings)
    assert page_metrics(at)["Customers scored"] == f"{customers:,}"
    assert {button.label for button in at.get("download_button")} >= {"Per-customer CLV (CSV)",
                                                                     "Per-customer CLV (Excel)"}
    monkeypatch.setattr(BetaGeoModel, "fit", fail)
    (tmp_path / "both").mkdir()
    at = _page({"session_space": _workspace_from(tmp_path / "both", demo.head(19_000), "both.csv"),
                "demo_checked": True, **PREDICTIVE})
    assert not at.exception, at.exception
    assert any("Neither purchase model could be fitted" in error.value and "What to try" in error.value
               for error in at.error)
    assert _tab(at, "Model check").date_input(key="clv_check_end") is not None  # its inputs are still there
    assert "CLV per customer" in page_metrics(_tab(at, "Calculator"))


def test_customers_without_a_purchase_are_explained(tmp_path, demo):
    """A customer with only a return and one whose only purchase was sent back in full are not scored, and the
    page says so in numbers."""
    extra = pd.DataFrame([
        {"customer_id": "R1", "order_id": "C900001", "order_date": "2022-06-01 10:00", "product_id": "P1",
         "product_name": "Mug", "quantity": -1, "unit_price": 10.0, "amount": -10.0},
        {"customer_id": "R2", "order_id": "SO900002", "order_date": "2022-06-02 10:00", "product_id": "P2",
         "product_name": "Cup", "quantity": 1, "unit_price": 8.0, "amount": 8.0},
        {"customer_id": "R2", "order_id": "C900003", "order_date": "2022-06-03 10:00", "product_id": "P2",
         "product_name": "Cup", "quantity": -1, "unit_price": 8.0, "amount": -8.0},
    ])
    frame = pd.concat([demo.assign(order_date=demo["order_date"].dt.strftime("%Y-%m-%d %H:%M")), extra])
    at = _page({"session_space": _workspace_from(tmp_path, frame, "returns.csv"), "demo_checked": True,
                **PREDICTIVE})
    scored = demo["customer_id"].nunique()
    assert page_metrics(at)["Customers scored"] == f"{scored:,}"
    assert any(f"{scored:,} of the {scored + 2:,} customers on the Data page are scored: 1 has only returns and 1 "
               "more had every purchase cancelled by returns" in caption.value for caption in at.caption)
