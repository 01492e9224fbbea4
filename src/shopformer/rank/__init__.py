"""What happens between retrieval and the answer. Today: business rules
(:mod:`shopformer.rank.rules`); each step reports its provenance."""
