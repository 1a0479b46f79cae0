"""Mixed precision (miniai.precision): bf16 autocast on CPU, fp16 with the grad scaler, their arguments, with accumulation."""
from copy import deepcopy
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from fastcore.test import test_eq as eq_
from torcheval.metrics import MulticlassAccuracy
from miniai.learner import TrainLearner, Callback, GradAccumCB
from miniai.precision import MixedPrecisionCB
from training_helpers import reg_dls, class_dls, quiet_metrics

class SeenDtypes(Callback):
    order = MixedPrecisionCB.order + 1
    def before_fit(self, learn): self.seen = set()
    def after_loss(self, learn):
        self.seen.add((learn.training, learn.preds.dtype, learn.loss.dtype, next(learn.model.parameters()).dtype))

def _class_fit(cbs, n_epochs=3, lr=0.5):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    mcb = quiet_metrics(accuracy=MulticlassAccuracy())
    TrainLearner(model, class_dls(), F.cross_entropy, lr=lr, cbs=[mcb] + cbs).fit(n_epochs)
    return model,mcb.history[-1]

def test_bf16_on_cpu():
    seen = SeenDtypes()
    m32,h32 = _class_fit([])
    m16,h16 = _class_fit([MixedPrecisionCB('bf16'), seen])
    eq_(seen.seen, {(True, torch.bfloat16, torch.float32, torch.float32),
                        (False, torch.bfloat16, torch.float32, torch.float32)})
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    assert abs(h16['valid_loss'] - h32['valid_loss']) < 0.05 and abs(h16['accuracy'] - h32['accuracy']) <= 0.05
    assert h16['accuracy'] > 0.85
    assert not torch.equal(m16[0].weight, m32[0].weight)  # it did run in bf16
    with torch.no_grad(): assert m16(torch.randn(2, 8)).dtype == torch.float32  # autocast left after the fit

@pytest.mark.parametrize('dtype', ['fp8', 32, torch.float32, 'float32', 'bf15'])
def test_mixed_precision_bad_dtype(dtype):
    with pytest.raises(ValueError, match='dtype='): MixedPrecisionCB(dtype)

@pytest.mark.parametrize('dev', ['tpu', 'gpu', 'mps', 0])
def test_mixed_precision_bad_device(dev):
    with pytest.raises(ValueError, match='device_type='): MixedPrecisionCB('bf16', device_type=dev)

@pytest.mark.parametrize('dtype', ['bf16', 'fp16'])
def test_mixed_precision_with_accum(dtype):
    torch.manual_seed(0)
    m0 = nn.Linear(5, 2)
    def run(mp, accum=3):
        m = deepcopy(m0)
        seen = SeenDtypes()
        learn = TrainLearner(m, reg_dls(10, scale=0.1), F.mse_loss, lr=0.5, cbs=[GradAccumCB(accum), seen] + mp)
        learn.fit(2)
        return torch.cat([(p - p0).flatten() for p,p0 in zip(m.parameters(), m0.parameters())]).detach(),learn,seen
    d32,l32,_ = run([])
    dlo,llo,seen = run([MixedPrecisionCB(dtype, device_type='cpu')])
    low = torch.bfloat16 if dtype == 'bf16' else torch.float16
    assert {s[1] for s in seen.seen} == {low}
    eq_((llo.n_updates, l32.n_updates), (8, 8))
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()
    assert rel(dlo, d32) < 0.03  # the same training, up to the low precision of the forward pass
    d1,_,_ = run([MixedPrecisionCB(dtype, device_type='cpu')], accum=2)
    assert rel(d1, d32) > 0.1  # (which the comparison can tell from another accumulation)
