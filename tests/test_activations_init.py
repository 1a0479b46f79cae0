"Hooks, activation stats, seeding, and the conv net of miniai.init."
import math
from functools import partial
import fastcore.all as fc
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from miniai.activations import set_seed, Hook, Hooks, HooksCallback, ActivationStats, append_stats, get_hist, get_min
from miniai.init import GeneralRelu, init_weights, conv, get_model
from miniai.learner import TrainLearner, Callback

class DLs:
    def __init__(self, train, valid): self.train,self.valid = train,valid

def img_dls(n=64, bs=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g); y = torch.randint(0, 10, (n,), generator=g)
    b = [(x[i:i+bs], y[i:i+bs]) for i in range(0, n, bs)]
    return DLs(b, b[:1])

def n_hooks(model): return sum(len(m._forward_hooks) for m in model.modules())

def test_get_model_params_and_course_call():
    m = get_model(partial(GeneralRelu, leak=0.1, sub=0.4), norm=nn.BatchNorm2d).apply(partial(init_weights, leaky=0.1))
    assert sum(p.numel() for p in m.parameters()) == 30_402
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match='nfs='): get_model(nfs=(8, 0))

def test_conv_bias_only_without_batchnorm():
    assert conv(3, 4, norm=nn.BatchNorm2d)[0].bias is None
    assert conv(3, 4)[0].bias is not None
    assert conv(3, 4, norm=nn.BatchNorm2d, bias=True)[0].bias is not None

def test_general_relu():
    x = torch.tensor([-2., 0., 3.])
    assert torch.allclose(GeneralRelu(leak=0.1, sub=0.4)(x), torch.tensor([-0.6, -0.4, 2.6]))
    assert torch.equal(GeneralRelu()(x), F.relu(x))
    assert torch.equal(GeneralRelu(maxv=1.)(x), torch.tensor([0., 0., 1.]))

def test_init_weights_kaiming_std():
    torch.manual_seed(0)
    lin = nn.Linear(1000, 500); init_weights(lin, leaky=0.1)
    assert math.isclose(lin.weight.std().item(), math.sqrt(2 / (1 + 0.01) / 1000), rel_tol=0.02)
    c = nn.Conv2d(16, 32, 3); init_weights(c)
    assert math.isclose(c.weight.std().item(), math.sqrt(2 / (16*9)), rel_tol=0.05)

def test_set_seed_reproduces_init_and_data():
    set_seed(3); a = get_model(); xa = torch.randperm(10)
    set_seed(3); b = get_model(); xb = torch.randperm(10)
    for p,q in zip(a.parameters(), b.parameters()): assert torch.equal(p, q)
    assert torch.equal(xa, xb)

def test_hook_and_hooks_remove():
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    seen = []
    with Hook(m[0], lambda h, mod, i, o: seen.append(o.shape)):
        m(torch.randn(4, 2))
    assert seen == [(4, 2)] and n_hooks(m) == 0
    with Hooks(m, append_stats) as hs:
        m(torch.randn(4, 2))
        assert len(hs) == 3 and all(len(h.stats[0]) == 1 for h in hs)
    assert n_hooks(m) == 0

def test_activation_stats_over_a_fit_and_figures():
    set_seed(0)
    model = get_model(partial(GeneralRelu, leak=0.1, sub=0.4), norm=nn.BatchNorm2d)
    astats = ActivationStats(fc.risinstance(GeneralRelu))
    TrainLearner(model, img_dls(), F.cross_entropy, lr=0.1, cbs=[astats]).fit(1)
    assert len(astats) == 4 and n_hooks(model) == 0
    for h in astats:
        means,stds,hists = h.stats
        assert len(means) == len(stds) == len(hists) == 4  # 4 training batches, no validation
    assert get_hist(astats.hooks[0]).shape[0] == 40
    assert get_min(astats.hooks[0]).shape == (4,)
    for fig in (astats.plot_stats(), astats.color_dim(), astats.dead_chart()):
        assert len([a for a in fig.axes if a.has_data()]) >= 2

def test_hooks_removed_when_fit_raises():
    model = get_model()
    class Boom(Callback):
        def after_loss(self, learn): raise RuntimeError('boom')
    astats = ActivationStats(fc.risinstance(nn.ReLU))
    with pytest.raises(RuntimeError): TrainLearner(model, img_dls(), F.cross_entropy, cbs=[astats, Boom()]).fit(1)
    assert n_hooks(model) == 0

def test_hooks_callback_mod_filter_and_valid():
    model = get_model()
    calls = []
    cb = HooksCallback(lambda h, m, i, o: calls.append(type(m).__name__), mod_filter=fc.risinstance(nn.Conv2d),
                       on_train=False, on_valid=True)
    TrainLearner(model, img_dls(), F.cross_entropy, cbs=[cb]).fit(1)
    assert set(calls) == {'Conv2d'} and len(calls) == 5  # 5 convs x 1 validation batch
    with pytest.raises(ValueError, match='on_train=False'): HooksCallback(append_stats, on_train=False, on_valid=False)
