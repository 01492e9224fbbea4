"""How long until a new product is retrievable: upsert -> recommendable and similar.

Serves a content-fused SASRec (Amazon Beauty with its brand / category attributes) over
HTTP in-process (FastAPI TestClient: the route, the store write, placing the product in
the model and rebuilding its vector indexes), then upserts new products one at a time,
each a copy of an existing product's attributes under a new id, and times:

- ``upsert``: PUT /v1/catalog/items until it returns (the product is in the model then);
- ``retrievable``: from before the PUT until GET /v1/items/{new}/similar answers.

The model is trained briefly (``--epochs``): placement cost does not depend on how well
it is trained. Target (issue 4): under 1 s.

    python benchmarks/new_product_latency.py [--products 30] [--epochs 2]

Writes benchmarks/results/new_product_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from shopformer.artifact import make_model
from shopformer.dataset import DataConfig, load_products
from shopformer.evaluate.report import machine
from shopformer.experiment import train_run
from shopformer.features.content import ContentConfig
from shopformer.ingest import ingest

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BEAUTY = ("amazon-beauty/Beauty.txt.gz", "amazon-beauty/Beauty_item2attributes.json.gz")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-newproduct"))
    ap.add_argument("--set", action="append", default=[],
                    help="extra SASRec setting KEY=VALUE, e.g. arch.text_channel=true arch.new_item_bias=1.0 "
                         "(what calibration gives a Beauty model: an attribute channel and a new-product bias)")
    args = ap.parse_args()
    if not (args.data_root / BEAUTY[0]).exists():
        sys.exit(f"{args.data_root / BEAUTY[0]} not found: needs ../shared/data")
    from fastapi.testclient import TestClient

    from shopformer.serve import ServeSettings, create_app
    from shopformer.store import EventStore, StoreConfig, import_folder

    data = args.work / "data"
    if not (data / "events.parquet").exists():
        ingest(args.data_root / BEAUTY[0], fmt="sequence", data_dir=data)
        ingest(args.data_root / BEAUTY[1], fmt="item2attributes", data_dir=data)
    run = args.work / "run"
    settings = {"arch.d_model": str(args.d_model), "arch.id_dropout": "0.9", "train.epochs": str(args.epochs),
                "train.batch_size": "256", **dict(kv.split("=", 1) for kv in args.set)}
    t0 = time.perf_counter()
    train_run(make_model("sasrec", settings), data, DataConfig(), run, fit_on="all",
              content=ContentConfig(fields=("tags",)))
    print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
    store_url = f"sqlite:///{args.work / 'store.db'}"
    (args.work / "store.db").unlink(missing_ok=True)
    with EventStore(StoreConfig(store_url)) as store:
        import_folder(store, data)
    products = load_products(data)
    rng = np.random.default_rng(0)
    templates = products.sample(args.products, seed=0).to_dicts()
    key = "bench-key"
    upsert_ms, retrievable_ms, placed = [], [], 0
    app = create_app(ServeSettings(store_url=store_url, run=run, api_key=key, cache_ttl_s=60))
    with TestClient(app) as client:
        n_items = client.get("/health").json()
        for i, tpl in enumerate(templates):
            new_id = f"new-{i}-{rng.integers(1 << 30)}"
            row = {"item_id": new_id, "tags": tpl["tags"] or [], "title": f"New product {i}"}
            t0 = time.perf_counter()
            r = client.put("/v1/catalog/items", json=[row], headers={"X-API-Key": key})
            t1 = time.perf_counter()
            sim = client.get(f"/v1/items/{new_id}/similar", params={"k": 10})
            t2 = time.perf_counter()
            if r.status_code != 200 or sim.status_code != 200:
                sys.exit(f"request failed: {r.status_code} {r.text[:200]} / {sim.status_code} {sim.text[:200]}")
            placed += r.json()["placed_in_model"]
            upsert_ms.append((t1 - t0) * 1000)
            retrievable_ms.append((t2 - t0) * 1000)
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 1)  # noqa: E731
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {**vars(args), "data_root": str(args.data_root), "work": str(args.work), "model": settings},
        "health": n_items,
        "products_added": len(templates),
        "placed_in_model": placed,
        "upsert_ms": {"p50": pct(upsert_ms, 50), "p95": pct(upsert_ms, 95), "max": round(max(upsert_ms), 1)},
        "retrievable_ms": {"p50": pct(retrievable_ms, 50), "p95": pct(retrievable_ms, 95),
                           "max": round(max(retrievable_ms), 1)},
    }
    result["target_met"] = result["retrievable_ms"]["max"] < 1000
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "new_product_latency.json").write_text(json.dumps(result, indent=2))
    md = (
        "# New product -> retrievable (content-fused SASRec, Amazon Beauty attributes)\n\n"
        f"Machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs. {result['date']}.\n"
        f"{len(templates)} products upserted one at a time over HTTP (in-process); {placed} placed in the model.\n\n"
        "| step | p50 ms | p95 ms | max ms |\n|---|---|---|---|\n"
        f"| upsert (store + place in model + rebuild index) | {result['upsert_ms']['p50']} | "
        f"{result['upsert_ms']['p95']} | {result['upsert_ms']['max']} |\n"
        f"| until similar items answer for it | {result['retrievable_ms']['p50']} | "
        f"{result['retrievable_ms']['p95']} | {result['retrievable_ms']['max']} |\n\n"
        f"Target: retrievable in under 1 s: {'met' if result['target_met'] else 'NOT met'} (max).\n"
    )
    (RESULTS / "new_product_latency.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
