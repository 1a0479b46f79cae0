"""Every notebook runs top to bottom in a fresh Jupyter kernel (a real ipykernel, as "Run All" does; `#| slow` cells
aside: `make nbslow` runs those), with no error and no figure shown as the text `<Figure size ...>`."""
import json, os
from pathlib import Path
import pytest
from conftest import slow

jc = pytest.importorskip('jupyter_client')
NBS = sorted((Path(__file__).parent.parent/'nbs').glob('*.ipynb'))

def run_in_kernel(path:Path, timeout:int=600)->list:
    "Problems found running the notebook's cells (slow ones skipped) in a new kernel: errors and figures shown as text."
    env = {k:v for k,v in os.environ.items() if k != 'MPLBACKEND'}  # the kernel picks its own backend, as Jupyter's does
    km,kc = jc.manager.start_new_kernel(kernel_name='python3', env=env, cwd=str(path.parent))
    problems = []
    try:
        for c in json.loads(path.read_text())['cells']:
            src = ''.join(c['source'])
            if c['cell_type'] != 'code' or src.lstrip().startswith('#| slow'): continue
            msg_id = kc.execute(src, store_history=False)
            while True:
                m = kc.get_iopub_msg(timeout=timeout)
                if m['parent_header'].get('msg_id') != msg_id: continue
                t,content = m['msg_type'],m['content']
                if t == 'status' and content['execution_state'] == 'idle': break
                if t == 'error': problems.append(f"cell {c['id']}: {content['ename']}: {content['evalue'][:200]}")
                d = content.get('data', {}) if t in ('execute_result', 'display_data') else {}
                if d.get('text/plain', '').startswith('<Figure size') and 'image/png' not in d:
                    problems.append(f"cell {c['id']}: a figure shown as text: {d['text/plain']}")
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)
    return problems

@slow  # ~4 minutes for all on 2 cores: `make test` runs the same cells through nbdev-test instead (40 s)
@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook_runs_in_a_fresh_kernel(nb):
    problems = run_in_kernel(nb)
    assert not problems, '\n'.join(problems)

def _next_link(path:Path):
    "The notebook a notebook's last cell points the reader to (`Next: [`X`](X.ipynb) ...`), or None."
    import re
    c = json.loads(path.read_text())['cells'][-1]
    m = re.match(r"Next: \[`([^`]+)`\]\(([^)]+)\.ipynb\)", ''.join(c['source'])) if c['cell_type'] == 'markdown' else None
    if m: assert m.group(1) == m.group(2), f"{path.name}: the link's text {m.group(1)} and target {m.group(2)} differ"
    return m and m.group(2)

def test_the_next_links_walk_every_notebook_once():
    """From 00_core, following each notebook's closing `Next:` link reaches every notebook once, ending at 43_all, in
    the order of their numbers: the numbers are the reading order."""
    names,seen,nb = {p.stem for p in NBS},[],'00_core'
    while nb is not None:
        assert nb in names, f"{seen[-1]} links to {nb}.ipynb, which does not exist"
        assert nb not in seen, f"the Next: links loop: {' -> '.join(seen + [nb])}"
        seen.append(nb); nb = _next_link(Path(NBS[0].parent)/f'{nb}.ipynb')
    assert seen[-1] == '43_all', f"the chain ends at {seen[-1]}, not at 43_all"
    missing = sorted(names - set(seen))
    assert not missing, f"no Next: link leads to {missing}"
    assert seen == [p.stem for p in NBS], f"the reading order {seen} is not the order of the numbers"
    assert len({n[:2] for n in names}) == len(names), "two notebooks share a number"
