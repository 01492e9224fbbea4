"""An evaluator that shares no code with shopformer: re-scores exported top-K lists.

Reads a sequence file (`user item item ...`, chronological) and a JSONL export
({"user_id", "items", ...}); the test target of a user is the last item of the line
(leave-one-out). Prints HR@K and NDCG@K over the users of the sequence file with at
least 3 items (a user missing from the export counts as a miss).

    python benchmarks/independent_eval.py SEQUENCES.txt.gz RECS.jsonl --k 10
"""

import argparse
import gzip
import json
import math


def score(sequence_path: str, recs_path: str, k: int) -> dict:
    opener = gzip.open if sequence_path.endswith(".gz") else open
    targets = {}
    with opener(sequence_path, "rt") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4:  # user + at least 3 items
                targets[parts[0]] = parts[-1]
    lists = {}
    with open(recs_path) as f:
        for line in f:
            rec = json.loads(line)
            lists[rec["user_id"]] = rec["items"][:k]
    hits = 0
    ndcg = 0.0
    for user, target in targets.items():
        items = lists.get(user, [])
        if target in items:
            rank = items.index(target)
            hits += 1
            ndcg += 1.0 / math.log2(rank + 2)
    n = len(targets)
    return {"users": n, f"HR@{k}": hits / n, f"NDCG@{k}": ndcg / n}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("sequences")
    ap.add_argument("recs")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    print(json.dumps(score(args.sequences, args.recs, args.k)))
