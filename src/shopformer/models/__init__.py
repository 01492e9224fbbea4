"""Recommendation models. The baselines are always available; :data:`BASELINES` maps each
one's stable name to its class (an explicit table, nothing is looked up by name)."""

from shopformer.models.base import Recommender, recommend
from shopformer.models.ease import EASE, EASEConfig
from shopformer.models.itemknn import ItemKNN, ItemKNNConfig
from shopformer.models.popularity import MostPopular, PopularityConfig
from shopformer.models.trending import Trending, TrendingConfig

BASELINES: dict[str, type] = {
    MostPopular.name: MostPopular,
    ItemKNN.name: ItemKNN,
    EASE.name: EASE,
    Trending.name: Trending,
}

__all__ = [
    "BASELINES",
    "EASE",
    "EASEConfig",
    "ItemKNN",
    "ItemKNNConfig",
    "MostPopular",
    "PopularityConfig",
    "Recommender",
    "Trending",
    "TrendingConfig",
    "recommend",
]
