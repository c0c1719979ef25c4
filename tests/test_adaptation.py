"""The domain-adversarial head: its hidden layer stops telling the fields apart, and it still regresses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxyprop.errors import GalaxypropError
from galaxyprop.heads.adversarial import DomainAdversarialHead, reverse_gradient
from galaxyprop.heads.mlp import MLPHead
from galaxyprop.monitoring.drift import DriftSettings, embedding_drift

HYPER = dict(hidden_layers=2, width=32, dropout=0.05, learning_rate=3e-3, batch_size=128, max_epochs=25,
             patience=25, n_mc=0, seed=0)


def fields(n: int, seed: int):
    """y depends on x0, x1; x2, x3 only tell the fields apart (shifted by 3 in the other field)."""
    rng = np.random.default_rng(seed)
    source, target = rng.normal(0, 1, (n, 4)), rng.normal(0, 1, (n, 4))
    target[:, 2:] += 3.0
    def y(x):
        return x[:, 0] + 0.5 * x[:, 1] ** 2
    return source.astype(np.float32), y(source), target.astype(np.float32), y(target)


def hidden(head, X):
    net = head.net_.eval()
    with torch.inference_mode():
        return net.regressor[:-1](net.trunk(torch.from_numpy(X))).numpy()


def test_reversal_flips_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    reverse_gradient(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))


@pytest.mark.slow
def test_adversary_hides_the_field_and_keeps_the_regression():
    Xs, ys, Xt, yt = fields(1500, 0)
    plain = MLPHead(**HYPER).fit(Xs, ys)
    adapted = DomainAdversarialHead(adversary_weight=1.0, **HYPER).fit(Xs, ys, unlabelled=Xt)

    def auc(head):
        h = hidden(head, np.concatenate([Xs, Xt]))
        return embedding_drift(h[:len(Xs)], h[len(Xs):], DriftSettings())["score"]

    assert auc(plain) > 0.95                     # the plain MLP's features carry the field
    assert auc(adapted) < 0.9                     # (about 0.65-0.88 over seeds and adversary weights)
    residual = adapted.predict(Xt).value - yt
    assert 1 - residual.var() / yt.var() > 0.9   # still a regressor on the unlabelled field (R^2 0.98)
    with pytest.raises(GalaxypropError, match="needs unlabelled galaxies"):
        DomainAdversarialHead(**HYPER).fit(Xs, ys)
