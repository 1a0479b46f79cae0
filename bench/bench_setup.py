"""`make train`'s and `make test`'s set-up check when everything is installed: `bash tools/setup.sh` now, against the
check it made until 2026-12-07 (`import miniai.learner` from outside the tree, which imported torch), alternated.

Both run as subprocesses with the same Python; the figure that counts is the ratio of medians in this run."""
import statistics, subprocess, sys, time
from pathlib import Path

repo = Path(__file__).resolve().parent.parent

def _wall(cmd, cwd)->float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t

def bench_setup(rounds:int=5)->dict:
    "Seconds (median of `rounds`, alternated) of the whole up-to-date `setup.sh` and of the old check's one import."
    venv_py = str(Path(sys.executable).absolute())
    new, old = [], []
    for _ in range(rounds):
        new.append(_wall(['bash', str(repo/'tools/setup.sh')], repo))
        old.append(_wall([venv_py, '-c', 'import miniai.learner'], '/'))
    med = dict(setup_sh_now=statistics.median(new), old_check_alone=statistics.median(old))
    return dict(seconds=med, ratio_now_old=med['setup_sh_now'] / med['old_check_alone'], rounds=rounds)

if __name__ == '__main__': print(bench_setup())
