"""README.md and the pages under docs/ say what is true: every Python block runs, in a fresh process, and the
course table's names import from the modules it names.

The blocks run as written, with two cuts so the whole file takes seconds: Fashion-MNIST is cut to its first 2,048
training and 512 test images (`get_dls` is wrapped before the block imports miniai), and torch uses one thread. The
blocks run in a temporary folder (they may write checkpoints)."""
import fnmatch, importlib, re, subprocess, sys
from pathlib import Path
import pytest
from conftest import real_data

ROOT = Path(__file__).parent.parent
PAGES = [ROOT/'README.md', *sorted((ROOT/'docs').glob('*.md'))]

def python_blocks(path:Path)->list:
    "The ```python blocks of a markdown file, as (first line number, source)."
    text = path.read_text()
    return [(text[:m.start()].count('\n') + 2, m.group(1)) for m in re.finditer(r'^```python\n(.*?)^```', text, re.M | re.S)]

BLOCKS = [(p, n, src) for p in PAGES for n,src in python_blocks(p)]

PRELUDE = '''
import torch, matplotlib; torch.set_num_threads(1); matplotlib.use('Agg')
import miniai.datasets as _d
_get_dls = _d.get_dls
def get_dls(*args, n_train=None, n_valid=None, **kwargs):
    return _get_dls(*args, n_train=min(n_train or 2048, 2048), n_valid=min(n_valid or 512, 512), **kwargs)
_d.get_dls = get_dls  # before `miniai.all` is imported, so its name is this one
'''

def test_readme_has_python_blocks():
    assert len(python_blocks(ROOT/'README.md')) >= 3

@real_data
@pytest.mark.parametrize('page,line,src', BLOCKS, ids=[f'{p.name}:{n}' for p,n,_ in BLOCKS])
def test_block_runs_in_a_fresh_process(page, line, src, tmp_path):
    r = subprocess.run([sys.executable, '-c', PRELUDE + src], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{page.name}, the block at line {line} failed:\n{r.stderr[-3000:]}"

def _table(heading:str)->list:
    "The rows of the first markdown table after `heading` in README.md, as lists of cells."
    text = (ROOT/'README.md').read_text()
    part = text[text.index(heading):]
    rows = [l for l in part.splitlines() if l.startswith('|')]
    rows = rows[:next((i for i in range(1, len(rows)) if not rows[i].startswith('|')), len(rows))]
    return [[c.strip() for c in r.strip('|').split('|')] for r in rows[2:]]

def _ticked(cell:str)->list: return re.findall(r'`([^`]+)`', cell)
def _modules(cell:str)->list: return [t for t in _ticked(cell) if re.fullmatch(r'miniai(\.\w+)*', t)]
def _names(cell:str)->list:
    "The identifiers named in `cell` before its first module: `OneCycle(opt, T_max)` names OneCycle."
    cut = cell.find('`miniai'); cell = cell if cut < 0 else cell[:cut]
    return [m.group(0) for t in _ticked(cell) if (m := re.match(r'[A-Za-z][\w*]*', t))]

def _has(mod:str, name:str)->bool:
    m = importlib.import_module(mod)
    return any(fnmatch.fnmatchcase(n, name) for n in dir(m)) if '*' in name else hasattr(m, name)

COURSE = _table('## Coming from the fast.ai course')

def test_course_table_is_read():
    assert len(COURSE) >= 15 and all(len(r) == 2 for r in COURSE)

@pytest.mark.parametrize('course,ours', COURSE, ids=[r[0][:40] for r in COURSE])
def test_course_table_is_true(course, ours):
    """A name the table maps imports from the course module it names, and from the miniai module it maps it to; a
    name it says is not provided is not in `miniai.all`."""
    names = _names(course)
    if ours.startswith('not provided'):
        import miniai.all
        for n in names: assert not hasattr(miniai.all, n), f"{n} is provided: the table is out of date"
        return
    ours_names = names if ours.startswith('same names') else _names(ours)
    if set(names) <= set(ours_names):  # the course's own name is kept: it imports from the course's module too
        for mod in _modules(course):
            for n in names: assert _has(mod, n), f"{n} is not in {mod}"
    for mod in _modules(ours) or _modules(course):
        for n in ours_names: assert _has(mod, n), f"{n} is not in {mod}"

FASTAI = _table('## Coming from fastai')

@pytest.mark.parametrize('fastai,ours', FASTAI, ids=[r[0][:40] for r in FASTAI])
def test_fastai_table_is_true(fastai, ours):
    "Where the table says miniai has fastai's name, a Learner has it (miniai.recipes loaded, as miniai.all does)."
    import miniai.all  # noqa: F401  (miniai.recipes adds the fit recipes and learn.recorder)
    from miniai.learner import TrainLearner
    if not ours.startswith(('the same', 'refused')): return
    for t in _ticked(fastai):
        for m in re.findall(r'learn\.(\w+)', t):
            if ours.startswith('the same'): assert hasattr(TrainLearner, m), f"learn.{m}: the table says miniai has it"
            else:  # refused: with an error that names it
                with pytest.raises(AttributeError, match=m): getattr(TrainLearner.__new__(TrainLearner), m)

def test_fastai_table_is_read():
    assert len(FASTAI) >= 10
