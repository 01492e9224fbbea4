"""The text channel: score = h . item + w * (mean of the latest events' unit vectors . item's
unit vector), served as one dot product."""

import numpy as np
import polars as pl
import pytest
import torch

from shopformer.explain.attribution import OcclusionConfig, occlusion_batch
from shopformer.features.content import ContentConfig, build_content
from shopformer.features.sequences import Sequences
from shopformer.features.vocab import Vocabulary
from shopformer.models.occlusion import occlusion_user_vectors
from shopformer.models.sasrec import SASRec, SASRecConfig
from shopformer.models.sequential import SASRecRecommender, TransformerConfig
from shopformer.train.loop import TrainConfig

N, V = 30, 6


def vectors(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N + 1, V)).astype(np.float32)


def test_query_is_the_weighted_mean_of_the_latest_unit_vectors_causally():
    torch.manual_seed(0)
    net = SASRec(SASRecConfig(n_items=N, max_len=10, d_model=8, n_heads=1, content_dim=V, text_channel=True,
                              text_history=3)).eval()
    vec = torch.from_numpy(vectors())
    net.set_vectors(vec)
    with torch.no_grad():
        net.text_weight.fill_(2.5)
        items = torch.tensor([[0, 0, 4, 9, 2, 7, 1], [0, 0, 0, 0, 0, 0, 5]])
        out = net(items)  # (B, T, D + V)
        last = net(items, last_only=True)
    unit = torch.nn.functional.normalize(vec, dim=-1)
    assert out.shape == (2, 7, 8 + V)
    for b in range(2):
        for t in range(7):
            real = [int(i) for i in items[b, : t + 1] if i > 0][-3:]
            expected = 2.5 * unit[real].mean(0) if real else torch.zeros(V)
            torch.testing.assert_close(out[b, t, 8:], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last[:, 0], out[:, -1], rtol=1e-5, atol=1e-6)
    table = net.item_table()
    assert table.shape == (N + 1, 8 + V) and torch.allclose(table[:, 8:], torch.cat([torch.zeros(1, V), unit[1:]]))


def test_needs_content_vectors():
    with pytest.raises(ValueError, match="text_channel needs content vectors"):
        SASRec(SASRecConfig(n_items=N, text_channel=True))


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    vocab = Vocabulary([str(i) for i in range(1, N + 1)])
    products = pl.DataFrame({"item_id": vocab.ids})
    content = build_content(products, vocab, ContentConfig(fields=()), vectors()[1:])
    rng = np.random.default_rng(1)
    rows = [rng.integers(1, N, size=6).tolist() for _ in range(80)]  # item N is never bought
    cfg = TransformerConfig(arch=SASRecConfig(d_model=8, n_heads=1, max_len=6, text_channel=True),
                            train=TrainConfig(epochs=2, batch_size=16, warmup_steps=2))
    return SASRecRecommender(cfg, content).fit(Sequences.from_lists(rows), N), content


def test_fitted_model_scores_with_both_parts_and_reloads(fitted, tmp_path):
    model, _ = fitted
    hist = Sequences.from_lists([[3, 4, 5], [N - 1]])
    scores = model.score(hist)
    user = model.user_vectors(hist)
    assert user.shape == (2, 8 + V)
    table = model.module.item_table(model.item_representations())
    np.testing.assert_allclose(scores[:, 1:], (user @ table.T).numpy()[:, 1:], rtol=1e-5, atol=1e-5)
    assert model.module.unit_vectors[N].abs().sum() > 0  # the unsold item still has its vector
    model.save(tmp_path)
    again = SASRecRecommender.load(tmp_path)
    np.testing.assert_allclose(again.score(hist), scores, rtol=1e-5, atol=1e-6)


def test_new_product_gets_its_unit_vector(fitted):
    model, content = fitted
    new = np.random.default_rng(5).normal(size=(1, V)).astype(np.float32)
    grown = model.with_new_items(np.zeros((1, content.tokens.shape[1]), dtype=np.int64), new)
    row = grown.module.unit_vectors[N + 1]
    torch.testing.assert_close(row, torch.nn.functional.normalize(torch.from_numpy(new[0]), dim=0))
    hist = Sequences.from_lists([[3, 4, 5]])
    np.testing.assert_allclose(grown.score(hist)[:, : N + 1], model.score(hist), rtol=1e-5, atol=1e-5)


def test_occlusion_prefix_reuse_with_the_text_channel(fitted):
    model, _ = fitted
    h = Sequences.from_lists([[3, 9, 4, 12, 5, 7, 8, 2]])  # longer than max_len 6
    batch, positions = occlusion_batch(h, 0, OcclusionConfig(max_events=None))
    torch.testing.assert_close(occlusion_user_vectors(model, h, positions), model.user_vectors(batch),
                               rtol=1e-4, atol=1e-5)
