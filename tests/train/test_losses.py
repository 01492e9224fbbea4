import math

import pytest
import torch
import torch.nn.functional as F

from shopformer.train import losses


def test_full_ce_ignores_padding_row():
    h = torch.tensor([[1.0, 0.0]])
    table = torch.tensor([[100.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # row 0 = padding, huge score
    got = losses.full_ce(h, table, torch.tensor([1]))
    expected = -math.log(math.exp(1) / (math.exp(1) + math.exp(0)))
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_full_ce_leaves_excluded_items_out_of_the_softmax():
    h = torch.tensor([[1.0, 0.0]])
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 0.0]])
    exclude = torch.tensor([True, False, False, True])  # item 3 would dominate
    got = losses.full_ce(h, table, torch.tensor([1]), exclude)
    expected = -math.log(math.exp(1) / (math.exp(1) + math.exp(0)))
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    assert losses.full_ce(h, table, torch.tensor([1])).item() > 40  # without it, it does


def test_sampled_softmax_with_uniform_q_and_all_items_matches_full_ce_closely():
    torch.manual_seed(0)
    n, d = 20, 8
    table = torch.randn(n + 1, d)
    h = torch.randn(5, d)
    y = torch.randint(1, n + 1, (5,))
    log_q = torch.log(torch.cat([torch.zeros(1), torch.full((n,), 1.0 / n)]))
    # uniform q: the logQ shift is a constant; with many samples the estimate is close
    full = losses.full_ce(h, table, y)
    samp = losses.sampled_softmax(h, table, y, 4000, log_q, torch.Generator().manual_seed(0))
    assert abs(samp.item() - full.item()) < 0.25


def test_gbce_with_t_zero_is_plain_bce():
    # t = 0 -> beta = 1: loss = softplus(-pos) + sum softplus(neg) (negatives != target)
    torch.manual_seed(0)
    table = torch.randn(11, 4)
    h = torch.randn(3, 4)
    y = torch.tensor([1, 2, 3])
    gen = torch.Generator().manual_seed(5)
    got = losses.gbce(h, table, y, 6, t=0.0, generator=gen)
    neg = torch.randint(1, 11, (3, 6), generator=torch.Generator().manual_seed(5))
    pos = (h * table[y]).sum(-1)
    negs = torch.einsum("pd,pkd->pk", h, table[neg])
    keep = (neg != y[:, None]).float()
    expected = (F.softplus(-pos) + (F.softplus(negs) * keep).sum(-1)).mean()
    assert torch.allclose(got, expected)


@pytest.mark.parametrize("chunk", [512, 4])  # one chunk; several, with a short last one
def test_full_ce_gradients_match_autograd_reference(chunk, monkeypatch):
    monkeypatch.setattr(losses._SoftmaxCE, "CHUNK", chunk)
    torch.manual_seed(1)
    n, d, p = 30, 6, 9
    for exclude in (None, torch.rand(n + 1) < 0.2):
        h = torch.randn(p, d, requires_grad=True)
        table = torch.randn(n + 1, d, requires_grad=True)
        y = torch.randint(1, n + 1, (p,))
        if exclude is not None:
            exclude[y] = False  # a target is never excluded
        got = losses.full_ce(h, table, y, exclude)
        got.backward()
        gh, gt = h.grad.clone(), table.grad.clone()
        h.grad = table.grad = None
        logits = h @ table[1:].T
        if exclude is not None:
            logits = logits.masked_fill(exclude[1:], float("-inf"))
        ref = F.cross_entropy(logits, y - 1)
        ref.backward()
        assert torch.allclose(got, ref, atol=1e-6)
        assert torch.allclose(gh, h.grad, atol=1e-6)
        assert torch.allclose(gt, table.grad, atol=1e-6)
        assert gt[0].abs().sum() == 0  # padding row gets no gradient
