"""Real export headers and the mapping a careful person would choose for each (issue #12, "Guesses").

Each entry is the header exactly as the export writes it (source in the comment), one realistic row, and the
expected canonical fields. Rules a careful person follows here: the customer is the most stable id the file has
(a customer id, else an e-mail, else a customer or company name); money is the line's own amount when the file has
one, else quantity x unit price; per-order totals in a line-level file are not line amounts.

Run ``python3 tests/data/export_gallery.py [path/to/mapping.py]`` from the repository root to print the score of
that mapping module (default: clm_core/mapping.py).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExportSample", "GALLERY"]


@dataclass(frozen=True)
class ExportSample:
    name: str
    header: list[str]
    row: list[str]
    expected: dict[str, str]


def _csv(text: str) -> list[str]:
    return text.split(",")


GALLERY: list[ExportSample] = [
    # Kaggle "Sample Sales Data" (sales_data_sample.csv), header as given in issue #12.
    ExportSample(
        "Kaggle sample sales",
        _csv("ORDERNUMBER,QUANTITYORDERED,PRICEEACH,ORDERLINENUMBER,SALES,ORDERDATE,STATUS,QTR_ID,MONTH_ID,YEAR_ID,"
             "PRODUCTLINE,MSRP,PRODUCTCODE,CUSTOMERNAME,PHONE,ADDRESSLINE1,ADDRESSLINE2,CITY,STATE,POSTALCODE,"
             "COUNTRY,TERRITORY,CONTACTLASTNAME,CONTACTFIRSTNAME,DEALSIZE"),
        _csv("10107,30,95.7,2,2871,2/24/2003 0:00,Shipped,1,2,2003,Motorcycles,95,S10_1678,Land of Toys Inc.,"
             "2125557818,897 Long Airport Avenue,,NYC,NY,10022,USA,NA,Yu,Kwai,Small"),
        {"customer_id": "CUSTOMERNAME", "order_ts": "ORDERDATE", "order_id": "ORDERNUMBER", "amount": "SALES",
         "quantity": "QUANTITYORDERED", "unit_price": "PRICEEACH", "product_id": "PRODUCTCODE"},
    ),
    # UCI Online Retail (the file in ../shared/data/online_retail.csv.gz).
    ExportSample(
        "UCI Online Retail",
        _csv("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"),
        _csv("536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom"),
        {"customer_id": "CustomerID", "order_ts": "InvoiceDate", "order_id": "InvoiceNo", "quantity": "Quantity",
         "unit_price": "UnitPrice", "product_id": "StockCode", "product_name": "Description"},
    ),
    # UCI Online Retail II (online_retail_II.xlsx), UCI repository page, dataset 502.
    ExportSample(
        "UCI Online Retail II",
        ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"],
        _csv("489434,85048,15CM CHRISTMAS GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085,United Kingdom"),
        {"customer_id": "Customer ID", "order_ts": "InvoiceDate", "order_id": "Invoice", "quantity": "Quantity",
         "unit_price": "Price", "product_id": "StockCode", "product_name": "Description"},
    ),
    # CDNOW master, as shipped in ../shared/data/cdnow_master.txt.gz (whitespace separated, with a header).
    ExportSample(
        "CDNOW master",
        ["customer_id", "date", "number_of_cds", "dollar_value"],
        ["00001", "19970101", "1", "11.77"],
        {"customer_id": "customer_id", "order_ts": "date", "quantity": "number_of_cds", "amount": "dollar_value"},
    ),
    # Kaggle "Groceries dataset" (Groceries_dataset.csv), header as given in issue #12.
    ExportSample(
        "Kaggle groceries basket",
        ["Member_number", "Date", "itemDescription"],
        ["1808", "21-07-2015", "tropical fruit"],
        {"customer_id": "Member_number", "order_ts": "Date", "product_name": "itemDescription"},
    ),
    # Kaggle "Superstore" (Sample - Superstore.csv); header seen in many public repositories, e.g. a
    # SQLAlchemy model comment found with find_string "Row ID,Order ID,Order Date,Ship Date,Ship Mode".
    ExportSample(
        "Kaggle Superstore",
        _csv("Row ID,Order ID,Order Date,Ship Date,Ship Mode,Customer ID,Customer Name,Segment,Country,City,State,"
             "Postal Code,Region,Product ID,Category,Sub-Category,Product Name,Sales,Quantity,Discount,Profit"),
        _csv("1,CA-2016-152156,11/8/2016,11/11/2016,Second Class,CG-12520,Claire Gute,Consumer,United States,"
             "Henderson,Kentucky,42420,South,FUR-BO-10001798,Furniture,Bookcases,Bush Somerset Collection Bookcase,"
             "261.96,2,0,41.9136"),
        {"customer_id": "Customer ID", "order_ts": "Order Date", "order_id": "Order ID", "amount": "Sales",
         "quantity": "Quantity", "product_id": "Product ID", "product_name": "Product Name"},
    ),
    # Kaggle "Retail Transaction Data" (Retail_Data_Transactions.csv); header found with find_string in public
    # code (e.g. a Scala test reading dirty-retail-data-sample.csv).
    ExportSample(
        "Kaggle retail transactions",
        ["customer_id", "trans_date", "tran_amount"],
        ["CS5295", "11-Feb-13", "35"],
        {"customer_id": "customer_id", "order_ts": "trans_date", "amount": "tran_amount"},
    ),
    # Kaggle Olist "olist_orders_dataset.csv" (no money column); header found with find_string in public code.
    ExportSample(
        "Kaggle Olist orders",
        _csv("order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at,"
             "order_delivered_carrier_date,order_delivered_customer_date,order_estimated_delivery_date"),
        _csv("e481f51cbdc54678b7cc49136f2d6af7,9ef432eb6251297304e76186b10a928d,delivered,2017-10-02 10:56:33,"
             "2017-10-02 11:07:15,2017-10-04 19:55:00,2017-10-10 21:25:13,2017-10-18 00:00:00"),
        {"customer_id": "customer_id", "order_ts": "order_purchase_timestamp", "order_id": "order_id"},
    ),
    # Shopify admin "Export orders" CSV; header from the public repository jadwro/allegro_csv_parser,
    # src/Shopify/types/ShopifyOrderTypeCSV.ts (ShopifyHeaderMap), one row per line item.
    ExportSample(
        "Shopify orders",
        _csv("Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,Currency,"
             "Subtotal,Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,Created at,"
             "Lineitem quantity,Lineitem name,Lineitem price,Lineitem compare at price,Lineitem sku,"
             "Lineitem requires shipping,Lineitem taxable,Lineitem fulfillment status,Billing Name,Billing Street,"
             "Billing Address1,Billing Address2,Billing Company,Billing City,Billing Zip,Billing Province,"
             "Billing Country,Billing Phone,Shipping Name,Shipping Street,Shipping Address1,Shipping Address2,"
             "Shipping Company,Shipping City,Shipping Zip,Shipping Province,Shipping Country,Shipping Phone,Notes,"
             "Note Attributes,Cancelled at,Payment Method,Payment Reference,Refunded Amount,Vendor,"
             "Outstanding Balance,Employee,Location,Device ID,Id,Tags,Risk Level,Source,Lineitem discount,"
             "Tax 1 Name,Tax 1 Value,Tax 2 Name,Tax 2 Value,Tax 3 Name,Tax 3 Value,Tax 4 Name,Tax 4 Value,"
             "Tax 5 Name,Tax 5 Value,Phone,Receipt Number,Duties,Billing Province Name,Shipping Province Name,"
             "Payment ID,Payment Terms Name,Next Payment Due At,Payment References"),
        _csv("#1001,ann@example.com,paid,2023-01-05 14:32:10 -0500,fulfilled,2023-01-06 09:00:00 -0500,yes,USD,"
             "20.00,5.00,0.00,25.00,,0.00,Standard,2023-01-05 14:30:00 -0500,2,Mug,10.00,,MUG-1,true,true,"
             "fulfilled,Ann Lee,1 Main St,1 Main St,,,Springfield,12345,IL,US,+1 555 0100,Ann Lee,1 Main St,"
             "1 Main St,,,Springfield,12345,IL,US,+1 555 0100,,,,Shopify Payments,c1.1,0.00,Acme,0.00,,,,"
             "4211111111,,Low,web,0.00,,,,,,,,,,,,,,Illinois,Illinois,c1.1,,,c1.1"),
        {"customer_id": "Email", "order_ts": "Created at", "order_id": "Name", "quantity": "Lineitem quantity",
         "unit_price": "Lineitem price", "product_id": "Lineitem sku", "product_name": "Lineitem name"},
    ),
    # WooCommerce "Order Import Export" (WebToffee) order CSV; column list from woocommerce.com/document/
    # import-and-export-of-woocommerce-orders/ (one row per order; first columns through the billing name).
    ExportSample(
        "WooCommerce orders (Import Export Suite)",
        _csv("order_id,order_number,order_date,paid_date,status,shipping_total,shipping_tax_total,fee_total,"
             "fee_tax_total,tax_total,cart_discount,order_discount,discount_total,order_total,order_subtotal,"
             "order_currency,payment_method,payment_method_title,transaction_id,customer_ip_address,"
             "customer_user_agent,shipping_method,customer_id,customer_user,customer_email,billing_first_name,"
             "billing_last_name"),
        _csv("4993,4993,2016-09-06 06:29:00,2016-09-06 06:29:00,completed,0,0,0,0,0,0,0,0,30,30,USD,paypal,PayPal,"
             "9XK12345,201.73.89.201,Mozilla/5.0,Free Shipping,17,17,ann@example.com,Ann,Lee"),
        {"customer_id": "customer_id", "order_ts": "order_date", "order_id": "order_id", "amount": "order_total"},
    ),
    # WooCommerce "Customer/Order CSV Export" (SkyVerge) legacy import format; header from pastebin.com/GyL9anNk.
    ExportSample(
        "WooCommerce orders (Customer/Order CSV Export)",
        _csv("order_id,order_number_formatted,order_number,date,status,order_shipping,order_shipping_tax,order_fees,"
             "order_fee_tax,order_tax,cart_discount,order_discount,order_total,payment_method,shipping_method,"
             "customer_user,billing_first_name,billing_last_name,billing_email,billing_phone,billing_address_1,"
             "billing_address_2,billing_postcode,billing_city,billing_state,billing_country,billing_company,"
             "shipping_first_name,shipping_last_name,shipping_address_1,shipping_address_2,shipping_postcode,"
             "shipping_city,shipping_state,shipping_country,shipping_company,customer_note,order_item_1,"
             "order_item_2,download_permissions_granted,order_notes,shipping_method_1,shipping_cost_1"),
        _csv("4993,4993,,5/31/2016 0:37,printed,0,0,0,0,0,0,,30,paypal,Free Shipping,0,Cherlynn,Harle,"
             "ch@example.com,6029997186,7140 W. Turquoise Ave.,,85345,Peoria,AZ,US,,Cherlynn,Harle,"
             "7140 W. Turquoise Ave.,,85345,Peoria,AZ,US,,W53387093,product_id:4959|1|30|size: Medium,,1,"
             "exported,method:Free Shipping|total:0.00,0"),
        # customer_user is the shop account number, 0 for every guest: the e-mail is the stable customer key.
        {"customer_id": "billing_email", "order_ts": "date", "order_id": "order_id", "amount": "order_total"},
    ),
    # Magento 2 admin Sales > Orders grid, Export to CSV with the default columns; column names from
    # docs.magento.com/user-guide/sales/orders-workspace.html. No customer id or e-mail by default.
    ExportSample(
        "Magento order grid",
        ["ID", "Purchase Point", "Purchase Date", "Bill-to Name", "Ship-to Name", "Grand Total (Base)",
         "Grand Total (Purchased)", "Status"],
        ["000000123", "Main Website Main Website Store Default Store View", "Jan 5, 2023 2:30:00 PM", "Ann Lee",
         "Ann Lee", "$25.00", "$25.00", "Complete"],
        {"customer_id": "Bill-to Name", "order_ts": "Purchase Date", "order_id": "ID",
         "amount": "Grand Total (Base)"},
    ),
    # Square Dashboard Reports > Item Sales > Export "Item Detail CSV"; header from the public repository
    # lunhsiangyuan/VannaAi_sql, db_schema.md (a table loaded from that export).
    ExportSample(
        "Square item detail",
        _csv("Date,Time,Time Zone,Category,Item,Qty,Price Point Name,SKU,Modifiers Applied,Gross Sales,Discounts,"
             "Net Sales,Tax,Transaction ID,Payment ID,Device Name,Notes,Details,Event Type,Location,Dining Option,"
             "Customer ID,Customer Name,Customer Reference ID,Unit,Count,GTIN,Itemization Type,Fulfillment Note,"
             "Channel,Token"),
        _csv("2023-01-05,14:30:00,Pacific Time (US & Canada),Coffee,Latte,2,Regular,LAT-12,,$9.00,$0.00,$9.00,"
             "$0.81,tx81Jd,pay71Jd,Counter,,link,Payment,Main St,For Here,CUST7HQ,Ann Lee,,ea,1,,Physical Item,,"
             "Point of Sale,tok81"),
        {"customer_id": "Customer ID", "order_ts": "Date", "order_id": "Transaction ID", "amount": "Net Sales",
         "quantity": "Qty", "product_id": "SKU", "product_name": "Item"},
    ),
    # Stripe Dashboard Payments > Export (unified payments CSV); header from a public donation importer
    # (StripeTransactionImporter.HEADER, found with find_string "Seller Message,Created (UTC)").
    ExportSample(
        "Stripe payments",
        _csv("id,Description,Seller Message,Created (UTC),Amount,Amount Refunded,Currency,Converted Amount,"
             "Converted Amount Refunded,Fee,Tax,Converted Currency,Mode,Status,Statement Descriptor,Customer ID,"
             "Customer Description,Customer Email,Captured,Card ID,Card Last4,Card Brand,Card Funding,"
             "Card Exp Month,Card Exp Year,Card Name,Card Address Line1,Card Address Line2,Card Address City,"
             "Card Address State,Card Address Country,Card Address Zip,Card Issue Country,Card Fingerprint,"
             "Card CVC Status,Card AVS Zip Status,Card AVS Line1 Status,Card Tokenization Method,Disputed Amount,"
             "Dispute Status,Dispute Reason,Dispute Date (UTC),Dispute Evidence Due (UTC),Invoice ID,"
             "Payment Source Type,Destination,Transfer,Interchange Costs,Merchant Service Charge,Transfer Group,"
             "PaymentIntent ID"),
        _csv("ch_3MqJk2,Subscription update,Payment complete.,2023-01-05 14:30,25.00,0.00,usd,25.00,0.00,1.03,0,"
             "usd,Live,Paid,ACME,cus_NbX1,Ann Lee,ann@example.com,true,card_1Mq,4242,Visa,credit,4,2026,Ann Lee,"
             "1 Main St,,Springfield,IL,US,62701,US,fp81,pass,pass,pass,,0,,,,,in_1Mq,card,,,0,0,,pi_3MqJk2"),
        {"customer_id": "Customer ID", "order_ts": "Created (UTC)", "order_id": "id", "amount": "Amount"},
    ),
    # Lightspeed Retail (S-Series, formerly ShopKeep) "Transactions by item" export; the first 22 columns as
    # listed in a public column map (table sk_transaction_items, "Raw data from Shopkeep transactions by item
    # export"); later columns of that export are left out here.
    ExportSample(
        "Lightspeed (ShopKeep) transactions by item",
        _csv("Time,Register Name/Number,Cashier Name,Operation Type,Store Code,UPC,Line Item,Department,Category,"
             "Supplier,Supplier Code,Cost,Price,Quantity,Modifiers,Subtotal,Discounts,Net Total,Tax,Total Due,"
             "Transaction ID,Customer ID"),
        _csv("2023-01-05 14:30:00,Register 1,Sam,Sale,ST1,012345678905,Latte,Coffee,Drinks,Roaster,R-1,1.10,4.50,"
             "2,,9.00,0.00,9.00,0.81,9.81,100234,5521"),
        {"customer_id": "Customer ID", "order_ts": "Time", "order_id": "Transaction ID", "amount": "Net Total",
         "quantity": "Quantity", "unit_price": "Price", "product_id": "UPC", "product_name": "Line Item"},
    ),
    # The generic three-column file the Data page asks for.
    ExportSample(
        "Generic minimal",
        ["customer_id", "order_date", "amount"],
        ["c1", "2021-01-05", "10.00"],
        {"customer_id": "customer_id", "order_ts": "order_date", "amount": "amount"},
    ),
]


def score(guess_mapping, gallery: list[ExportSample] = GALLERY) -> list[tuple[str, dict, dict]]:
    """Every sample whose guessed fields differ from the expected ones: (name, guessed, expected)."""
    import pandas as pd

    misses = []
    for sample in gallery:
        frame = pd.DataFrame([sample.row] * 20, columns=sample.header)
        fields = guess_mapping(frame).fields
        if fields != sample.expected:
            misses.append((sample.name, fields, sample.expected))
    return misses


if __name__ == "__main__":
    import importlib.util
    import sys

    path = sys.argv[1] if len(sys.argv) > 1 else "clm_core/mapping.py"
    spec = importlib.util.spec_from_file_location("mapping_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    misses = score(module.guess_mapping)
    print(f"{path}: {len(GALLERY) - len(misses)} of {len(GALLERY)} fully right")
    for name, guessed, expected in misses:
        wrong = {k: (guessed.get(k), expected.get(k)) for k in set(guessed) | set(expected)
                 if guessed.get(k) != expected.get(k)}
        print(f"  {name}: guessed vs expected {wrong}")
