#!/usr/bin/env python3
"""Generate the acme_hub example data: source files under data/ and seeds/.

Deterministic (fixed seed, Python 3 standard library only): running it twice gives
byte-identical files. Run from anywhere:

    python3 scripts/generate_data.py                  # rewrite data/ and seeds/
    python3 scripts/generate_data.py --out /tmp/acme  # write elsewhere
    python3 scripts/generate_data.py --omit-days 2025-11-10,2025-11-11
        # simulate a source outage: those days are missing from the new order
        # system's orders, order lines and payments files (rerun without the flag
        # and the "late" data arrives)

What it models: "Acme", an online coffee shop. History 2024-01-01 .. 2025-12-31.
- Until 2024-06-30 orders live in the legacy order system (export
  data/legacy/orders_export.csv: one row per order line, upper-case columns, amounts in
  cents, status codes, customer numbers like 'C000123', products by SKU, a few
  duplicated rows). The export runs until 2024-07-10: during the dual-write weeks the
  legacy system mirrored the new system's orders (same order ids, stale statuses), so
  those days exist in both systems.
- From 2024-07-01 (the cutover) orders live in the new system: data/orders/YYYY-MM.csv,
  data/order_lines/YYYY-MM.csv.
- Payments (all history, one payments provider): data/payments/YYYY-MM.csv; captures,
  partial invoice payments, refunds of cancelled orders and of returned lines
  (negative amounts), some invoices never paid.
- Customers: data/customers.csv, a CRM export with one row per customer version
  (a new row when a customer moves to another country or changes e-mail).
- Seeds: product_catalog.csv, product_prices.csv (net prices with valid_from /
  valid_to, exclusive), countries.csv.
Order amounts are always the list price valid on the order date (times quantity,
minus the line discount, plus shipping), so payments reconcile with the price list.
"""

import argparse
import csv
import datetime as dt
import math
import os
import random
import shutil
from decimal import ROUND_HALF_UP, Decimal

SEED = 20240101
HISTORY_START = dt.date(2024, 1, 1)
HISTORY_END = dt.date(2026, 1, 1)  # exclusive
CUTOVER = dt.date(2024, 7, 1)
LEGACY_EXPORT_END = dt.date(2024, 7, 11)  # exclusive: dual-write overlap 07-01..07-10
VAT = Decimal("0.2")
CENT = Decimal("0.01")
N_CUSTOMERS = 2400

COUNTRIES = [
    # code, name, region, weight
    ("DE", "Germany", "DACH", 30),
    ("AT", "Austria", "DACH", 6),
    ("CH", "Switzerland", "DACH", 3),
    ("FR", "France", "West", 14),
    ("BE", "Belgium", "West", 5),
    ("NL", "Netherlands", "West", 10),
    ("IE", "Ireland", "West", 2),
    ("GB", "United Kingdom", "West", 3),
    ("ES", "Spain", "South", 7),
    ("IT", "Italy", "South", 7),
    ("PT", "Portugal", "South", 2),
    ("PL", "Poland", "East", 5),
    ("CZ", "Czechia", "East", 2),
    ("SE", "Sweden", "North", 3),
    ("DK", "Denmark", "North", 2),
]

CATEGORIES = {
    # category: (sku code, price range, popularity, names)
    "coffee": ("COF", (7.9, 19.9), 5.0, [
        "Espresso Roma", "Crema Classica", "Ethiopia Yirgacheffe", "Colombia Huila",
        "Brazil Santos", "Guatemala Antigua", "Kenya AA", "Decaf Swiss Water",
        "House Blend", "Sumatra Mandheling", "Peru Organic", "Costa Rica Tarrazu"]),
    "tea": ("TEA", (4.9, 14.9), 2.5, [
        "Earl Grey", "Sencha", "Assam Breakfast", "Chai Spice", "Rooibos Vanilla",
        "Jasmine Pearls", "Peppermint"]),
    "equipment": ("EQP", (29.0, 249.0), 0.5, [
        "Hand Grinder", "Pour-Over Kettle", "French Press", "Moka Pot", "Espresso Tamper",
        "Burr Grinder", "Milk Frother", "AeroPress"]),
    "accessories": ("ACC", (4.9, 34.9), 1.5, [
        "Paper Filters", "Travel Mug", "Ceramic Cup Set", "Coffee Scale",
        "Cleaning Tablets", "Storage Canister", "Tasting Journal"]),
    "snacks": ("SNK", (2.9, 7.9), 2.0, [
        "Almond Biscotti", "Dark Chocolate", "Cantuccini", "Stroopwafels",
        "Salted Caramel Bar", "Oat Cookies"]),
}
# (category, name, launched_on, discontinued_on): launches and a discontinuation
LATE_PRODUCTS = {
    ("coffee", "Kenya AA"): (dt.date(2024, 9, 16), None),
    ("equipment", "AeroPress"): (dt.date(2025, 3, 3), None),
    ("snacks", "Oat Cookies"): (dt.date(2025, 11, 3), None),
    ("tea", "Peppermint"): (dt.date(2023, 1, 1), dt.date(2025, 7, 1)),
}
FIRST_NAMES = [
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas",
    "Karla", "Luca", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara",
    "Ugo", "Vera", "Wim", "Xenia", "Yann", "Zoe", "Lena", "Marco", "Sofia", "Tom"]
LAST_NAMES = [
    "Mueller", "Martin", "de Vries", "Rossi", "Garcia", "Nowak", "Svensson", "Dubois",
    "Schmidt", "Jansen", "Bianchi", "Lopez", "Kowalski", "Larsen", "Murphy", "Weber",
    "Peeters", "Silva", "Novak", "Fischer", "Bernard", "Costa", "Berg", "Keller"]


def money(x) -> Decimal:
    return Decimal(str(x)).quantize(CENT, rounding=ROUND_HALF_UP)


def shop_price(x: float) -> Decimal:
    """Round a price to the shop's style: x.x9 for small prices, whole .00 above 100."""
    if x >= 100:
        return Decimal(round(x)).quantize(CENT)
    return money(math.floor(x * 10 + 0.5) / 10 - 0.01)


def days(start: dt.date, end: dt.date):
    d = start
    while d < end:
        yield d
        d += dt.timedelta(days=1)


def poisson(rng: random.Random, lam: float) -> int:
    # Knuth; fine for the small rates here
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def fmt_ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


# ---------------------------------------------------------------- products, prices

def make_products(rng):
    products = []
    pid = 0
    for category, (code, (lo, hi), popularity, names) in CATEGORIES.items():
        for i, name in enumerate(names, start=1):
            pid += 1
            launched, discontinued = LATE_PRODUCTS.get((category, name), (dt.date(2023, 1, 1), None))
            products.append({
                "product_id": pid,
                "sku": f"ACM-{code}-{i:03d}",
                "name": name,
                "category": category,
                "launched_on": launched,
                "discontinued_on": discontinued,
                "base_price": rng.uniform(lo, hi),
                "popularity": popularity * rng.uniform(0.4, 1.6),
            })
    return products


def make_prices(rng, products):
    """Price history per product: list of (valid_from, valid_to or None, price)."""
    by_cat = {}
    for p in products:
        by_cat.setdefault(p["category"], []).append(p)
    summer_sale = set(rng.sample([p["product_id"] for p in products if p["launched_on"] < dt.date(2024, 7, 15)], 6))
    black_friday = set(rng.sample([p["product_id"] for p in products
                                   if p["discontinued_on"] is None and p["launched_on"] < dt.date(2025, 11, 1)], 10))
    equipment_cut = set(p["product_id"] for p in by_cat["equipment"][:4])
    history = {}
    for p in products:
        pid = p["product_id"]
        price = p["base_price"]
        points = [(p["launched_on"], shop_price(price))]

        def change(day, new_price):
            if p["launched_on"] <= day and (p["discontinued_on"] is None or day < p["discontinued_on"]):
                points.append((day, shop_price(new_price)))

        if p["category"] == "coffee":  # green coffee got dearer: mid-month change
            price *= 1.07
            change(dt.date(2024, 3, 15), price)
        if pid in summer_sale:
            change(dt.date(2024, 7, 15), price * 0.8)
            change(dt.date(2024, 8, 1), price)
        price *= rng.uniform(1.03, 1.05)  # yearly price increase
        change(dt.date(2025, 1, 1), price)
        if pid in equipment_cut:  # competitor pressure: mid-month cut
            price *= 0.9
            change(dt.date(2025, 5, 20), price)
        # The autumn repricing of 2025-10-01: every product gets a new list price.
        # (The "pricing bug in the last three months" story edits exactly these rows.)
        price *= rng.choice([0.95, 1.04, 1.06, 1.08])
        change(dt.date(2025, 10, 1), price)
        if pid in black_friday:
            change(dt.date(2025, 11, 28), price * 0.75)
            change(dt.date(2025, 12, 2), price)
        # collapse no-op changes (a rounded price equal to the previous one)
        merged = []
        for day, pr in sorted(points):
            if merged and merged[-1][1] == pr:
                continue
            merged.append((day, pr))
        segs = []
        for i, (day, pr) in enumerate(merged):
            nxt = merged[i + 1][0] if i + 1 < len(merged) else p["discontinued_on"]
            segs.append((day, nxt, pr))
        history[pid] = segs
    return history


def price_at(history, pid, day):
    for start, end, pr in history[pid]:
        if start <= day and (end is None or day < end):
            return pr
    return None


# ---------------------------------------------------------------- customers

def make_customers(rng):
    weights = [c[3] for c in COUNTRIES]
    codes = [c[0] for c in COUNTRIES]
    customers = []
    for cid in range(1, N_CUSTOMERS + 1):
        if rng.random() < 0.25:
            signup = dt.datetime(2023, 1, 1) + dt.timedelta(seconds=rng.randrange(365 * 86400))
        else:
            # more signups later in the history (the shop grows)
            frac = math.sqrt(rng.random())
            signup = dt.datetime(2024, 1, 1) + dt.timedelta(seconds=int(frac * (715 * 86400)))
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        country = rng.choices(codes, weights)[0]
        email = f"{first}.{last}.{cid}@example.com".lower().replace(" ", "")
        versions = [{"country": country, "email": email, "updated_at": signup}]
        moves = 2 if rng.random() < 0.012 else (1 if rng.random() < 0.08 else 0)
        t = signup
        for _ in range(moves):
            t = t + dt.timedelta(seconds=rng.randrange(30 * 86400, 400 * 86400))
            if t >= dt.datetime(2025, 12, 31):
                break
            new_country = rng.choice([c for c in codes if c != versions[-1]["country"]])
            versions.append({"country": new_country, "email": versions[-1]["email"], "updated_at": t})
        if rng.random() < 0.03:  # an e-mail change: a new version, same country
            t2 = signup + dt.timedelta(seconds=rng.randrange(10 * 86400, 600 * 86400))
            if t2 < dt.datetime(2025, 12, 31) and all(v["updated_at"] != t2 for v in versions):
                new_email = f"{first[0]}{last}{cid}@mail.example".lower().replace(" ", "")
                prev = max((v for v in versions if v["updated_at"] < t2), key=lambda v: v["updated_at"])
                versions.append({"country": prev["country"], "email": new_email, "updated_at": t2})
                versions.sort(key=lambda v: v["updated_at"])
                for v in versions:  # later versions (moves) keep the new e-mail
                    if v["updated_at"] > t2:
                        v["email"] = new_email
        # churn: after this day the customer orders no more
        lifetime = rng.expovariate(1 / 420)
        churn = signup + dt.timedelta(days=lifetime)
        customers.append({
            "customer_id": cid,
            "name": f"{first} {last}",
            "signup": signup,
            "churn": churn,
            "weight": rng.lognormvariate(0, 0.9),
            "versions": versions,
        })
    return customers


# ---------------------------------------------------------------- orders, payments

def daily_rate(day: dt.date) -> float:
    progress = (day - HISTORY_START).days / (HISTORY_END - HISTORY_START).days
    rate = 10.0 + 8.0 * progress
    rate *= [0.95, 0.95, 1.0, 1.0, 1.05, 1.15, 1.1][day.weekday()]
    if day.month in (11, 12):
        rate *= 1.3
    if day in (dt.date(2024, 11, 29), dt.date(2025, 11, 28)):  # Black Friday
        rate *= 2.5
    return rate


def make_orders(rng, products, prices, customers):
    orders = []
    next_legacy_id, next_new_id = 100001, 500001
    for day in days(HISTORY_START, HISTORY_END):
        day_start = dt.datetime.combine(day, dt.time())
        eligible = [c for c in customers if c["signup"] < day_start and c["churn"] > day_start]
        cum, acc = [], 0.0
        for c in eligible:
            acc += c["weight"]
            cum.append(acc)
        available = [p for p in products if price_at(prices, p["product_id"], day) is not None]
        pweights = [p["popularity"] for p in available]
        times = sorted(rng.randrange(6 * 3600, 86400) if rng.random() < 0.93 else rng.randrange(6 * 3600)
                       for _ in range(poisson(rng, daily_rate(day))))
        for secs in times:
            ordered_at = day_start + dt.timedelta(seconds=secs)
            customer = rng.choices(eligible, cum_weights=cum)[0]
            if day < CUTOVER:
                order_id, next_legacy_id = next_legacy_id, next_legacy_id + 1
            else:
                order_id, next_new_id = next_new_id, next_new_id + 1
            n_lines = rng.choices([1, 2, 3, 4, 5], [30, 35, 20, 10, 5])[0]
            picked = []
            while len(picked) < min(n_lines, len(available)):
                p = rng.choices(available, pweights)[0]
                if p not in picked:
                    picked.append(p)
            lines = []
            for line_no, p in enumerate(picked, start=1):
                qty = 1 if p["category"] == "equipment" else rng.choices([1, 2, 3, 4, 6], [68, 20, 7, 3, 2])[0]
                unit = price_at(prices, p["product_id"], day)
                discount = money(unit * qty * Decimal(rng.choice([5, 10, 15])) / 100) if rng.random() < 0.12 else money(0)
                lines.append({"line_no": line_no, "product": p, "qty": qty, "unit": unit, "discount": discount})
            items_net = sum((l["unit"] * l["qty"] - l["discount"] for l in lines), Decimal(0))
            shipping = money("4.90") if items_net < 40 else money(0)
            gross = money((items_net + shipping) * (1 + VAT))
            orders.append({
                "order_id": order_id,
                "customer_id": customer["customer_id"],
                "ordered_at": ordered_at,
                "channel": rng.choices(["web", "app"], [70, 30])[0],
                "lines": lines,
                "shipping": shipping,
                "gross": gross,
                "cancelled_after": dt.timedelta(hours=rng.uniform(1, 48)) if rng.random() < 0.04 else None,
                "method": rng.choices(["card", "paypal", "invoice"], [55, 30, 15])[0],
            })
    return orders


def status_at(order, as_of: dt.datetime) -> str:
    """Order status as an export taken at `as_of` sees it."""
    if order["cancelled_after"] is not None and order["ordered_at"] + order["cancelled_after"] <= as_of:
        return "cancelled"
    if order["ordered_at"] + dt.timedelta(days=2) <= as_of:
        return "shipped"
    return "placed"


def make_payments(rng, orders):
    payments = []
    end = dt.datetime.combine(HISTORY_END, dt.time())
    for o in orders:
        t0, gross, cancelled = o["ordered_at"], o["gross"], o["cancelled_after"] is not None
        out = []
        if o["method"] in ("card", "paypal"):
            out.append((t0 + dt.timedelta(seconds=rng.randrange(5, 300)), "capture", gross))
            if cancelled:
                out.append((t0 + o["cancelled_after"] + dt.timedelta(hours=rng.uniform(1, 72)), "refund", -gross))
            elif rng.random() < 0.06:  # a returned line
                line = rng.choice(o["lines"])
                amount = money((line["unit"] * line["qty"] - line["discount"]) * (1 + VAT))
                out.append((t0 + dt.timedelta(days=rng.uniform(10, 30)), "refund", -amount))
        elif not cancelled:  # invoice
            r = rng.random()
            if r < 0.70:
                out.append((t0 + dt.timedelta(days=rng.uniform(7, 21)), "capture", gross))
            elif r < 0.95:  # paid in two instalments
                first = money(gross / 2)
                out.append((t0 + dt.timedelta(days=rng.uniform(5, 10)), "capture", first))
                out.append((t0 + dt.timedelta(days=rng.uniform(20, 35)), "capture", gross - first))
            # else: never paid
        for paid_at, kind, amount in out:
            paid_at = paid_at.replace(microsecond=0)
            if paid_at < end:
                payments.append((paid_at, o["order_id"], kind, o["method"], amount))
    payments.sort(key=lambda p: (p[0], p[1], p[2]))
    return [(i, *p) for i, p in enumerate(payments, start=1)]


# ---------------------------------------------------------------- writers

def month_key(t) -> str:
    return f"{t.year:04d}-{t.month:02d}"


def write_all(out, products, prices, customers, orders, payments, omit_days):
    for sub in ("data", "seeds"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    as_of_new = dt.datetime.combine(HISTORY_END, dt.time())
    as_of_legacy = dt.datetime.combine(LEGACY_EXPORT_END, dt.time())

    # seeds
    write_csv(os.path.join(out, "seeds", "countries.csv"),
              ["country_code", "country_name", "region"],
              [(c[0], c[1], c[2]) for c in COUNTRIES])
    write_csv(os.path.join(out, "seeds", "product_catalog.csv"),
              ["product_id", "sku", "product_name", "category", "launched_on", "discontinued_on"],
              [(p["product_id"], p["sku"], p["name"], p["category"], p["launched_on"].isoformat(),
                p["discontinued_on"].isoformat() if p["discontinued_on"] else "") for p in products])
    write_csv(os.path.join(out, "seeds", "product_prices.csv"),
              ["product_id", "price", "valid_from", "valid_to"],
              [(pid, f"{pr}", start.isoformat(), end.isoformat() if end else "")
               for pid in sorted(prices) for start, end, pr in prices[pid]])

    # customers: one row per version
    rows = []
    for c in customers:
        for v in c["versions"]:
            rows.append((c["customer_id"], c["name"], v["email"], v["country"],
                         fmt_ts(c["signup"]), fmt_ts(v["updated_at"])))
    rows.sort(key=lambda r: (r[0], r[5]))
    write_csv(os.path.join(out, "data", "customers.csv"),
              ["customer_id", "full_name", "email", "country_code", "signed_up_at", "updated_at"], rows)

    # legacy export: one row per order line, old-system shape
    legacy_rows = []
    status_code = {"placed": "N", "shipped": "S", "cancelled": "X"}
    for o in orders:
        if o["ordered_at"] >= as_of_legacy:
            break
        st = status_code[status_at(o, as_of_legacy)]
        if st == "S" and o["ordered_at"] + dt.timedelta(days=5) <= as_of_legacy:
            st = "D"  # delivered
        if o["ordered_at"].date() >= CUTOVER and st != "X":
            st = "N"  # mirrored orders never got status updates in the old system
        for l in o["lines"]:
            legacy_rows.append((o["order_id"], l["line_no"], f"C{o['customer_id']:06d}", fmt_ts(o["ordered_at"]),
                                st, l["product"]["sku"], l["qty"], int(l["discount"] * 100),
                                int(o["shipping"] * 100), "W" if o["channel"] == "web" else "A"))
    rng = random.Random(SEED + 1)
    dups = [r for r in legacy_rows if rng.random() < 0.005]  # re-exported rows
    legacy_rows = sorted(legacy_rows + dups, key=lambda r: (r[3], r[0], r[1]))
    write_csv(os.path.join(out, "data", "legacy", "orders_export.csv"),
              ["ORDER_NO", "LINE_NO", "CUST_NO", "CREATED_TS", "STATUS_CD", "SKU", "QTY", "DISC_CENTS",
               "SHIP_FEE_CENTS", "CHANNEL_CD"], legacy_rows)

    # new order system, one file per month
    by_month_orders, by_month_lines, by_month_payments = {}, {}, {}
    for o in orders:
        if o["ordered_at"].date() < CUTOVER or o["ordered_at"].date() in omit_days:
            continue
        m = month_key(o["ordered_at"])
        by_month_orders.setdefault(m, []).append((o["order_id"], o["customer_id"], fmt_ts(o["ordered_at"]),
                                                  status_at(o, as_of_new), o["channel"], f"{o['shipping']}"))
        for l in o["lines"]:
            by_month_lines.setdefault(m, []).append((o["order_id"], l["line_no"], l["product"]["product_id"],
                                                     l["qty"], f"{l['discount']}", fmt_ts(o["ordered_at"])))
    for pid, paid_at, order_id, kind, method, amount in payments:
        if paid_at.date() in omit_days:
            continue
        by_month_payments.setdefault(month_key(paid_at), []).append(
            (pid, order_id, fmt_ts(paid_at), kind, method, f"{amount}"))
    for m, rows in by_month_orders.items():
        write_csv(os.path.join(out, "data", "orders", f"{m}.csv"),
                  ["order_id", "customer_id", "ordered_at", "status", "channel", "shipping_fee"], rows)
    for m, rows in by_month_lines.items():
        write_csv(os.path.join(out, "data", "order_lines", f"{m}.csv"),
                  ["order_id", "line_no", "product_id", "quantity", "discount_amount", "created_at"], rows)
    for m, rows in by_month_payments.items():
        write_csv(os.path.join(out, "data", "payments", f"{m}.csv"),
                  ["payment_id", "order_id", "paid_at", "kind", "method", "amount"], rows)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(here), help="project directory to write into")
    ap.add_argument("--omit-days", default="", help="comma-separated ISO days to leave out (source outage)")
    args = ap.parse_args()
    omit = {dt.date.fromisoformat(d) for d in args.omit_days.split(",") if d}

    rng = random.Random(SEED)
    products = make_products(rng)
    prices = make_prices(rng, products)
    customers = make_customers(rng)
    orders = make_orders(rng, products, prices, customers)
    payments = make_payments(rng, orders)
    write_all(args.out, products, prices, customers, orders, payments, omit)
    print(f"{len(products)} products, {len(customers)} customers, {len(orders)} orders, "
          f"{sum(len(o['lines']) for o in orders)} order lines, {len(payments)} payments -> {args.out}")


if __name__ == "__main__":
    main()
