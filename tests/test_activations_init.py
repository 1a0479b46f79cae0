"Tests of miniai.activations (hooks, ActivationStats, set_seed) and miniai.init (GeneralRelu, init_weights, get_model, ...)."
import io, math, subprocess, sys
from functools import partial

import matplotlib
matplotlib.use('Agg')
import fastcore.all as fc
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from matplotlib.figure import Figure
from torch import nn

from miniai.activations import (set_seed, Hook, Hooks, HooksCallback, append_stats, get_hist, get_min,
                                ActivationStats)
from miniai.init import GeneralRelu, plot_func, init_weights, conv, get_model, LayerNorm, lsuv_init
from miniai.learner import Callback, TrainLearner, CancelFitException
from miniai.datasets import DataLoaders


def n_hooks(model): return sum(len(m._forward_hooks) for m in model.modules())
def n_params(model): return sum(p.numel() for p in model.parameters())


def tiny_dls(n_train=48, n_valid=32, bs=16, n_in=4, n_out=3):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n_train + n_valid, n_in, generator=g), torch.randint(0, n_out, (n_train + n_valid,), generator=g)
    batches = lambda x, y: list(zip(x.split(bs), y.split(bs)))
    return DataLoaders(batches(x[:n_train], y[:n_train]), batches(x[n_train:], y[n_train:]))


def tiny_model(): return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def tiny_learner(model, cbs): return TrainLearner(model, tiny_dls(), F.cross_entropy, lr=0.1, cbs=cbs)


class Boom(Callback):
    "Raises on the given training batch."
    def __init__(self, at=1, exc=RuntimeError('boom')): self.at, self.exc = at, exc
    def after_batch(self, learn):
        if learn.training and learn.iter == self.at: raise self.exc


# ---------------------------------------------------------------- hooks

def test_hook_records_and_removes():
    lin = nn.Linear(3, 2)
    x = torch.randn(5, 3)
    def f(hook, mod, inp, outp): hook.seen = (mod, inp[0].detach(), outp.detach())
    h = Hook(lin, f)
    assert n_hooks(lin) == 1
    y = lin(x)
    assert h.seen[0] is lin
    torch.testing.assert_close(h.seen[1], x)
    torch.testing.assert_close(h.seen[2], y.detach())
    h.remove(); h.remove()  # idempotent
    assert n_hooks(lin) == 0


def test_hook_context_manager():
    lin = nn.Linear(3, 2)
    with Hook(lin, append_stats) as h:
        assert n_hooks(lin) == 1
        lin(torch.randn(4, 3))
    assert n_hooks(lin) == 0
    assert len(h.stats[0]) == 1


def test_hooks_list():
    model = tiny_model()
    with Hooks(model, append_stats) as hs:
        assert len(hs) == len(model)  # a Sequential iterates over its children
        assert n_hooks(model) == len(hs)
        model(torch.randn(2, 4))
    assert n_hooks(model) == 0
    assert all(len(h.stats[0]) == 1 for h in hs)
    hs2 = Hooks(model[1:3], append_stats)
    del hs2[0]
    assert n_hooks(model) == 1 and len(hs2) == 1
    hs2.remove()
    assert n_hooks(model) == 0


def test_append_stats_values():
    x = torch.tensor([0., 0.1, -0.2, 0.3, -1., 2., 9.9, 20.])
    mod = nn.Identity()
    with Hook(mod, append_stats) as h: mod(x); mod(2*x)
    assert h.stats[0][0] == pytest.approx(x.mean().item())
    assert h.stats[1][0] == pytest.approx(x.std().item())
    torch.testing.assert_close(h.stats[2][0], x.abs().histc(40, 0, 10))
    assert get_hist(h).shape == (40, 2)
    torch.testing.assert_close(get_hist(h)[:, 0], x.abs().histc(40, 0, 10).log1p())
    assert get_min(h)[0].item() == pytest.approx(3/7)  # 0, 0.1, 0.2 of the 7 values in [0, 10]


# ---------------------------------------------------------------- HooksCallback / ActivationStats in a fit

def test_hookscallback_mod_filter_and_names():
    model = tiny_model()
    calls = []
    cb = HooksCallback(lambda hook, mod, inp, outp: calls.append(hook.name), mod_filter=fc.risinstance(nn.ReLU))
    tiny_learner(model, [cb]).fit(1)
    assert len(cb) == 2 and [h.name for h in cb] == ['1', '3']
    assert calls == ['1', '3']*3  # 3 training batches, validation not recorded
    assert n_hooks(model) == 0


def test_hookscallback_default_all_modules_and_mods():
    model = tiny_model()
    cb = HooksCallback(lambda *a: None)
    tiny_learner(model, [cb]).fit(1)
    assert len(cb) == len(list(model.modules()))
    cb = HooksCallback(lambda *a: None, mods=[model[0], model[4]])
    tiny_learner(model, [cb]).fit(1)
    assert [h.name for h in cb] == ['0', '4']


def test_hookscallback_on_valid():
    model = tiny_model()
    astats = ActivationStats(fc.risinstance(nn.ReLU), on_train=False, on_valid=True)
    tiny_learner(model, [astats]).fit(2)
    assert [len(h.stats[0]) for h in astats] == [4, 4]  # 2 validation batches x 2 epochs
    both = ActivationStats(fc.risinstance(nn.ReLU), on_valid=True)
    tiny_learner(model, [both]).fit(1)
    assert [len(h.stats[0]) for h in both] == [5, 5]


def test_hookscallback_bad_args():
    with pytest.raises(TypeError, match='hookfunc=3'): HooksCallback(3)
    with pytest.raises(TypeError, match='mod_filter'): HooksCallback(append_stats, mod_filter='relu')
    with pytest.raises(ValueError, match='on_train=False, on_valid=False'): HooksCallback(append_stats, on_train=False)
    with pytest.raises(TypeError, match='mods'): HooksCallback(append_stats, mods=[3])


@pytest.mark.parametrize('exc', [RuntimeError('boom'), CancelFitException()])
def test_no_hooks_left_after_failed_fit(exc):
    model = tiny_model()
    astats = ActivationStats(fc.risinstance(nn.ReLU))
    learn = tiny_learner(model, [astats])
    if isinstance(exc, CancelFitException): learn.fit(2, cbs=[Boom(1, exc)])
    else:
        with pytest.raises(RuntimeError, match='boom'): learn.fit(2, cbs=[Boom(1, exc)])
    assert n_hooks(model) == 0
    assert [len(h.stats[0]) for h in astats] == [2, 2]  # batches 0 and 1 were recorded


def test_activation_stats_over_fit_and_refit():
    model = tiny_model()
    astats = ActivationStats(fc.risinstance(nn.ReLU))
    learn = tiny_learner(model, [astats])
    learn.fit(2)
    assert len(astats) == 2
    for h in astats:
        assert len(h.stats[0]) == len(h.stats[1]) == len(h.stats[2]) == 6
        assert all(s >= 0 for s in h.stats[0])  # ReLU outputs
        assert get_hist(h).shape == (40, 6) and get_min(h).shape == (6,)
        assert ((get_min(h) >= 0) & (get_min(h) <= 1)).all()
    assert n_hooks(model) == 0
    learn.fit(1)  # a new fit starts new records
    assert [len(h.stats[0]) for h in astats] == [3, 3]
    assert n_hooks(model) == 0


def test_activation_stats_matches_direct_computation():
    import copy
    model = tiny_model()
    before = copy.deepcopy(model)
    astats = ActivationStats(mods=[model[1]])
    dls = tiny_dls()
    learn = TrainLearner(model, dls, F.cross_entropy, lr=0.1, cbs=[astats])
    learn.fit(1, valid=False, cbs=[Boom(0, CancelFitException())])  # one training batch
    with torch.no_grad(): acts = before[1](before[0](dls.train[0][0]))  # the forward pass ran before the update
    h = astats.hooks[0]
    assert len(h.stats[0]) == 1
    assert h.stats[0][0] == pytest.approx(acts.mean().item(), rel=1e-5)
    assert h.stats[1][0] == pytest.approx(acts.std().item(), rel=1e-5)
    torch.testing.assert_close(h.stats[2][0], acts.abs().histc(40, 0, 10))


@pytest.mark.parametrize('n_mods', [1, 2, 3, 5])
def test_figures_axes_and_headless(n_mods):
    layers = []
    for _ in range(n_mods): layers += [nn.Linear(4, 4), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(4, 3))
    astats = ActivationStats(fc.risinstance(nn.ReLU))
    tiny_learner(model, [astats]).fit(1)
    for fig, n_axes in ((astats.color_dim(), n_mods), (astats.dead_chart(), n_mods), (astats.plot_stats(), 2)):
        assert isinstance(fig, Figure)
        assert len(fig.axes) == n_axes
        buf = io.BytesIO(); fig.savefig(buf, format='png')
        assert buf.getvalue()[:4] == b'\x89PNG'
    assert len(astats.plot_stats().axes[1].get_lines()) == n_mods


def test_plots_before_fit_raise():
    with pytest.raises(ValueError, match='nothing to plot'): ActivationStats().color_dim()
    with pytest.raises(ValueError, match='nothing to plot'): ActivationStats().plot_stats()


def test_course_call_activationstats_generalrelu():
    model = get_model(partial(GeneralRelu, leak=0.1, sub=0.4), norm=nn.BatchNorm2d).apply(partial(init_weights, leaky=0.1))
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    dls = DataLoaders(list(zip(x.split(16), y.split(16))), list(zip(x.split(16), y.split(16))))
    astats = ActivationStats(fc.risinstance(GeneralRelu))
    TrainLearner(model, dls, F.cross_entropy, lr=0.1, cbs=[astats]).fit(1)
    assert [h.name for h in astats] == ['0.2', '1.2', '2.2', '3.2']
    assert all(len(h.stats[0]) == 2 for h in astats)
    assert n_hooks(model) == 0


def test_activations_does_not_import_init():
    code = "import sys, miniai.activations; assert 'miniai.init' not in sys.modules"
    subprocess.run([sys.executable, '-c', code], check=True)


# ---------------------------------------------------------------- set_seed

def test_set_seed_same_init_and_first_batch():
    from miniai.datasets import get_dls
    def draw(seed):
        set_seed(seed)
        model = get_model(norm=nn.BatchNorm2d)
        dls = get_dls(bs=64, n_train=512, n_valid=64)
        xb, yb = next(iter(dls.train))
        return [p.detach().clone() for p in model.parameters()], xb, yb
    (p1, x1, y1), (p2, x2, y2), (p3, x3, y3) = draw(7), draw(7), draw(8)
    for a, b in zip(p1, p2): torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(x1, x2, rtol=0, atol=0); torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    assert not torch.equal(p1[0], p3[0])
    assert not torch.equal(y1, y3)


def test_set_seed_python_numpy_and_deterministic():
    import random
    import numpy as np
    set_seed(3); a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(3); b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b
    try:
        set_seed(3, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        set_seed(3)
    assert not torch.are_deterministic_algorithms_enabled()


def test_set_seed_leaves_torch_dynamo_unimported():
    "torch.use_deterministic_algorithms imports torch._dynamo (about 1 s of `miniai fit`): set_seed calls it only to change the setting."
    code = ("import sys, torch; from miniai.activations import set_seed; set_seed(1); "
            "assert 'torch._dynamo' not in sys.modules, 'set_seed imported torch._dynamo'; "
            "set_seed(1, deterministic=True); assert torch.are_deterministic_algorithms_enabled(); "
            "set_seed(1); assert not torch.are_deterministic_algorithms_enabled()")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- init

@settings(max_examples=50, deadline=None)
@given(leak=st.one_of(st.none(), st.floats(0, 1)), sub=st.one_of(st.none(), st.floats(-1, 1)),
       maxv=st.one_of(st.none(), st.floats(0.5, 10)))
def test_generalrelu_formula(leak, sub, maxv):
    x = torch.linspace(-5, 12, 101)
    expected = F.leaky_relu(x, leak) if leak is not None else F.relu(x)
    if sub is not None: expected = expected - sub
    if maxv is not None: expected = expected.clamp(max=maxv)
    torch.testing.assert_close(GeneralRelu(leak, sub, maxv)(x), expected)


def test_generalrelu_values_and_grad():
    x = torch.tensor([-2., -0.5, 0.5, 2., 10.], requires_grad=True)
    y = GeneralRelu(leak=0.1, sub=0.4, maxv=6.)(x)
    torch.testing.assert_close(y.detach(), torch.tensor([-0.6, -0.45, 0.1, 1.6, 6.]))
    y.sum().backward()  # no in-place op breaks autograd
    torch.testing.assert_close(x.grad, torch.tensor([0.1, 0.1, 1., 1., 0.]))
    torch.testing.assert_close(GeneralRelu()(x).detach(), F.relu(x).detach())
    with pytest.raises(TypeError, match='sub='): GeneralRelu(sub='a')


@pytest.mark.parametrize('leak', [0., 0.1, 0.5])
@pytest.mark.parametrize('make,fan_in', [(lambda: nn.Linear(800, 600), 800), (lambda: nn.Conv2d(32, 256, 3), 32*9),
                                         (lambda: nn.Conv1d(64, 256, 5), 64*5), (lambda: nn.Conv3d(8, 64, 3), 8*27)])
def test_init_weights_std_is_kaiming(make, fan_in, leak):
    set_seed(0)
    m = make()
    init_weights(m, leaky=leak)
    target = nn.init.calculate_gain('leaky_relu', leak)/math.sqrt(fan_in)
    assert target == pytest.approx(math.sqrt(2/(1+leak**2)/fan_in))
    assert m.weight.std().item() == pytest.approx(target, rel=0.03)
    assert abs(m.weight.mean().item()) < 0.03*target


def test_init_weights_leaves_other_modules():
    bn, gr = nn.BatchNorm2d(4), nn.Embedding(10, 3)
    w = gr.weight.detach().clone()
    init_weights(bn); init_weights(gr)
    torch.testing.assert_close(bn.weight.detach(), torch.ones(4))
    torch.testing.assert_close(gr.weight.detach(), w)


def test_conv_bias_default():
    assert conv(3, 8)[0].bias is not None
    assert conv(3, 8, norm=nn.BatchNorm2d)[0].bias is None
    assert conv(3, 8, norm=partial(nn.BatchNorm2d, eps=1e-3))[0].bias is None
    assert conv(3, 8, norm=LayerNorm)[0].bias is not None
    assert conv(3, 8, norm=nn.BatchNorm2d, bias=True)[0].bias is not None
    assert [type(o) for o in conv(3, 8, act=None)] == [nn.Conv2d]
    with pytest.raises(ValueError, match='ks=0'): conv(3, 8, ks=0)


def test_get_model_params_and_shape():
    model = get_model(norm=nn.BatchNorm2d)
    assert n_params(model) == 30_402
    assert n_params(get_model()) == 30_402 + 120 - 240
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert get_model(nfs=(16, 32, 64, 128, 256))(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    first = model[0][0]
    assert first.kernel_size == (5, 5) and first.in_channels == 1 and first.out_channels == 8
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [8, 16, 32, 64, 10]
    assert all(m.stride == (2, 2) for m in model.modules() if isinstance(m, nn.Conv2d))
    assert isinstance(model[-1], nn.Flatten) and model[-2][0].bias is not None and len(model[-2]) == 1
    with pytest.raises(ValueError, match='nfs='): get_model(nfs=(8, 16))


def test_course_call():
    set_seed(0)
    model = get_model(partial(GeneralRelu, leak=0.1, sub=0.4), norm=nn.BatchNorm2d).apply(partial(init_weights, leaky=0.1))
    assert n_params(model) == 30_402
    assert sum(isinstance(m, GeneralRelu) for m in model.modules()) == 4
    out = model(torch.randn(8, 1, 28, 28))
    assert out.shape == (8, 10) and torch.isfinite(out).all()
    w = model[3][0].weight
    assert w.std().item() == pytest.approx(math.sqrt(2/1.01/(32*9)), rel=0.05)


def test_layernorm_matches_torch():
    x = torch.randn(4, 8, 5, 5)*3 + 2
    ln = LayerNorm(8)
    torch.testing.assert_close(ln(x), F.layer_norm(x, x.shape[1:]), rtol=1e-4, atol=1e-5)
    with torch.no_grad(): ln.mult.fill_(2.); ln.add.fill_(0.5)
    torch.testing.assert_close(ln(x), F.layer_norm(x, x.shape[1:])*2 + 0.5, rtol=1e-4, atol=1e-5)
    assert get_model(norm=LayerNorm)(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_lsuv_init():
    set_seed(0)
    model = get_model(partial(GeneralRelu, leak=0.1, sub=0.4))
    xb = torch.randn(64, 1, 28, 28)
    acts = [m for m in model.modules() if isinstance(m, GeneralRelu)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for a, c in zip(acts, convs): lsuv_init(model, a, c, xb)
    with Hooks(acts, append_stats) as hs, torch.no_grad(): model(xb)
    for h in hs:
        assert abs(h.stats[0][0]) < 1e-3 and abs(h.stats[1][0] - 1) < 1e-3
    assert n_hooks(model) == 0
    bn_model = get_model(norm=nn.BatchNorm2d)
    with pytest.raises(ValueError, match='bias'): lsuv_init(bn_model, bn_model[0][2], bn_model[0][0], xb)


def test_plot_func_returns_figure():
    fig = plot_func(GeneralRelu(leak=0.1, sub=0.4))
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    line = fig.axes[0].get_lines()[0]
    torch.testing.assert_close(torch.tensor(line.get_ydata()), GeneralRelu(leak=0.1, sub=0.4)(torch.linspace(-5, 5, 100)))
