"""README.md and the pages under docs/ say what is true: every Python block runs, in a fresh process, and the
course table's names import from the modules it names.

The blocks run as written, with two cuts so the whole file takes seconds: Fashion-MNIST is cut to its first 2,048
training and 512 test images (`get_dls` is wrapped before the block imports miniai), and torch uses one thread. The
blocks run in a temporary folder (they may write checkpoints)."""
import fnmatch, importlib, itertools, json, re, subprocess, sys
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
    lines = part.splitlines()
    start = next(i for i,l in enumerate(lines) if l.startswith('|'))
    rows = [l for l in itertools.takewhile(lambda l: l.startswith('|'), lines[start:])]  # this table only
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
    "Where the table says miniai has fastai's name, a Learner has it (its class binds the recipes and `recorder`: no import adds them)."
    from miniai.learner import TrainLearner
    if not ours.startswith(('the same', 'refused')): return
    for t in _ticked(fastai):
        for m in re.findall(r'learn\.(\w+)', t):
            if ours.startswith('the same'): assert hasattr(TrainLearner, m), f"learn.{m}: the table says miniai has it"
            else:  # refused: with an error that names it
                with pytest.raises(AttributeError, match=m): getattr(TrainLearner.__new__(TrainLearner), m)

def test_fastai_table_is_read():
    assert len(FASTAI) >= 10

NBS = {p.stem: p for p in (ROOT/'nbs').glob('*.ipynb')}
TUTORIAL = _table('## The tutorial: the notebooks in reading order')

def _default_exp(nb:Path):
    "The module a notebook exports to (its `#| default_exp`), or None."
    for c in json.loads(nb.read_text())['cells']:
        if m := re.search(r'^#\| default_exp (\S+)', ''.join(c['source']), re.M): return m.group(1)

def test_tutorial_table_has_each_notebook_once_with_its_module():
    "One row per notebook in nbs/, no row for a notebook that is not there; the module a row names is the one its notebook exports."
    stems = [_ticked(r[0])[0] for r in TUTORIAL]
    assert len(stems) == len(set(stems)), f"a notebook is listed twice: {stems}"
    assert set(stems) == set(NBS), f"missing from the table: {sorted(set(NBS) - set(stems))}; not in nbs/: {sorted(set(stems) - set(NBS))}"
    for r in TUTORIAL:
        mods,exp = _modules(r[1]),_default_exp(NBS[_ticked(r[0])[0]])
        assert mods == ([f'miniai.{exp}'] if exp else []), f"{r[0]} exports {exp}, the table says {r[1]}"

def test_tutorial_table_run_all_times_are_the_measured_ones():
    "The Run All column shows docs/nb_times.json's seconds (written by tools/nb_times.py), rounded to whole seconds."
    times = json.loads((ROOT/'docs'/'nb_times.json').read_text())['times']
    for r in TUTORIAL:
        nb = _ticked(r[0])[0]
        assert nb in times, f"{nb} has no measured Run All time in docs/nb_times.json: run tools/nb_times.py {nb}"
        assert times[nb]['error'] is None, f"{nb}'s measured run failed: {times[nb]['error']}"
        assert r[3] == f"{round(times[nb]['seconds'])} s", f"{nb}: the table says {r[3]!r}, the measurement {times[nb]['seconds']} s"

LAYOUT = _table('## How the code is laid out')

def test_layout_map_names_every_module_and_the_notebook_that_teaches_it():
    "Every module of the package (generated files aside) has a row; the notebook the row names exports it."
    mods = {p.stem for p in (ROOT/'miniai').glob('*.py')} - {'_modidx', '__init__'}
    rows = {_modules(r[0])[0].removeprefix('miniai.'): r for r in LAYOUT}
    assert set(rows) == mods, f"missing from the map: {sorted(mods - set(rows))}; not a module: {sorted(set(rows) - mods)}"
    for m,r in rows.items():
        nb = _ticked(r[2])[0]
        assert nb in NBS and _default_exp(NBS[nb]) == m, f"miniai.{m}: the map says {nb} teaches it, which exports {_default_exp(NBS[nb]) if nb in NBS else None}"

def _imports(mod:str)->set:
    "The miniai modules `mod`'s source imports, at its top or inside a function (`from .x import`, `from miniai.x import`, `import miniai.x`)."
    src = (ROOT/'miniai'/f'{mod}.py').read_text()
    # a module-level `__getattr__` gives a moved name at its old path (`miniai.core.Fig`), importing the new module only
    # when the old name is asked for: not a dependency of the module
    src = re.sub(r'^def __getattr__\(.*?(?=^\S|\Z)', '', src, flags=re.M | re.S)
    found = re.findall(r'^\s*from (?:\.|miniai\.)(\w+) import', src, re.M) + re.findall(r'^\s*import miniai\.(\w+)', src, re.M)
    return set(found) - {mod}

def test_layout_map_is_in_import_order():
    "The map's claim: a module imports only modules listed above it, so the import graph has no cycle and reads downward."
    order = [_modules(r[0])[0].removeprefix('miniai.') for r in LAYOUT]
    for i,m in enumerate(order):
        up = sorted(_imports(m) - set(order[:i]))
        assert not up, f"miniai.{m} imports {up}, listed below it (or not listed) in README's map"
