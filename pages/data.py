"""Data page: load the demo or an upload, map columns, see the validation report and a summary."""

import hashlib
from dataclasses import replace
from pathlib import Path

import streamlit as st

import app_state
from clm_core import schema
from clm_core.charts import revenue_by_month_figure
from clm_core.errors import ClmError
from clm_core.export import to_csv_bytes
from clm_core.ingest import FLAG_REASONS, REJECT_REASONS, IngestOptions, duplicates_are_export_errors
from clm_core.mapping import DATE_FORMATS, NUMBER_STYLES
from clm_core.reader import excel_sheet_names

NONE = "(not in file)"


def _header_row_input(key: str, detected: int) -> None:
    st.number_input(
        "Header row", min_value=1, value=detected, step=1, key=key,
        help=f"The row of the sheet that holds the column names; we detected row {detected}. "
             "Rows above it (a title, notes) are skipped.",
    )


st.title("Data")
st.write(
    "Load the demo shop or upload your own transactions: one row per order line (or per order) "
    "with at least a customer and a date. Every later page uses the data loaded here."
)
ws = app_state.workspace()

# --- load -------------------------------------------------------------------
left, right = st.columns([1, 2])
with left:
    st.subheader("Demo data")
    st.write("A generated gift shop: 3,000 customers, two years of orders, products and countries.")
    if st.button("Load demo data", key="data_load_demo", type="secondary"):
        with st.spinner("Loading the demo data..."):
            app_state.load_demo()
        st.success("Demo data loaded.")
with right:
    st.subheader("Your file")
    upload = st.file_uploader(
        "Upload transactions",
        type=["csv", "txt", "tsv", "gz", "zip", "xlsx", "parquet"],
        key="data_upload",
        help="CSV with any separator (also .gz or .zip), Excel .xlsx or Parquet, up to 1 GB. "
             "Encodings UTF-8, Latin-1 and Windows-1252 are detected.",
    )

if upload is not None and st.session_state.get("data_upload_id") != upload.file_id:
    path = app_state.save_upload(upload.name, upload.getbuffer())
    st.session_state["data_upload_id"] = upload.file_id
    st.session_state["data_upload_path"] = str(path)
    st.session_state.pop("data_sheets", None)

staged = None
if upload is not None:
    path = Path(st.session_state["data_upload_path"])
    sheets = header_key = None
    try:
        if path.suffix == ".xlsx":
            sheet_names = excel_sheet_names(path)
            sheets = st.multiselect(
                "Sheets to load", sheet_names, default=sheet_names[:1], key="data_sheets",
                help="Choose one sheet, or several with the same columns to stack them into one table.",
            )
            if not sheets:
                st.warning("Choose at least one sheet.")
                st.stop()
            # One header row choice per file and set of sheets: other sheets get their own detection.
            choice = repr((upload.file_id, sheets)).encode()
            header_key = "data_header_row_" + hashlib.sha256(choice).hexdigest()[:12]
        staged = app_state.stage_upload(path, upload.name, sheets=sheets,
                                        header_row=st.session_state.get(header_key) if header_key else None)
    except ClmError as error:
        st.error(app_state.plain(error))
    detected = header_key and app_state.detected_header_row(path, sheets)
    if detected:  # shown after an error too, so a header row that does not work can be changed back
        _header_row_input(header_key, detected)
    if staged is None:
        st.stop()

# --- map --------------------------------------------------------------------
if staged is not None:
    st.subheader("Columns")
    st.caption(f"{app_state.plain(staged.name)}: {staged.info.describe()}, {staged.rows:,} rows. "
               "We guessed the columns below; check them and change any that are wrong.")
    with st.expander("First rows of the file", expanded=False):
        st.dataframe(staged.sample.head(20), hide_index=True)
    guess = staged.guess
    prefix = f"data_map_{staged.digest[:12]}"
    options = [NONE] + staged.columns
    fields: dict[str, str] = {}
    columns = st.columns(4)
    for index, field in enumerate(schema.FIELDS):
        default = guess.fields.get(field.name)
        with columns[index % 4]:
            choice = st.selectbox(
                field.label + (" *" if field.required else ""),
                options,
                index=options.index(default) if default in options else 0,
                key=f"{prefix}_{field.name}",
                help=field.help,
            )
        if choice != NONE:
            fields[field.name] = choice
    first, second = st.columns(2)
    with first:
        date_keys = list(DATE_FORMATS)
        date_format = st.selectbox(
            "How dates are written", date_keys, index=date_keys.index(guess.date_format),
            format_func=DATE_FORMATS.get, key=f"{prefix}_date_format",
            help="We read this from the data. For dates like 03/04/2011, confirm whether the day or the month comes first.",
        )
        if guess.fields.get(schema.ORDER_TS) in staged.sample.columns and guess.date_format in ("mdy", "dmy"):
            from clm_core.mapping import detect_date_format

            _, ambiguous = detect_date_format(staged.sample[guess.fields[schema.ORDER_TS]])
            if ambiguous:
                st.warning("No date in the first rows tells day from month. Please confirm the date format above.")
        number_keys = list(NUMBER_STYLES)
        number_style = st.selectbox(
            "How numbers are written", number_keys, index=number_keys.index(guess.number_style),
            format_func=NUMBER_STYLES.get, key=f"{prefix}_number_style",
            help="Currency signs and thousands separators are removed either way.",
        )
    used = set(fields.values())
    free = [column for column in staged.columns if column not in used]
    # A customer known by name may also be a contact column (the name on a campaign list).
    contact_options = [column for column in staged.columns
                       if column not in used or column == fields.get(schema.CUSTOMER_ID)]
    with second:
        segments = st.multiselect(
            "Segment attributes", free, default=[c for c in guess.segments if c in free], key=f"{prefix}_segments",
            help="Columns that describe a customer (country, channel, store) to split and filter analyses by.",
        )
        contacts = st.multiselect(
            "Contact columns", contact_options, default=[c for c in guess.contacts if c in contact_options],
            key=f"{prefix}_contacts",
            help="E-mail, phone or name: carried into exported customer lists for campaigns.",
        )
        drop_returns = st.checkbox(
            "Drop returns and cancellations", key=f"{prefix}_drop_returns",
            help="By default returns (negative quantities or amounts, invoices starting with C) are kept "
                 "and subtracted from revenue.",
        )
        drop_zero = st.checkbox(
            "Drop zero-price lines", key=f"{prefix}_drop_zero",
            help="By default free items are kept: they still show the customer bought.",
        )
        duplicates_are_errors, evidence = duplicates_are_export_errors(replace(guess, fields=fields), staged.columns)
        suggested_keep = not duplicates_are_errors
        # The suggestion follows the mapping (an order column changes it), so the box is keyed by the suggestion.
        keep_duplicates = st.checkbox(
            "Keep identical rows as separate purchases", value=suggested_keep,
            key=f"{prefix}_keep_duplicates_{'keep' if suggested_keep else 'reject'}",
            help="A row identical in every column to an earlier one is either a double export (rejected) or a "
                 "real repeat purchase, like the same item bought twice on one day (kept). We suggest one from "
                 "your file; change it if you know better.",
        )
        st.caption(f"Suggested for identical rows: {'keep' if suggested_keep else 'reject'}, because "
                   f"{app_state.plain(evidence)}.")
    mapping = replace(guess, fields=fields, segments=segments, contacts=contacts,
                      date_format=date_format, number_style=number_style)
    if not mapping.has_money:
        st.info("No amount or unit price column is mapped. You will get cohort retention, churn risk (from "
                "recency and frequency) and purchase predictions; revenue, order value and CLV need a money "
                "column.")
    if st.button("Validate and load", type="primary", key="data_build"):
        try:
            with st.spinner("Validating rows and building the dataset..."):
                # Left to the file's evidence unless the user changed the suggestion.
                app_state.build_upload(staged, mapping, IngestOptions(
                    drop_returns=drop_returns, drop_zero_price=drop_zero,
                    keep_duplicates=None if keep_duplicates == suggested_keep else keep_duplicates))
            st.success(f"Loaded {app_state.plain(staged.name)}.")
        except ClmError as error:
            st.error(app_state.plain(error))
            st.stop()

# --- report and summary -------------------------------------------------------
if not ws.has_dataset:
    st.info("Load the demo data or upload a file to begin.")
    st.stop()

dataset = ws.dataset
report = dataset.report
st.divider()
st.header(app_state.plain(dataset.name))
if dataset.source:
    st.caption(f"Read as {app_state.plain(dataset.source)}.")

st.subheader("Validation report")
a, b, c = st.columns(3)
a.metric("Rows in the file", f"{report.rows_in:,}")
b.metric("Rows kept", f"{report.rows_kept:,}")
c.metric("Rows rejected", f"{report.total_rejected:,}")
lines = [{"What": REJECT_REASONS[reason], "Rows": count, "Outcome": "rejected"}
         for reason, count in report.rows_rejected.items() if count]
lines += [{"What": FLAG_REASONS[flag], "Rows": count, "Outcome": "kept"}
          for flag, count in report.rows_flagged.items() if count]
if lines:
    st.dataframe(lines, hide_index=True)
else:
    st.success("Every row passed validation.")
if report.duplicate_reason:
    verb = "kept as separate purchases" if report.duplicates_kept else "rejected as double exports"
    identical = report.rows_flagged["duplicate"] if report.duplicates_kept else report.rows_rejected["duplicate"]
    st.caption(f"Identical rows: {identical:,} {verb}. {app_state.plain(report.duplicate_reason)}")
for note in report.notes:
    st.caption(app_state.plain(note))
if report.total_rejected:
    for reason, count in report.rows_rejected.items():
        if count:
            with st.expander(f"Examples: {REJECT_REASONS[reason].lower()} ({count:,} rows)"):
                st.dataframe(ws.rejected_rows(reason, limit=5), hide_index=True)
    st.download_button(
        "Download all rejected rows (CSV)",
        data=to_csv_bytes(ws.rejected_rows()),
        file_name="rejected_rows.csv",
        mime="text/csv",
        key="data_download_rejected",
        help="Every rejected row as it was in your file, with its row number and the reason.",
    )

st.subheader("Summary")
with st.spinner("Summarising..."):
    summary = app_state.cached_summary(dataset.fingerprint, ws)
    monthly = app_state.cached_revenue_by_month(dataset.fingerprint, ws)
row1 = st.columns(4)
row1[0].metric("Customers", f"{summary.customers:,}")
row1[1].metric("Orders", f"{summary.orders:,}", help="Distinct orders that are purchases (returns not counted).")
row1[2].metric("Net revenue", app_state.money(summary.net_revenue),
               help="Purchases minus returns, in the currency of your file.")
row1[3].metric("Average order value", app_state.money(summary.average_order_value, 2),
               help="Purchase revenue before returns divided by orders.")
row2 = st.columns(4)
row2[0].metric("First order", summary.first_date.strftime("%d %b %Y"))
row2[1].metric("Last order", summary.last_date.strftime("%d %b %Y"))
row2[2].metric("Repeat customers", f"{summary.repeat_customer_rate:.1%}",
               help="Share of buying customers with two or more orders.")
row2[3].metric("Orders per customer", f"{summary.orders_per_customer:.2f}")
st.plotly_chart(revenue_by_month_figure(monthly, has_money=dataset.has_money, first_date=summary.first_date,
                                        last_date=summary.last_date), key="data_revenue_chart")
st.subheader("Cleaned table (first 100 rows)")
st.dataframe(ws.query("preview", limit=100), hide_index=True)
