"`miniai.all` is generated (tools/gen_all.py) from every exported module, and no two modules export the same name."
import collections, importlib, json, sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT/'tools'))
import gen_all

def test_all_cell_is_what_gen_all_writes():
    nb = json.loads((ROOT/'nbs'/'43_all.ipynb').read_text())
    cell = next(''.join(c['source']) for c in nb['cells'] if ''.join(c['source']).startswith('#| export'))
    assert cell == gen_all.export_cell(), "nbs/43_all.ipynb is out of date: run tools/gen_all.py, then nbdev-export"

def test_modules_come_from_the_notebooks():
    assert {'learner', 'sched', 'safefile', 'checkpoint'} <= set(gen_all.MODULES) and 'all' not in gen_all.MODULES

def test_no_name_is_exported_by_two_modules():
    where = collections.defaultdict(list)
    for m in gen_all.MODULES:
        for n in importlib.import_module(f'miniai.{m}').__all__: where[n].append(m)
    twice = {n: ms for n,ms in where.items() if len(ms) > 1}
    assert not twice, f"exported by several modules (one definition each, the others import it): {twice}"

def test_the_package_imports_its_own_modules_relatively():
    "Every top-level `from miniai.X import` in the generated modules is rewritten by nbdev to `from .X import` (a wrapped import it can miss)."
    import ast
    bad = [f"{p.name}:{n.lineno}" for p in sorted((ROOT/'miniai').glob('*.py'))
           for n in ast.parse(p.read_text()).body if isinstance(n, ast.ImportFrom) and (n.module or '').startswith('miniai')]
    assert not bad, f"absolute imports of miniai at module level: {bad}"
