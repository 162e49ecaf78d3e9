"""Churn risk: who will not buy in the next H days, how sure we are, and why.

Transactions mode (a workspace): churn means *no purchase within the next H days*. Features come from the
customer table (:mod:`clm_core.customers`) as of a cutoff, using only rows up to it; the label from the H days
after it. Models are trained at a past cutoff (``validation_cutoff - H``), checked on a later one
(``validation_cutoff``, whose H days end by the last day of the data): a split in time, never a random split
across time. Current customers are scored as of the last day of the data.

Labelled-table mode: a customer table with a churn column (e.g. Telco); a stratified random split.

Every model carries its held-out ROC AUC with a bootstrap interval against a recency-only baseline. When the
best model is not clearly better than chance (its interval reaches 0.5) or does not beat the baseline, the
result says so (``predictive`` is False) and customers are ranked by descriptive risk: days since their last
purchase against their usual gap between purchases.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from clm_core.customers import customer_table, data_span, window_activity
from clm_core.engine import Engine
from clm_core.errors import DataRangeError, SchemaError

__all__ = [
    "MODEL_NAMES",
    "BASELINE",
    "MIN_CUSTOMERS",
    "MIN_CHURNERS",
    "ChurnResult",
    "suggest_horizon",
    "repeat_gaps",
    "labelled_examples",
    "churn_from_workspace",
    "with_model",
    "churn_from_table",
    "campaign_curve",
    "campaign_shortfall",
    "chance_of_leaving",
    "risk_band",
    "customer_value",
    "at_risk_list",
    "read_customer_table",
]

MODEL_NAMES = {
    "logistic": "Logistic regression",
    "random_forest": "Random forest",
    "gradient_boosting": "Gradient boosting",
}
BASELINE = "recency_baseline"
MIN_CUSTOMERS = 200
MIN_CHURNERS = 30
_TRAIN_SAMPLE = 40_000
_EVALUATION_SAMPLE = 50_000
# Each tree of the forest sees at most this many customers (the forest is the slowest of the three to train). Fifty
# trees of depth 10 on 3,000 customers each: on CDNOW master 0.2 s to train (100 trees of depth 14 on 5,000: 0.6 s;
# on 15,000: 2.2 s), check ROC AUC 0.791 against 0.789; on Online Retail 0.738 against 0.741.
_TREE_SAMPLE = 3_000
_BOOTSTRAP = 200
_BOOTSTRAP_CUSTOMERS = 20_000
_FIT_SAMPLE = 30_000
_EXAMPLE_CUSTOMERS = 150_000

# Numeric features of transactions mode, with how a marketer reads each.
FEATURES = {
    "recency_days": "days since last purchase",
    "purchase_days": "purchase days",
    "tenure_days": "days since first purchase",
    "mean_gap_days": "usual days between purchases",
    "gap_spread_days": "spread of days between purchases",
    "recency_gap_ratio": "days since last purchase / usual gap",
    "products": "distinct products bought",
    "return_rate": "share of lines returned",
    "purchase_value": "money spent",
    "average_order_value": "average order value",
    "spend_last_90": "spend in the last 90 days",
    "spend_trend": "spend trend (last 90 days vs the 90 before)",
    "probability_alive": "probability still active (BG/NBD)",
    "expected_purchases": "purchases expected in the horizon (BG/NBD)",
}
_MONEY_FEATURES = ("purchase_value", "average_order_value", "spend_last_90", "spend_trend")


@dataclass
class ChurnResult:
    """Everything the page, the CLI and the export show.

    ``scores``: one row per current customer: ``customer_id``, ``risk`` (probability of no purchase in the
    horizon, or descriptive risk when not predictive), ``risk_band``, ``drivers`` (plain words), and the
    customer-table columns. ``models``: per model, held-out ``roc_auc``, ``roc_auc_interval``, ``pr_auc``,
    ``brier``, ``lift_top_decile``, ``capture_top_decile``.
    """

    mode: str  # "transactions" or "table"
    horizon_days: int | None
    cutoff: date | None
    train_rows: int
    test_rows: int
    base_rate: float
    models: dict[str, dict]
    best_model: str | None
    predictive: bool
    scores: pd.DataFrame
    importance: pd.DataFrame
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The trained models, kept so another of them can score the same customers at once (:func:`with_model`).
    fit: _Fit | None = field(default=None, repr=False, compare=False)

    @property
    def customers(self) -> pd.DataFrame:
        """The scored customers' features, without the scores, by customer id (what the models score)."""
        return self.scores.drop(columns=["risk", "risk_band", "drivers"]).sort_values("customer_id",
                                                                                     ignore_index=True)

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "horizon_days": self.horizon_days,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "base_rate": self.base_rate,
            "best_model": self.best_model,
            "predictive": self.predictive,
            "models": self.models,
            "customers_scored": len(self.scores),
            "notes": self.notes,
        }


# --- horizon and examples --------------------------------------------------------------------------------------

def repeat_gaps(table: pd.DataFrame) -> pd.Series:
    """Each repeat customer's usual gap between purchase days (days), the input of the horizon suggestion."""
    return table["mean_gap_days"].dropna()


def suggest_horizon(workspace: Engine, table: pd.DataFrame | None = None) -> tuple[int, pd.Series]:
    """A horizon (days) most repeat customers come back within: the 80th percentile of the usual gap between
    purchase days, rounded up to a multiple of 30, between 30 and a third of the data's span; and the gaps.
    ``table`` is the customer table at the end of the data, when the caller has it already."""
    first, last = data_span(workspace)
    if table is None:
        table = customer_table(workspace, last, attributes=False)
    gaps = repeat_gaps(table)
    span = (last - first).days
    longest = max(30, span // 3 // 30 * 30)
    if gaps.empty:
        return min(90, longest), gaps
    return int(np.clip(np.ceil(gaps.quantile(0.8) / 30) * 30, 30, longest)), gaps


def _features_at(workspace: Engine, cutoff: date, horizon_days: int, with_models: bool, *,
                 sample_share: float = 1.0, contacts: bool = True, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Customers who have bought by ``cutoff``, with their features as of it (nothing after it is read); with
    ``sample_share`` below 1, about that share of them (the same customers at every cutoff). ``table`` is the
    customer table as of ``cutoff``, when the caller has it already."""
    if table is None:
        table = customer_table(workspace, cutoff, contacts=contacts, sample_share=sample_share)
    table = table[table["purchase_days"] > 0].reset_index(drop=True)
    if with_models:
        table = _with_purchase_model(workspace, table, cutoff, horizon_days)
    return table


def _with_purchase_model(workspace: Engine, table: pd.DataFrame, cutoff: date, horizon_days: int) -> pd.DataFrame:
    """Probability alive and expected purchases in the horizon from a BG/NBD fit on data up to ``cutoff``; the
    columns stay empty when the data do not support a fit."""
    from clm_core import clv
    from clm_core.errors import ClmError

    table["probability_alive"] = np.nan
    table["expected_purchases"] = np.nan
    try:
        summary = clv.customer_summary_from_table(table, unit="week", observation_end=cutoff)
        (x, recency, t), counts, inverse = summary.compressed
        # Four parameters are pinned down by a random sample of customers as well as by a million: fit on at
        # most _FIT_SAMPLE of them, then score everyone.
        if len(summary.frame) > _FIT_SAMPLE:
            drawn = np.random.default_rng(0).choice(len(summary.frame), _FIT_SAMPLE, replace=False)
            counts = np.bincount(inverse[drawn], minlength=len(counts))
            keep = counts > 0
            model = clv.BetaGeoModel().fit(x[keep], recency[keep], t[keep], weights=counts[keep])
        else:
            model = clv.BetaGeoModel().fit(x, recency, t, weights=counts)
        with np.errstate(all="ignore"):
            alive = model.probability_alive(x, recency, t)[inverse]
            expected = model.expected_purchases(horizon_days / 7.0, x, recency, t)[inverse]
    except (ClmError, ValueError, FloatingPointError):
        return table
    order = summary.frame["customer_id"].to_numpy()
    position = pd.Series(np.arange(len(order)), index=order).reindex(table["customer_id"]).to_numpy()
    table["probability_alive"] = alive[position]
    table["expected_purchases"] = expected[position]
    return table


def labelled_examples(workspace: Engine, cutoff: date, horizon_days: int, *,
                      with_models: bool = True, sample_share: float = 1.0) -> pd.DataFrame:
    """Customers who have bought by ``cutoff`` (about ``sample_share`` of them), their features as of it and
    ``churned``: 1 when they made no purchase in the ``horizon_days`` after it."""
    examples = _features_at(workspace, cutoff, horizon_days, with_models, sample_share=sample_share, contacts=False)
    later = window_activity(workspace, cutoff, cutoff + timedelta(days=horizon_days))
    # A lookup in an index of who bought later: isin on text ids took 0.03 s at CDNOW master's 23,570, this 0.004.
    bought = pd.Index(later["customer_id"]).unique()
    examples["churned"] = (bought.get_indexer(examples["customer_id"]) < 0).astype(int)
    return examples


# --- models -----------------------------------------------------------------------------------------------------

def _log_scale(values):
    return np.sign(values) * np.log1p(np.abs(values))


def _pipelines(numeric: list[str], categorical: list[str], seed: int, rows: int) -> dict[str, object]:
    """The three models as scikit-learn pipelines; class imbalance handled by class weights (logistic, forest)."""

    def prepare(scale: bool) -> ColumnTransformer:
        steps = [SimpleImputer(strategy="median", add_indicator=True),
                 FunctionTransformer(_log_scale, feature_names_out="one-to-one")]
        if scale:
            steps.append(StandardScaler())
        parts = [("numeric", make_pipeline(*steps), numeric)]
        if categorical:
            parts.append(("categorical", make_pipeline(
                SimpleImputer(strategy="constant", fill_value="(blank)"),
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, max_categories=30,
                              sparse_output=False)), categorical))
        return ColumnTransformer(parts)

    return {
        # Newton steps with a Cholesky solve: a few iterations over a few dozen features, where L-BFGS takes
        # fifty (CDNOW master: 0.08 s instead of 0.5 s, the same fit).
        "logistic": make_pipeline(prepare(True), LogisticRegression(class_weight="balanced", solver="newton-cholesky",
                                                                    max_iter=200)),
        "random_forest": make_pipeline(prepare(False), RandomForestClassifier(
            n_estimators=50, min_samples_leaf=5, max_depth=10, class_weight="balanced_subsample", n_jobs=2,
            max_samples=_TREE_SAMPLE if rows > _TREE_SAMPLE else None,
            random_state=seed)),
        # No class weights for the boosting: weighted, it finds its bins with one weighted percentile per bin and
        # feature (scikit-learn 1.9), two thirds of its training time here; the sigmoid calibration after it
        # corrects the rates either way.
        "gradient_boosting": make_pipeline(prepare(False), HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, early_stopping=True, random_state=seed)),
    }


def _baseline_pipeline() -> object:
    """Recency only: a logistic regression on log days since last purchase (ranks exactly as recency does)."""
    return make_pipeline(ColumnTransformer([("recency", make_pipeline(
        SimpleImputer(strategy="median"), FunctionTransformer(_log_scale), StandardScaler()), ["recency_days"])]),
        LogisticRegression(solver="newton-cholesky", max_iter=200))


def _auc_interval(labels: np.ndarray, scores: np.ndarray, seed: int) -> list[float]:
    """A 95 % bootstrap interval of the ROC AUC (resampling customers), vectorised over resamples."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    draws = rng.integers(0, n, size=(_BOOTSTRAP, n))
    auc = _auc_by_weights(labels, scores, draws)
    low, high = np.nanquantile(auc, [0.025, 0.975])
    return [float(low), float(high)]


def _auc_by_weights(labels: np.ndarray, scores: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The ROC AUC of each resample (a row of ``draws``: positions into ``labels`` and ``scores``), as
    :func:`_auc_by_row` gives on ``labels[draws]``, ``scores[draws]``, without sorting every resample: a resample
    is how many times it holds each distinct score among churners and among stayers, and its AUC the weighted
    count of (churner, stayer) pairs in the right order, ties a half. NaN for a resample without both classes."""
    resamples, n = draws.shape
    distinct, group = np.unique(scores, return_inverse=True)
    times = np.bincount((draws + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    times = times.reshape(resamples, n).astype(float)
    positive = labels.astype(bool)
    by_group = sp.csr_matrix((np.ones(n), (np.arange(n), group)), shape=(n, len(distinct)))
    churners = (times * positive) @ by_group
    stayers = (times * ~positive) @ by_group
    stayers_below = np.cumsum(stayers, axis=1) - stayers
    pairs = churners.sum(axis=1) * stayers.sum(axis=1)
    ordered = (churners * (stayers_below + stayers / 2)).sum(axis=1)
    return np.where(pairs > 0, ordered / np.where(pairs > 0, pairs, 1), np.nan)


def _auc_by_row(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of ``scores`` against ``labels`` (a matrix of the same shape, or one row for all) by
    the rank-sum (Mann-Whitney) formula, ties counting a half; NaN for a row without both classes."""
    labels = np.broadcast_to(labels, scores.shape)
    ranks = rankdata(scores, axis=1)
    positives = labels.sum(axis=1)
    negatives = scores.shape[1] - positives
    valid = (positives > 0) & (negatives > 0)
    auc = ((ranks * labels).sum(axis=1) - positives * (positives + 1) / 2) / np.where(valid, positives * negatives, 1)
    return np.where(valid, auc, np.nan)


def _permutation_importance(model, sample: pd.DataFrame, labels: np.ndarray, *, repeats: int,
                            seed: int) -> pd.DataFrame:
    """Drop of the ROC AUC when one feature's values are shuffled among the customers of ``sample``, mean and
    standard deviation over ``repeats`` shuffles (Breiman's permutation importance, as scikit-learn's
    ``permutation_importance`` with ``scoring="roc_auc"``). Every shuffled copy is scored in one call, which
    for a forest is several times faster than one call per copy."""
    rng = np.random.default_rng(seed)
    columns = list(sample.columns)
    copies = []
    for column in columns:
        for _ in range(repeats):
            shuffled = sample.copy()
            shuffled[column] = sample[column].to_numpy()[rng.permutation(len(sample))]
            copies.append(shuffled)
    stacked = pd.concat([sample, *copies], ignore_index=True)
    scores = model.predict_proba(stacked)[:, 1].reshape(1 + len(copies), len(sample))
    auc = _auc_by_row(np.asarray(labels), scores)
    drops = (auc[0] - auc[1:]).reshape(len(columns), repeats)
    return pd.DataFrame({"feature": columns, "importance": drops.mean(axis=1), "spread": drops.std(axis=1)}) \
        .sort_values("importance", ascending=False, ignore_index=True)


def _hanley_mcneil_interval(labels: np.ndarray, auc: float) -> list[float]:
    """95 % interval of the ROC AUC from its standard error (Hanley and McNeil 1982, equation 2): at tens of
    thousands of customers as close to the bootstrap as the bootstrap is to itself, at no cost."""
    positives = labels.sum()
    negatives = len(labels) - positives
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    se = np.sqrt((auc * (1 - auc) + (positives - 1) * (q1 - auc ** 2) + (negatives - 1) * (q2 - auc ** 2))
                 / (positives * negatives))
    return [float(auc - 1.96 * se), float(auc + 1.96 * se)]


def _evaluate(labels: np.ndarray, probability: np.ndarray, seed: int) -> dict:
    order = np.argsort(-probability, kind="stable")
    top = order[: max(1, len(order) // 10)]
    base = labels.mean()
    auc = float(roc_auc_score(labels, probability))
    interval = (_auc_interval(labels, probability, seed) if len(labels) <= _BOOTSTRAP_CUSTOMERS
                else _hanley_mcneil_interval(labels, auc))
    return {
        "roc_auc": auc,
        "roc_auc_interval": interval,
        "pr_auc": float(average_precision_score(labels, probability)),
        "brier": float(brier_score_loss(labels, probability)),
        "lift_top_decile": float(labels[top].mean() / base) if base > 0 else float("nan"),
        "capture_top_decile": float(labels[top].sum() / labels.sum()) if labels.sum() else float("nan"),
    }


def _curves(labels: np.ndarray, probability: np.ndarray) -> dict[str, pd.DataFrame]:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, probability)
    observed, predicted = calibration_curve(labels, probability, n_bins=10, strategy="quantile")
    order = np.argsort(-probability, kind="stable")
    share = np.arange(1, len(order) + 1) / len(order)
    captured = np.cumsum(labels[order]) / max(labels.sum(), 1)
    step = max(1, len(order) // 200)
    return {
        "roc": pd.DataFrame({"false_positive_rate": fpr, "true_positive_rate": tpr}),
        "calibration": pd.DataFrame({"predicted": predicted, "observed": observed}),
        "gains": pd.DataFrame({"share_contacted": share[::step], "share_of_churners": captured[::step]}),
    }


def _check_trainable(labels: pd.Series, what: str) -> None:
    churners = int(labels.sum())
    stayers = int(len(labels) - churners)
    if len(labels) < MIN_CUSTOMERS or min(churners, stayers) < MIN_CHURNERS:
        raise DataRangeError(
            f"Too few customers to train a churn model on {what}: {len(labels):,} customers, {churners:,} who "
            f"left and {stayers:,} who stayed. A model needs at least {MIN_CUSTOMERS} customers with at least "
            f"{MIN_CHURNERS} of each."
        )


def _nearly_constant(values: pd.Series) -> bool:
    """One value for everyone, or a spread below a thousandth of the typical size (as BG/NBD's probability alive
    when the data cannot tell who has left: 1 to twelve decimals), where scaling would blow noise up."""
    values = values.dropna().astype(float)
    if values.nunique() <= 1:
        return True
    return bool(values.std() <= 1e-3 * max(values.abs().mean(), 1e-12))


@dataclass
class _Fit:
    """The models trained and checked, and the one used: ``use(name)`` makes ``name`` the one (its curves,
    importance and whether it beats chance and the baseline)."""

    models: dict[str, dict]
    fitted: dict[str, object]
    columns: list[str]
    probabilities: dict[str, np.ndarray]
    labels: np.ndarray
    check_sample: tuple[pd.DataFrame, pd.Series]
    best_on_check: str
    notes: list[str]
    seed: int
    best: str = ""
    predictive: bool = False
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    importance: pd.DataFrame | None = None

    def use(self, name: str) -> "_Fit":
        used = replace(self, best=name)
        metrics, baseline = self.models[name], self.models.get(BASELINE)
        used.predictive = bool(metrics["roc_auc_interval"][0] > 0.5
                               and (baseline is None or metrics["roc_auc"] > baseline["roc_auc"]))
        used.curves = _curves(self.labels, self.probabilities[name])
        sample, labels = self.check_sample
        used.importance = _permutation_importance(self.fitted[name], sample, labels.to_numpy(), repeats=3,
                                                  seed=self.seed)
        return used


def _fit_and_compare(train: pd.DataFrame, y_train: pd.Series, test: pd.DataFrame, y_test: pd.Series,
                     numeric: list[str], categorical: list[str], seed: int, *, baseline: bool) -> _Fit:
    notes: list[str] = []
    if len(train) > _TRAIN_SAMPLE:
        train, _, y_train, _ = train_test_split(train, y_train, train_size=_TRAIN_SAMPLE, stratify=y_train,
                                                random_state=seed)
        notes.append(f"Models were trained on a random sample of {_TRAIN_SAMPLE:,} customers (stratified by churn) "
                     "to keep the page fast; every customer is scored.")
    constant = [column for column in numeric if _nearly_constant(train[column])]
    numeric = [column for column in numeric if column not in constant]
    if constant:
        notes.append("Left out features that are (nearly) the same for everyone: "
                     f"{', '.join(FEATURES.get(column, column) for column in constant)}.")
    if not numeric and not categorical:
        raise DataRangeError("Every feature has the same value for all customers: there is nothing to learn from.")
    if len(test) > _EVALUATION_SAMPLE:
        test, _, y_test, _ = train_test_split(test, y_test, train_size=_EVALUATION_SAMPLE, stratify=y_test,
                                              random_state=seed)
        notes.append(f"Models were checked on a random sample of {_EVALUATION_SAMPLE:,} customers of the check "
                     "date (stratified by churn).")
    candidates = _pipelines(numeric, categorical, seed, rows=int(len(train) * 0.75))
    if baseline and "recency_days" in train:
        candidates[BASELINE] = _baseline_pipeline()
    labels = y_test.to_numpy()
    # Class weights move probabilities away from the real rates; a sigmoid fitted on a quarter of the training
    # customers the model did not see brings them back (one fit per model, where 3-fold calibration takes three).
    fit_part, calibration_part, y_fit, y_calibration = train_test_split(
        train, y_train, test_size=0.25, stratify=y_train, random_state=seed)

    # The frozen model is scored on the calibration customers in one call: the default 5-fold split would score
    # them in five (the same scores, the same sigmoid; a forest pays its thread start-up five times).
    every_row = [(np.arange(0), np.arange(len(calibration_part)))]

    def train(pipeline):
        pipeline.fit(fit_part, y_fit)
        model = CalibratedClassifierCV(FrozenEstimator(pipeline), method="sigmoid", cv=every_row).fit(
            calibration_part, y_calibration)
        return model, model.predict_proba(test)[:, 1]

    # One after the other, the boosting on one thread: its own threads, or two models side by side, cost more in
    # coordination and the interpreter lock than they save (measured on 3 K to 34 K customers); the forest's trees
    # grow two at a time (tree building leaves the interpreter lock).
    with threadpool_limits(1, user_api="openmp"):
        trained = {name: train(pipeline) for name, pipeline in candidates.items()}
    for pipeline in candidates.values():  # scoring many customers later: a forest predicts on every core again
        if isinstance(pipeline[-1], RandomForestClassifier):
            pipeline[-1].set_params(n_jobs=-1)
    models, fitted, probabilities = {}, {}, {}
    for name, (model, probability) in trained.items():
        models[name] = _evaluate(labels, probability, seed)
        fitted[name], probabilities[name] = model, probability
    learned = [name for name in models if name != BASELINE]
    best = max(learned, key=lambda name: models[name]["roc_auc"])
    sample = test.sample(3000, random_state=seed) if len(test) > 3000 else test
    return _Fit(models=models, fitted=fitted, columns=list(test.columns), probabilities=probabilities, labels=labels,
                check_sample=(sample, y_test.loc[sample.index]), best_on_check=best, notes=notes,
                seed=seed).use(best)


# --- explanations and bands -------------------------------------------------------------------------------------

def risk_band(risk: pd.Series, *, predictive: bool) -> pd.Series:
    """High / Medium / Low: probabilities at 0.7 and 0.4; descriptive risk (recency over the usual gap) at 2
    and 1 (twice the usual gap overdue, or past it)."""
    high, medium = (0.7, 0.4) if predictive else (2.0, 1.0)
    return pd.Series(np.select([risk >= high, risk >= medium], ["High", "Medium"], "Low"), index=risk.index)


def descriptive_risk(table: pd.DataFrame) -> pd.Series:
    """Days since the last purchase over the customer's usual gap (for one-time buyers: the usual gap of all
    repeat customers): 1 means as late as usual, 2 twice as late."""
    typical = table["mean_gap_days"].median()
    typical = typical if pd.notna(typical) and typical > 0 else max(table["recency_days"].median(), 1.0)
    gap = table["mean_gap_days"].where(table["mean_gap_days"] > 0, typical)
    return table["recency_days"] / gap


def _drivers(table: pd.DataFrame, importance: pd.DataFrame, risk: pd.Series, limit: int = 3) -> pd.Series:
    """The top reasons behind each customer's score in words: among the important features, those where the
    customer stands furthest toward risk (by percentile, in the direction the feature moves risk)."""
    weights = importance.set_index("feature")["importance"].clip(lower=0)
    # Days since the last purchase and the same over the usual gap tell one story (and share their importance
    # between them): one driver, said in days.
    weights["recency_days"] = weights.get("recency_days", 0) + weights.get("recency_gap_ratio", 0)
    weights = weights.drop("recency_gap_ratio", errors="ignore")
    usable = [feature for feature in weights[weights > 0].index
              if feature in FEATURES and feature in table and table[feature].notna().any()] or ["recency_days"]
    weights = weights.reindex(usable).fillna(0).clip(lower=1e-6)
    lean = _Leaning(risk)
    pushes = np.column_stack([lean.push(table[feature]) * weights[feature] for feature in usable])
    context = [column for column in ("recency_days", "mean_gap_days") if column in table]
    return _reasons(pushes, lambda column, rows: _say(usable[column], table.loc[rows, list(
        dict.fromkeys([usable[column], *context]))]), table.index, limit)


def _table_drivers(frame: pd.DataFrame, numeric: list[str], categorical: list[str], importance: pd.DataFrame,
                   risk: pd.Series, train: pd.DataFrame, y_train: pd.Series, limit: int = 3) -> pd.Series:
    """Drivers for a labelled table, said with the table's own column names: a number well above or below most
    customers' (``tenure 1 (low)``), or a category whose customers left more often than average in training
    (``Contract: Month-to-month (43% of them left)``)."""
    weights = importance.set_index("feature")["importance"].clip(lower=0)
    usable = [column for column in weights[weights > 0].index if column in numeric + categorical] \
        or list(weights.index[:1])
    lean = _Leaning(risk)
    base = float(y_train.mean())
    rates = {column: y_train.groupby(train[column].to_numpy()).mean() for column in usable if column in categorical}
    pushes = np.column_stack([
        (frame[column].map(rates[column]).fillna(base).to_numpy(dtype=float) - base) if column in rates
        else lean.push(frame[column]) for column in usable]) * weights.reindex(usable).to_numpy()

    def say(column: int, rows: np.ndarray) -> pd.Series:
        name, values = usable[column], frame.loc[rows, usable[column]]
        if name in rates:
            return name + ": " + values.astype(str) + " (" + _percent(values.map(rates[name]).fillna(base)) \
                + " of them left)"
        high = lean.percentile(frame[name])[rows] > 0.5
        return name + " " + _number(values.astype(float), 0 if (values.dropna() % 1 == 0).all() else 1) \
            + pd.Series(np.where(high, " (high)", " (low)"), index=values.index)

    return _reasons(pushes, say, frame.index, limit)


class _Leaning:
    """How far each customer's value of a feature leans toward risk: its percentile among customers minus one
    half, signed by the direction the feature moves risk (both from a fixed sample of 50,000 customers: the same
    answer as from all of them, to the second decimal, in a fraction of the time at a million)."""

    def __init__(self, risk: pd.Series) -> None:
        self._sample = np.random.default_rng(0).choice(len(risk), min(len(risk), 50_000), replace=False)
        self._risk_rank = rankdata(risk.to_numpy()[self._sample])

    def percentile(self, values: pd.Series) -> np.ndarray:
        """Mid-rank percentile of each value among the sample's (ties share the middle of their ranks)."""
        values = values.to_numpy(dtype=float)
        drawn = values[self._sample]
        distinct, counts = np.unique(drawn[~np.isnan(drawn)], return_counts=True)
        if not len(distinct):
            return np.full(len(values), 0.5)
        below = np.concatenate([[0], np.cumsum(counts)])  # sample values below each distinct value
        position = np.searchsorted(distinct, values)
        exact = (position < len(distinct)) & (distinct[np.minimum(position, len(distinct) - 1)] == values)
        ranks = below[position] + np.where(exact, counts[np.minimum(position, len(distinct) - 1)] / 2, 0.0)
        return ranks / below[-1]

    def push(self, values: pd.Series) -> np.ndarray:
        drawn = values.to_numpy(dtype=float)[self._sample]
        both = ~np.isnan(drawn)
        direction = np.sign(np.corrcoef(rankdata(drawn[both]), self._risk_rank[both])[0, 1]) if both.sum() > 2 \
            else 1.0
        direction = direction if np.isfinite(direction) and direction != 0 else 1.0
        return np.nan_to_num((self.percentile(values) - 0.5) * direction) * values.notna().to_numpy()


def _reasons(pushes: np.ndarray, say, index: pd.Index, limit: int) -> pd.Series:
    """Each row's ``limit`` strongest positive pushes, said by ``say(column, rows)`` and joined with '; '."""
    top = np.argsort(-pushes, axis=1, kind="stable")[:, :limit]
    strengths = np.take_along_axis(pushes, top, axis=1)
    chosen = np.where(strengths > 0, top, -1)  # the column said in each row's slot; -1: none
    reasons = np.full(chosen.shape, "", dtype=object)
    # One call of ``say`` per column, for every row that names it in any slot (a column is in a row's slots at
    # most once): a third of the calls of one per column and slot (the drivers of Online Retail's customers in
    # 0.046 s instead of 0.074 s, CDNOW master's in 0.14 s instead of 0.17 s).
    for column in np.unique(chosen[chosen >= 0]):
        rows = (chosen == column).any(axis=1)
        within, slot = np.nonzero(chosen[rows] == column)
        reasons[np.flatnonzero(rows)[within], slot] = say(column, rows).to_numpy()[within]
    return pd.Series(["; ".join(filter(None, row)) or "no single reason stands out" for row in reasons.tolist()],
                     index=index, dtype=object)


def _number(values: pd.Series, digits: int = 0) -> pd.Series:
    """Numbers as a marketer reads them (``1,234`` or ``2.5``), for a million of them in a fraction of a second."""
    numbers = values.to_numpy(dtype=float)
    if digits == 0 and len(numbers) and np.nanmax(np.abs(numbers)) < 999.5:  # no thousands separator needed
        return pd.Series(np.rint(numbers).astype(np.int64).astype(str).astype(object), index=values.index)
    spec = f"{{:,.{digits}f}}".format
    return pd.Series([spec(value) for value in numbers.tolist()], index=values.index, dtype=object)


def _percent(values: pd.Series) -> pd.Series:
    return pd.Series([f"{value:.0%}" for value in values.to_numpy(dtype=float).tolist()], index=values.index,
                     dtype=object)


def _say(feature: str, customers: pd.DataFrame) -> pd.Series:
    """One reason in a marketer's words for each of ``customers`` (empty where the value is missing)."""
    value = customers[feature]
    gap = customers["mean_gap_days"] if "mean_gap_days" in customers else pd.Series(np.nan, index=customers.index)
    usual = ("; usually buys every " + _number(gap.fillna(0))).where(gap.notna(), "")
    if feature in ("recency_days", "recency_gap_ratio"):
        text = "no purchase for " + _number(customers["recency_days"].fillna(0)) + " days" + usual
    elif feature == "purchase_days":
        text = ("bought on only " + _number(value.fillna(0)) + " days").where(value > 1, "bought on only one day")
    elif feature == "tenure_days":
        text = "customer for " + _number(value.fillna(0)) + " days"
    elif feature == "mean_gap_days":
        text = "usually " + _number(value.fillna(0)) + " days between purchases"
    elif feature == "gap_spread_days":
        text = "irregular buyer (gaps vary by " + _number(value.fillna(0)) + " days)"
    elif feature == "products":
        text = "bought " + _number(value.fillna(0)) + " different products"
    elif feature == "return_rate":
        text = "returned " + _percent(value.fillna(0)) + " of lines"
    elif feature == "spend_trend":
        text = pd.Series(np.where(value < 0, "spend down in the last 90 days", "spend up in the last 90 days"),
                         index=customers.index)
    elif feature == "probability_alive":
        text = "probability still active " + _percent(value.fillna(0))
    elif feature == "expected_purchases":
        text = "expected purchases in the horizon " + _number(value.fillna(0), 1)
    else:
        text = FEATURES.get(feature, feature) + " " + _number(value.fillna(0))
    return text.where(value.notna(), "")


# --- transactions mode ------------------------------------------------------------------------------------------

def _transaction_features(workspace: Engine, table: pd.DataFrame) -> tuple[list[str], list[str]]:
    dataset = workspace.dataset
    numeric = [name for name in FEATURES if name in table and (dataset.has_money or name not in _MONEY_FEATURES)]
    numeric = [name for name in numeric if table[name].notna().any()]
    categorical = list(dataset.segment_columns.values())
    return numeric, categorical


def churn_from_workspace(workspace: Engine, *, horizon_days: int | None = None, cutoff: date | None = None,
                         model: str | None = None, seed: int = 0, table: pd.DataFrame | None = None) -> ChurnResult:
    """Train at ``cutoff - horizon``, check at ``cutoff`` (default: the last day of the data less the horizon),
    score every customer as of the last day with ``model`` (default: the best on the check). Too little data for
    a model gives the descriptive ranking with a note instead of an error. ``table``: the customer table at the
    end of the data with its attributes (:func:`customer_table`), when the caller has it."""
    if model is not None and model not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}")
    first, last = data_span(workspace)
    everyone = customer_table(workspace, last) if table is None else table
    if horizon_days is None:
        horizon_days, _ = suggest_horizon(workspace, everyone)
    if horizon_days < 1:
        raise DataRangeError("The horizon is a number of days, 1 or more.")
    latest = last - timedelta(days=horizon_days)
    cutoff = cutoff or latest
    train_cutoff = cutoff - timedelta(days=horizon_days)
    if cutoff > latest or train_cutoff <= first:
        span = (last - first).days
        raise DataRangeError(
            f"A {horizon_days}-day horizon needs at least {2 * horizon_days + 1} days of data before the check can "
            f"end (training, then checking, each {horizon_days} days ahead); your data cover {span} days "
            f"({first:%d %b %Y} to {last:%d %b %Y}). Choose a horizon of at most {max(1, (span - 1) // 2)} days"
            + (f" or a check date by {latest:%d %b %Y}." if cutoff > latest else ".")
        )
    current = _features_at(workspace, last, horizon_days, with_models=True, table=everyone)
    notes: list[str] = []
    history = (train_cutoff - first).days
    if history < horizon_days:
        # Customers at training then have far shorter histories than at the check (CDNOW master at 240 days:
        # tenure at most 65 days in training, a median of 262 at the check), and a linear model extrapolates.
        notes.append(f"The models learn from purchases up to {train_cutoff:%d %b %Y}, only {history} days after your "
                     f"data begin: customers then had at most {history} days of history, against up to "
                     f"{(cutoff - first).days} at the check, so what they learn may not carry over (the check below "
                     "shows how well it did). A shorter horizon leaves more history to learn from.")
    # Past cutoffs only train and check: beyond _EXAMPLE_CUSTOMERS customers, a fixed sample of them does.
    share = min(1.0, _EXAMPLE_CUSTOMERS / max(len(current), 1))
    if share < 1:
        notes.append(f"Training and checking used a fixed sample of about {share:.0%} of customers (about "
                     f"{_EXAMPLE_CUSTOMERS:,}) to keep the page fast; every customer is scored.")
    try:
        # The two dates' examples are independent (SQL, then a BG/NBD fit each): read side by side.
        with ThreadPoolExecutor(max_workers=2) as pool:
            training = pool.submit(labelled_examples, workspace, train_cutoff, horizon_days, sample_share=share)
            test = labelled_examples(workspace, cutoff, horizon_days, sample_share=share)
            train = training.result()
        _check_trainable(train["churned"], f"the data up to {train_cutoff:%d %b %Y}")
        _check_trainable(test["churned"], f"the check at {cutoff:%d %b %Y}")
        numeric, categorical = _transaction_features(workspace, train)
        fit = _fit_and_compare(train[numeric + categorical], train["churned"], test[numeric + categorical],
                               test["churned"], numeric, categorical, seed, baseline=True)
    except DataRangeError as error:
        notes.append(f"{error} Customers are ranked by how overdue they are instead.")
        return _descriptive_result(current, horizon_days, cutoff, notes)
    fit.notes = notes + fit.notes
    result = ChurnResult(mode="transactions", horizon_days=horizon_days, cutoff=cutoff, train_rows=len(train),
                         test_rows=len(test), base_rate=float(test["churned"].mean()), models=fit.models,
                         best_model=None, predictive=False, scores=current, importance=fit.importance)
    return _scored(result, fit.use(model) if model is not None else fit, current)


def with_model(result: ChurnResult, model: str | None) -> ChurnResult:
    """The same customers scored with another of the trained models (``None``: the best on the check), in the
    time it takes to score them: nothing is trained again."""
    if result.fit is None or model == result.best_model or (model is None and result.best_model ==
                                                              result.fit.best_on_check):
        return result
    if model is not None and model not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}")
    return _scored(result, result.fit.use(model or result.fit.best_on_check), result.customers)


def _scored(result: ChurnResult, fit: _Fit, current: pd.DataFrame) -> ChurnResult:
    """``result`` with every current customer scored by ``fit``'s model in use (descriptive risk when it is not
    clearly better than chance and the baseline), its curves, importance and notes."""
    notes = list(fit.notes)
    if fit.best != fit.best_on_check:
        notes.append(f"Scored with {MODEL_NAMES[fit.best]}, your choice (not the best on the check).")
    if fit.predictive:
        risk = pd.Series(fit.fitted[fit.best].predict_proba(current[fit.columns])[:, 1], index=current.index)
    else:
        notes.append("On this data, who leaves cannot be predicted better than chance"
                     + (" or than days since the last purchase alone" if fit.models[fit.best]["roc_auc_interval"][0] > 0.5
                        else "")
                     + "; the list is ranked by days since last purchase against the usual gap.")
        risk = descriptive_risk(current)
    return replace(result, best_model=fit.best, predictive=fit.predictive, importance=fit.importance,
                   curves=fit.curves, notes=notes, fit=fit,
                   scores=_scores(current, risk, fit.importance, predictive=fit.predictive))


def _scores(current: pd.DataFrame, risk: pd.Series, importance: pd.DataFrame, *, predictive: bool) -> pd.DataFrame:
    scores = current.copy()
    scores.insert(1, "risk", risk.to_numpy())
    scores.insert(2, "risk_band", risk_band(scores["risk"], predictive=predictive))
    scores.insert(3, "drivers", _drivers(current, importance, risk))
    return _riskiest_first(scores)


def _riskiest_first(scores: pd.DataFrame) -> pd.DataFrame:
    """Riskiest first; equal risks by customer id, so every run and every export lists them alike."""
    return scores.sort_values(["risk", "customer_id"], ascending=[False, True], ignore_index=True)


def _descriptive_result(current: pd.DataFrame, horizon_days: int, cutoff: date, notes: list[str]) -> ChurnResult:
    risk = descriptive_risk(current)
    importance = pd.DataFrame({"feature": ["recency_gap_ratio"], "importance": [1.0], "spread": [0.0]})
    return ChurnResult(mode="transactions", horizon_days=horizon_days, cutoff=cutoff, train_rows=0, test_rows=0,
                       base_rate=float("nan"), models={}, best_model=None, predictive=False,
                       scores=_scores(current, risk, importance, predictive=False), importance=importance,
                       notes=notes)


# --- labelled-table mode ----------------------------------------------------------------------------------------

_YES = {"1", "yes", "y", "true", "t", "churn", "churned", "left"}
_NO = {"0", "no", "n", "false", "f", "stayed", "active", "retained"}


def _binary_label(values: pd.Series, column: str) -> pd.Series:
    text = values.astype(str).str.strip().str.lower()
    levels = set(text.unique())
    if levels <= _YES | _NO and levels & _YES and levels & _NO:
        return text.isin(_YES).astype(int)
    if len(levels) == 2:
        raise SchemaError(f"Column '{column}' has two values ({', '.join(sorted(levels))}) but neither reads as "
                          "'left' (1, yes, true, churn): rename them, or pick the churn column.")
    shown = ", ".join(sorted(levels)[:5])
    raise SchemaError(f"Column '{column}' is not a yes/no churn label: it has {len(levels)} values ({shown}...). "
                      "Pick the column that says whether the customer left.")


def _numeric_or_none(values: pd.Series) -> pd.Series | None:
    """The column as numbers when nearly all its filled cells are numbers (blank strings count as missing)."""
    text = values.astype(str).str.strip().replace({"": None, "nan": None, "None": None})
    numbers = pd.to_numeric(text, errors="coerce")
    filled = text.notna().sum()
    return numbers if filled and numbers.notna().sum() >= 0.95 * filled else None


def read_customer_table(data: bytes, *, name: str) -> pd.DataFrame:
    """A labelled customer table from a file's bytes (CSV with any separator, .gz, .xlsx or Parquet, chosen by
    ``name``'s ending), every column as text, blanks kept as empty strings."""
    import gzip
    import io

    from clm_core.errors import InputFileError

    lowered = name.lower()
    try:
        if lowered.endswith(".xlsx"):
            return pd.read_excel(io.BytesIO(data), dtype=str, keep_default_na=False)
        if lowered.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(data)).astype(str)
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, sep=None, engine="python")
    except Exception as error:  # pandas raises many types for a file it cannot parse
        raise InputFileError(f"The customer table could not be read ({type(error).__name__}). Save it as CSV or "
                             ".xlsx with one row per customer and a header row.") from None


def churn_from_table(table: pd.DataFrame, label: str, *, features: list[str] | None = None,
                     id_column: str | None = None, test_share: float = 0.25, seed: int = 0) -> ChurnResult:
    """Train and check on a labelled customer table (stratified random split), score every row."""
    if label not in table:
        raise SchemaError(f"Required column {label} missing from the table.")
    y = _binary_label(table[label], label)
    if id_column is None:
        unique = [c for c in table.columns if c != label and table[c].astype(str).nunique() == len(table)
                  and _numeric_or_none(table[c]) is None]
        id_column = unique[0] if unique else None
    candidates = features or [c for c in table.columns if c not in (label, id_column)]
    numeric, categorical, frame = [], [], pd.DataFrame(index=table.index)
    for column in candidates:
        if column not in table:
            raise SchemaError(f"Required column {column} missing from the table.")
        numbers = _numeric_or_none(table[column])
        if numbers is not None:
            frame[column], numeric = numbers, numeric + [column]
        elif table[column].nunique() <= 50:
            frame[column], categorical = table[column].astype(str), categorical + [column]
    if not numeric and not categorical:
        raise DataRangeError("None of the chosen columns can be used as a feature (text with too many values).")
    _check_trainable(y, "this table")
    train, test, y_train, y_test = train_test_split(frame, y, test_size=test_share, stratify=y, random_state=seed)
    fit = _fit_and_compare(train, y_train, test, y_test, numeric, categorical, seed, baseline=False)
    notes = list(fit.notes)
    if not fit.predictive:
        notes.append("On this data, who leaves cannot be predicted better than chance; treat the ranking as noise.")
    risk = pd.Series(fit.fitted[fit.best].predict_proba(frame)[:, 1], index=frame.index)
    scores = pd.DataFrame({"customer_id": table[id_column].astype(str) if id_column else table.index.astype(str)})
    scores["risk"] = risk
    scores["risk_band"] = risk_band(risk, predictive=True)
    scores["drivers"] = _table_drivers(frame, numeric, categorical, fit.importance, risk, train, y_train).to_numpy()
    scores = pd.concat([scores, table.drop(columns=[c for c in (id_column,) if c])], axis=1)
    return ChurnResult(mode="table", horizon_days=None, cutoff=None, train_rows=len(train), test_rows=len(test),
                       base_rate=float(y_test.mean()), models=fit.models, best_model=fit.best,
                       predictive=fit.predictive, scores=_riskiest_first(scores),
                       importance=fit.importance, curves=fit.curves, notes=notes)


# --- campaign ---------------------------------------------------------------------------------------------------

def chance_of_leaving(risk: pd.Series | float, *, predictive: bool) -> pd.Series | float:
    """Risk as a share between 0 and 1 for the campaign's arithmetic: the probability itself, or for descriptive
    risk (days since last purchase over the usual gap, r) r / (1 + r): one half when exactly as late as usual."""
    return risk if predictive else risk / (1 + risk)


def campaign_curve(risk: pd.Series, value: pd.Series, *, cost_per_contact: float, success_rate: float) -> pd.DataFrame:
    """Net benefit of contacting everyone at or above each risk threshold.

    A contacted customer with risk ``p`` and value ``v`` brings ``success_rate * p * v - cost_per_contact``
    (value at risk saved, less the contact's cost); the benefit of a threshold is the sum over the customers at
    or above it. Returns ``threshold``, ``customers``, ``value_at_risk`` and ``net_benefit`` by descending risk.
    """
    order = np.argsort(-risk.to_numpy(), kind="stable")
    p = risk.to_numpy()[order]
    at_risk = p * np.nan_to_num(value.to_numpy()[order])
    gain = success_rate * at_risk - cost_per_contact
    return pd.DataFrame({"threshold": p, "customers": np.arange(1, len(p) + 1),
                         "value_at_risk": np.cumsum(at_risk), "net_benefit": np.cumsum(gain)})


def campaign_shortfall(curve: pd.DataFrame, *, cost_per_contact: float, success_rate: float) -> str | None:
    """In words, why no list of the riskiest customers pays for itself on ``curve`` (:func:`campaign_curve`), and
    what to try; None when one does (its best net benefit is above 0)."""
    if curve.empty or curve["net_benefit"].max() > 0:
        return None
    saved = success_rate * pd.Series(np.diff(curve["value_at_risk"].to_numpy(), prepend=0.0))  # per contact
    start = (f"At {cost_per_contact:,.2f} per contact and a {success_rate:.0%} success rate, no list of the riskiest "
             "customers pays for itself")
    if saved.max() > cost_per_contact:
        worth = int((saved > cost_per_contact).sum())
        return (f"{start}: the riskiest are worth too little to save. {worth:,} customers further down the list "
                f"would each be worth a contact on their own (up to {saved.max():,.2f} expected saved: success rate x "
                "risk x value); keep them with the minimum CLV filter.")
    return (f"{start}: no single contact is expected to save more than it costs (at most {saved.max():,.2f}: "
            "success rate x risk x value). A lower cost per contact or a higher success rate shows where a campaign "
            "starts to pay.")


# --- the at-risk list -------------------------------------------------------------------------------------------

AT_RISK_COLUMNS = ["customer_id", "risk", "risk_band", "drivers", "last_purchase", "days_since_last_purchase",
                   "orders", "revenue", "clv", "value_at_risk"]


def customer_value(workspace: Engine, *, horizon_months: int = 12,
                   predictions: Callable[[], pd.DataFrame] | None = None) -> tuple[pd.Series | None, str]:
    """Each customer's value for the campaign: 12-month CLV (BG/NBD with Gamma-Gamma, 1 % a month discount) when
    the data have amounts and the models fit; else None. Returns the values by customer id and how they were
    made, in words. ``predictions``: gives those CLV predictions (``customer_id``, ``clv``) when the caller keeps
    them already (the app's shared fit); else they are fitted here."""
    from clm_core import clv
    from clm_core.errors import ClmError

    if not workspace.dataset.has_money:
        return None, "no amount column, so no customer value"
    try:
        if predictions is not None:
            scores = predictions()
        else:
            summary = clv.customer_summary(workspace, unit="week")
            fitted = clv.fit_clv_models(summary, purchase_model="bgnbd", with_spend=True)
            scores = clv.predict_customers(summary, fitted, horizon_months=horizon_months,
                                           monthly_discount_rate=0.01)
    except ClmError as error:
        return None, f"CLV could not be computed ({error})"
    return scores.set_index("customer_id")["clv"], f"{horizon_months}-month CLV (BG/NBD and Gamma-Gamma)"


def at_risk_list(workspace: Engine | None, result: ChurnResult, *, top: int | None = None,
                 min_risk: float | None = None, value: pd.Series | None = None) -> pd.DataFrame:
    """The campaign list: customers by descending risk (the first ``top``, or those at ``min_risk`` or above),
    with what a marketer needs to act and the contact and segment columns of the upload."""
    scores = result.scores
    if min_risk is not None:
        scores = scores[scores["risk"] >= min_risk]
    if top is not None:
        scores = scores.head(top)
    if result.mode == "table":
        return scores.reset_index(drop=True)
    table = pd.DataFrame({"customer_id": scores["customer_id"], "risk": scores["risk"],
                          "risk_band": scores["risk_band"], "drivers": scores["drivers"],
                          "last_purchase": scores["last_purchase"].dt.date,
                          "days_since_last_purchase": scores["recency_days"].astype("Int64"),
                          "orders": scores["orders"]})
    if workspace is not None and workspace.dataset.has_money:
        table["revenue"] = scores["revenue"]
        if value is not None:
            table["clv"] = scores["customer_id"].map(value).astype(float)
            table["value_at_risk"] = table["risk"] * table["clv"] if result.predictive else np.nan
    labels = [*workspace.dataset.contact_columns.values(), *workspace.dataset.segment_columns.values()] \
        if workspace is not None else []
    extra = scores[[label for label in labels if label in scores]]
    return pd.concat([table.iloc[:, :1], extra, table.iloc[:, 1:]], axis=1).reset_index(drop=True)
