"""learn.save / learn.load, get_preds and predict_batch (miniai.learner)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim
from fastcore.test import test_eq as eq_
from miniai.learner import Learner, TrainLearner, TrainCB
from miniai.checkpoint import CheckpointCB
from training_helpers import class_data, class_dls

def _bn_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 2))

@pytest.mark.parametrize('with_opt', [False, True])
def test_save_load_roundtrip(tmp_path, with_opt):
    learn = TrainLearner(_bn_model(0), class_dls(), F.cross_entropy, lr=0.01, opt_func=optim.AdamW)
    learn.fit(1)
    p = tmp_path/'m.pt'
    learn.save(p, with_opt=with_opt)
    other = TrainLearner(_bn_model(1), class_dls(), F.cross_entropy, lr=0.01, opt_func=optim.AdamW)
    assert not torch.equal(other.model[0].weight, learn.model[0].weight)
    assert other.load(p, with_opt=with_opt) is other
    for (k,v),(k2,v2) in zip(learn.model.state_dict().items(), other.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    if with_opt:
        a,b = learn.opt.state_dict(),other.opt.state_dict()
        assert isinstance(other.opt, optim.AdamW) and a['state']
        eq_(a['param_groups'], b['param_groups'])
        for i,st in a['state'].items():
            for k,v in st.items(): assert torch.equal(torch.as_tensor(v), torch.as_tensor(b['state'][i][k])), k
    else:
        with pytest.raises(ValueError, match='with_opt'): other.load(p, with_opt=True)

def test_save_with_opt_before_fit(tmp_path):
    with pytest.raises(ValueError, match='with_opt'): TrainLearner(_bn_model(), class_dls()).save(tmp_path/'m.pt', with_opt=True)
    assert not (tmp_path/'m.pt').exists()

def test_load_not_a_save_file_dict(tmp_path):
    p = tmp_path/'x.pt'; torch.save({'weights': torch.zeros(2)}, p)
    with pytest.raises(ValueError, match='not a file written by Learner.save'): TrainLearner(_bn_model(), class_dls()).load(p)

def test_load_not_a_save_file_garbage(tmp_path):
    p = tmp_path/'x.pt'; p.write_text('this is not a model file')
    with pytest.raises(ValueError, match='Learner.save'): TrainLearner(_bn_model(), class_dls()).load(p)

def test_load_a_fit_checkpoint_is_clear(tmp_path):
    ck = tmp_path/'ck.pt'
    learn = TrainLearner(nn.Linear(8, 2), class_dls(), F.cross_entropy, cbs=[CheckpointCB(ck, verbose=False)])
    learn.fit(1)
    with pytest.raises(ValueError, match='Learner.save'): learn.load(ck)

@pytest.mark.parametrize('training', [True, False])
def test_get_preds_and_predict_batch(training):
    m = _bn_model()
    learn = TrainLearner(m, class_dls(), F.cross_entropy, lr=0.1)
    learn.fit(1)
    x,y = class_data(96, seed=3)
    dl = [(x[i:i+32], y[i:i+32]) for i in range(0, 96, 32)]
    m.train(training)
    preds,targs = learn.get_preds(dl)
    eq_(m.training, training)
    m.eval()
    with torch.no_grad(): want = m(x)
    m.train(training)
    assert torch.equal(targs, y)
    torch.testing.assert_close(preds, want, rtol=1e-6, atol=1e-6)
    assert not preds.requires_grad
    pb = learn.predict_batch(x[:5])
    eq_(m.training, training)
    torch.testing.assert_close(pb, want[:5], rtol=1e-6, atol=1e-6)
    assert not pb.requires_grad
    p2,t2 = learn.get_preds([b[0] for b in dl])  # bare inputs: no targets
    torch.testing.assert_close(p2, want, rtol=1e-6, atol=1e-6); assert t2 is None
    p3,t3 = learn.get_preds()  # default: dls.valid
    vx = torch.cat([b[0] for b in learn.dls.valid]); vy = torch.cat([b[1] for b in learn.dls.valid])
    m.eval()
    with torch.no_grad(): torch.testing.assert_close(p3, m(vx), rtol=1e-6, atol=1e-6)
    assert torch.equal(t3, vy)

def test_predict_on_train_learner_points_to_predict_batch():
    learn = TrainLearner(_bn_model(), class_dls(), F.cross_entropy)
    with pytest.raises(TypeError, match='predict_batch') as e: learn.predict(torch.randn(4, 8))
    assert 'get_preds' in str(e.value)

def test_predict_with_an_argument_on_a_plain_learner_is_clear():
    learn = Learner(nn.Linear(8, 2), class_dls(), F.cross_entropy, cbs=[TrainCB()])
    with pytest.raises(TypeError, match='predict_batch'): learn.predict(torch.zeros(1, 8))
    with pytest.raises(TypeError, match='takes no arguments'): learn.step(1)
