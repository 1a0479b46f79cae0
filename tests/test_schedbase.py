"The base classes: pytorch-accelerated's API, any field, the counting convention, resume."
import pytest
import torch
from torch import nn, optim

from miniai.schedbase import SchedulerBase, StatefulSchedulerBase, get_field, set_field, resolve_field

def adamw(**kw): return optim.AdamW(nn.Linear(2, 1).parameters(), **{'lr': 0.1, **kw})
def sgd(**kw): return optim.SGD(nn.Linear(2, 1).parameters(), **{'lr': 0.1, **kw})

# pytorch-accelerated's documentation examples, unchanged but for the import
class MilestoneLrScheduler(StatefulSchedulerBase):
    def __init__(self, optimizer, gamma=0.5, epoch_milestones=(2, 4, 5), num_steps_per_epoch=100):
        super().__init__(optimizer, param_group_field="lr")
        self.milestones = set((num_steps_per_epoch * milestone for milestone in epoch_milestones))
        self.gamma = gamma
    def get_updated_values(self, num_updates: int):
        if num_updates in self.milestones:
            lr_values = [group[self.param_group_field] for group in self.optimizer.param_groups]
            return [lr * self.gamma for lr in lr_values]

class StepWdScheduler(StatefulSchedulerBase):
    def __init__(self, optimizer, n=1000, gamma=1.1):
        super().__init__(optimizer, param_group_field="weight_decay")
        self.n = n
        self.gamma = gamma
    def get_updated_values(self, num_updates: int):
        if num_updates % self.n == 0 and num_updates > 0:
            wd_values = [group[self.param_group_field] for group in self.optimizer.param_groups]
            return [wd * self.gamma for wd in wd_values]

def test_docs_examples_coexist_on_one_optimizer():
    opt = adamw(weight_decay=0.01)
    lr_s,wd_s = MilestoneLrScheduler(opt, epoch_milestones=(1, 2), num_steps_per_epoch=4), StepWdScheduler(opt, n=3, gamma=2.)
    seen = []
    for _ in range(9):
        seen.append((opt.param_groups[0]['lr'], opt.param_groups[0]['weight_decay']))
        opt.step(); lr_s.step(); wd_s.step()
    assert [l for l,_ in seen] == [0.1]*4 + [0.05]*4 + [0.025]
    assert [w for _,w in seen] == [0.01]*3 + [0.02]*3 + [0.04]*3

def test_real_pytorch_accelerated_cannot_instantiate_its_own_examples():
    pa = pytest.importorskip('pytorch_accelerated.schedulers')
    class M(pa.StatefulSchedulerBase):
        def get_updated_values(self, n): return None
    with pytest.raises(TypeError, match='abstract'): M(adamw())

class Lin(SchedulerBase):
    "lr = base * (1 - n/10), closed form."
    closed_form = True
    def get_updated_values(self, n): return [b * (1 - min(n, 10)/10) for b in self.base_values]
class LinS(StatefulSchedulerBase, Lin): pass

def test_stateful_equals_stateless_and_torch_convention():
    o1,o2 = adamw(),adamw()
    s1,s2 = LinS(o1),Lin(o2)
    for n in range(1, 12):
        s1.step(); s2.step_update(n)
        assert o1.param_groups[0]['lr'] == o2.param_groups[0]['lr'] == pytest.approx(0.1 * (1 - min(n, 10)/10))
    # torch's LambdaLR with the same function: after n steps it holds f(n) too
    o3 = adamw(); t = torch.optim.lr_scheduler.LambdaLR(o3, lambda n: 1 - min(n, 10)/10)
    o4 = adamw(); s4 = LinS(o4)
    for _ in range(12):
        assert o3.param_groups[0]['lr'] == pytest.approx(o4.param_groups[0]['lr'])
        o3.step(); t.step(); s4.step()

def test_pytorch_accelerated_stateful_is_one_update_behind():
    pa = pytest.importorskip('pytorch_accelerated.schedulers')
    class PaLin(pa.StatefulSchedulerBase):
        def get_updated_values(self, n): return [b * (1 - min(n, 10)/10) for b in self.base_lr_values]
        def state_dict(self): return {}
        def load_state_dict(self, sd): pass
    o1,o2 = adamw(),adamw()
    theirs,ours = PaLin(o1),LinS(o2)
    lr1,lr2 = [],[]
    for _ in range(6):
        lr1.append(o1.param_groups[0]['lr']); lr2.append(o2.param_groups[0]['lr'])
        theirs.step(); ours.step()
    assert lr1[0] == lr1[1] == 0.1           # f(0) used for two updates
    assert lr1[1:] == pytest.approx(lr2[:-1])  # theirs is ours one update late

@pytest.mark.parametrize('field,opt,get', [
    ('beta1', lambda: adamw(betas=(0.9, 0.99)), lambda pg: pg['betas'][0]),
    ('beta2', lambda: adamw(betas=(0.9, 0.99)), lambda pg: pg['betas'][1]),
    ('mom', lambda: adamw(betas=(0.9, 0.99)), lambda pg: pg['betas'][0]),
    ('mom', lambda: sgd(momentum=0.9), lambda pg: pg['momentum']),
    ('eps', lambda: adamw(eps=1e-8), lambda pg: pg['eps']),
    ('weight_decay', lambda: adamw(weight_decay=0.1), lambda pg: pg['weight_decay']),
])
def test_any_field(field, opt, get):
    o = opt(); start = get(o.param_groups[0])
    s = Lin(o, field)
    s.step_update(5)
    assert get(o.param_groups[0]) == pytest.approx(start/2)
    if 'betas' in o.param_groups[0]:
        other = o.param_groups[0]['betas'][1 if resolve_field(o.param_groups[0], field) == 'beta1' else 0]
        assert other in (0.9, 0.99)
    assert s.fields == (field,)

@pytest.mark.parametrize('field,opt,msg', [
    ('beta1', lambda: sgd(momentum=0.9), "field='beta1' needs a 'betas'"),
    ('mom', lambda: optim.Adagrad(nn.Linear(2, 1).parameters()), "field='mom'"),
    ('gamma', lambda: adamw(), "field='gamma' is not in the param group"),
])
def test_bad_field_is_clear(field, opt, msg):
    with pytest.raises(ValueError, match=msg.replace('(', r'\(')): Lin(opt(), field)

def test_not_an_optimizer():
    with pytest.raises(TypeError, match='needs a torch optimizer'): Lin([1, 2, 3])

def test_resume_both_orders():
    def trained(n):
        o = adamw(); s = LinS(o)
        for _ in range(n): o.step(); s.step()
        return o, s
    oa,sa = trained(4)
    # optimizer state first, then a new scheduler, then its state
    ob = adamw(); ob.load_state_dict(oa.state_dict()); sb = LinS(ob); sb.load_state_dict(sa.state_dict())
    # a new scheduler first, then the optimizer state, then the scheduler state
    oc = adamw(); sc = LinS(oc); oc.load_state_dict(oa.state_dict()); sc.load_state_dict(sa.state_dict())
    for _ in range(8):
        assert ob.param_groups[0]['lr'] == oc.param_groups[0]['lr'] == oa.param_groups[0]['lr']
        sa.step(); sb.step(); sc.step()

def test_get_set_field_helpers():
    pg = adamw(betas=(0.9, 0.99)).param_groups[0]
    set_field(pg, 'beta2', 0.95)
    assert pg['betas'] == (0.9, 0.95) and get_field(pg, 'beta2') == 0.95 and get_field(pg, 'mom') == 0.9
