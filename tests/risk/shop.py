"""A tiny Online Retail-like log for the risk tests: 60 customers over 300 days; the
customers whose number is divisible by 5 cancel half of their lines of products P0-P2
a few days later, everyone else never cancels. Risk is therefore learnable."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
START = datetime(2011, 1, 1, 9, 0)


def write_shop(path: Path, customers: int = 60, days: int = 300, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows, cancels, invoice = [HEADER], [], 500000
    for day in range(days):
        for c in rng.choice(customers, size=4, replace=False):
            invoice += 1
            when = START + timedelta(days=day, minutes=int(rng.integers(0, 480)))
            for item in rng.choice(10, size=int(rng.integers(1, 5)), replace=False):
                qty = int(rng.integers(1, 24))
                code, price = f"1000{item}", 1.0 + item
                rows.append(f"{invoice},{code},ITEM {item},{qty},{when:%Y-%m-%d %H:%M:%S},{price},{13000 + c},"
                            f"United Kingdom")
                if c % 5 == 0 and item < 3 and rng.random() < 0.5:
                    cancels.append((when + timedelta(days=int(rng.integers(1, 5))), code, qty, price, 13000 + c))
    for n, (when, code, qty, price, cust) in enumerate(cancels):
        rows.append(f"C{600000 + n},{code},ITEM,{-qty},{when:%Y-%m-%d %H:%M:%S},{price},{cust},United Kingdom")
    path.write_text("\n".join(rows) + "\n")
    return path
