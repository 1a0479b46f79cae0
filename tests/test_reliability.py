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
