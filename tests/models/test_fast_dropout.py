import pytest
import torch

from shopformer.models.layers import FastDropout


def test_drops_about_p_and_keeps_the_mean():
    torch.manual_seed(0)
    drop = FastDropout(0.2).train()
    x = torch.ones(200_000)
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    assert drop.p == pytest.approx(51 / 256)
    assert dropped == pytest.approx(51 / 256, abs=0.005)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # survivors scaled by 1 / keep rate
    assert torch.allclose(y[y != 0], torch.tensor(256 / 205))


def test_identity_in_eval_and_at_zero_and_seeded():
    x = torch.randn(4, 7, 5)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    torch.manual_seed(3)
    a = FastDropout(0.5).train()(x)
    torch.manual_seed(3)
    b = FastDropout(0.5).train()(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, x)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(0)
    x = torch.randn(1000, requires_grad=True)
    y = FastDropout(0.5).train()(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * 2.0)


def test_rejects_rates_outside_zero_one():
    with pytest.raises(ValueError, match="dropout rate"):
        FastDropout(1.0)
