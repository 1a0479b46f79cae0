"Issue 8's generated bad inputs (tools/reliability.py) as a regression test: every case is a clear error or accepted."
import importlib.util, os, tempfile
from pathlib import Path
import pytest
import torch

spec = importlib.util.spec_from_file_location('reliability', Path(__file__).parent.parent/'tools'/'reliability.py')
rel = importlib.util.module_from_spec(spec); spec.loader.exec_module(rel)

def _cases(area, tmp):
    return {'schedulers': rel.sched_cases, 'learner': rel.learner_cases,
            'callbacks': lambda: rel.callback_cases(tmp), 'data': lambda: rel.data_cases(tmp)}[area]()

@pytest.mark.parametrize('area', ['schedulers', 'learner', 'callbacks', 'data'])
def test_no_generated_case_crashes_or_is_unclear(area, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # callbacks write their default files here
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    try:
        cases = list(_cases(area, Path(tempfile.mkdtemp(dir=tmp_path))))
        assert len(cases) > 40  # the generator really generated
        bad = []
        for name,arg,v,fn,*_ in cases:
            out,detail = rel.run_case(fn, arg, v)
            if out == 'other': bad.append(f'{name} {rel._short(v)}: {detail}')
    finally: torch.set_num_threads(threads)
    assert not bad, '\n'.join(bad)

# Issue 8 item 4 outside the schedulers: every number the learner and the callbacks take is accepted in every form
import numpy as np
from miniai.learner import TrainLearner, MomentumLearner, GradAccumCB, LRFinderCB, ThreadGuardCB, MetricsCB
from miniai.checkpoint import CheckpointCB, EarlyStoppingCB, SaveBestCB

FORMS = [lambda v: v, np.float64, np.float32, lambda v: np.array(v), torch.tensor]
INT_FORMS = [lambda v: v, np.int64, np.int32, lambda v: np.array(v), torch.tensor]

def _model(): return torch.nn.Linear(2, 1)
def _dls():
    b = [(torch.randn(4, 2), torch.randn(4, 1)) for _ in range(3)]
    return type('D', (), dict(train=b, valid=b[:1]))()

@pytest.mark.parametrize('form', range(5))
def test_numbers_in_every_form_learner_and_callbacks(form, tmp_path):
    f,i = FORMS[form],INT_FORMS[form]
    learn = TrainLearner(_model(), _dls(), torch.nn.functional.mse_loss, lr=f(0.25))
    assert learn.lr == 0.25 and type(learn.lr) is float
    learn.fit(i(1), lr=f(0.5))
    assert learn.opt.param_groups[0]['lr'] == 0.5
    assert MomentumLearner(_model(), _dls(), torch.nn.functional.mse_loss, mom=f(0.5)).mom == 0.5
    assert GradAccumCB(i(3)).n == 3 and LRFinderCB(gamma=f(1.5)).gamma == 1.5 and ThreadGuardCB(factor=f(4.), patience=i(2)).patience == 2
    ck = CheckpointCB(tmp_path/'c.pt', every_epochs=i(2), every_updates=i(5))
    assert (ck.every_epochs, ck.every_updates) == (2, 5)
    es = EarlyStoppingCB(patience=i(2), min_delta=f(0.5))
    assert (es.patience, es.min_delta) == (2, 0.5)
    assert SaveBestCB(path=tmp_path/'b.pt', min_delta=f(0.25)).min_delta == 0.25

@pytest.mark.parametrize('bad', [True, 'x', float('nan'), float('inf'), [1], torch.tensor([1., 2.]), None])
def test_bad_numbers_refused_naming_them(bad):
    for make,name in [(lambda: TrainLearner(_model(), _dls(), lr=bad), 'lr='), (lambda: GradAccumCB(bad), 'n='),
                      (lambda: EarlyStoppingCB(patience=bad), 'patience='), (lambda: LRFinderCB(gamma=bad), 'gamma=')]:
        with pytest.raises((ValueError, TypeError)) as e: make()
        assert name in str(e.value)
    for bad_bool in ('no', 0, None):
        with pytest.raises(ValueError, match='must be True or False'): MetricsCB(train_metrics=bad_bool)
