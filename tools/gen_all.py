"""Rewrite the export cell of nbs/43_all.ipynb from the modules' `__all__` (run after adding a public name, then
`nbdev-export`). miniai.all imports every name explicitly, so a reader sees where each comes from."""
import importlib, json, re, sys, textwrap
from pathlib import Path

NBS = Path(__file__).resolve().parent.parent/'nbs'
# Not re-exported: the course-compatibility modules (36_course_conv, 37_course_sgd, 38_course_xtras: the course's names for miniai's objects), the
# entry point, miniai.all itself, and miniai.using, whose functions are the Learner's methods (`learn.save`,
# `learn.load`, `learn.validate`, ...): bare `save`/`load`/`summary` would shadow too much in `from miniai.all import *`.
SKIP = {'all', '__main__', 'conv', 'sgd', 'xtras', 'using'}

def modules()->list:
    "Every exported module, in the notebooks' reading order (a later module's name wins, none should clash)."
    found = []
    for nb in sorted(NBS.glob('*.ipynb')):
        m = re.search(r'#\| default_exp (\w+)', nb.read_text())
        if m and m.group(1) not in SKIP: found.append(m.group(1))
    return found

MODULES = modules()
NB = Path(__file__).resolve().parent.parent/'nbs'/'43_all.ipynb'

def export_cell()->str:
    lines,names = ['#| export'],[]
    for m in MODULES:
        ns = list(importlib.import_module(f'miniai.{m}').__all__)
        names += ns
        # one-line imports of up to 100 characters, as many as needed: nbdev's rewrite to relative imports misses a
        # wrapped `from miniai.m import (...)` whose last line is shorter than its first words
        head = f'from miniai.{m} import '
        lines += [head + l.rstrip(',') for l in textwrap.wrap(', '.join(ns), 100 - len(head), break_on_hyphens=False)]
    lines.append("# nbdev builds __all__ from what a module defines; `_all_` adds these imported names to it.")
    lines.append(textwrap.fill(', '.join(repr(n) for n in names), 100, initial_indent='_all_ = [',
                               subsequent_indent='    ') + ']')
    return '\n'.join(lines)

if __name__ == '__main__':
    sys.path.insert(0, str(NB.parent.parent))
    nb = json.loads(NB.read_text())
    cell = next(c for c in nb['cells'] if ''.join(c['source']).startswith('#| export'))
    src = export_cell().split('\n')
    cell['source'] = [l + '\n' for l in src[:-1]] + [src[-1]]
    NB.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    print(f'{NB.name}: {sum(len(importlib.import_module("miniai." + m).__all__) for m in MODULES)} names')
