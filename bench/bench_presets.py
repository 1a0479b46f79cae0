"""`miniai fit --preset best` and `--preset best-long` on 3 seeds: wall time of the whole command, test accuracy, and
test accuracy with flip TTA. Each run is a real subprocess, one at a time, with the default `--threads auto`.

About 20 minutes on a 2-core CPU, so it is not part of `make bench`: run `python bench/bench_presets.py` on a quiet
machine. Results go to bench/presets_results.json as each run ends (a rerun skips the runs already there; delete the
file to start again). The targets (issue 11): >= 0.93 in <= 2 minutes, >= 0.94 in <= 5 minutes, on this 2-core CPU."""
import csv, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

here = Path(__file__).parent
RESULTS = here/'presets_results.json'
PRESETS, SEEDS = ('best', 'best-long'), (42, 1, 2)

def run(preset:str, seed:int)->dict:
    "One `miniai fit --preset P --seed S --quiet` in a subprocess: its wall seconds and its final accuracies."
    out = Path(tempfile.mkdtemp())/'run'
    exe = Path(sys.executable).with_name('miniai')
    t = time.perf_counter()
    subprocess.run([str(exe), 'fit', '--preset', preset, '--seed', str(seed), '--out', str(out), '--quiet'], check=True)
    wall = time.perf_counter() - t
    rows = list(csv.DictReader(open(out/'metrics.csv')))
    return dict(preset=preset, seed=seed, wall=round(wall, 1), epochs=len(rows), accuracy=float(rows[-1]['valid_accuracy']),
                tta_accuracy=float(rows[-1]['valid_accuracy_tta']))

def summary(res:list)->dict:
    "Mean and range of wall time, accuracy and TTA accuracy, per preset."
    out = {}
    for p in PRESETS:
        rs = [r for r in res if r['preset'] == p]
        if rs: out[p] = {k: dict(mean=sum(r[k] for r in rs)/len(rs), lo=min(r[k] for r in rs), hi=max(r[k] for r in rs))
                         for k in ('wall', 'accuracy', 'tta_accuracy')} | dict(seeds=[r['seed'] for r in rs])
    return out

def main():
    import torch
    res = json.loads(RESULTS.read_text())['runs'] if RESULTS.exists() else []
    done = {(r['preset'], r['seed']) for r in res}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    for p in PRESETS:
        for s in SEEDS:
            if (p, s) in done: continue
            r = run(p, s); res.append(r)
            print(json.dumps(r), flush=True)
            RESULTS.write_text(json.dumps(dict(machine=machine, runs=res, summary=summary(res)), indent=1) + '\n')
    for p,d in summary(res).items():
        print(f"{p}: wall {d['wall']['mean']:.0f} s ({d['wall']['lo']:.0f}-{d['wall']['hi']:.0f}), accuracy "
              f"{d['accuracy']['mean']:.4f} ({d['accuracy']['lo']:.4f}-{d['accuracy']['hi']:.4f}), with flip TTA "
              f"{d['tta_accuracy']['mean']:.4f} ({d['tta_accuracy']['lo']:.4f}-{d['tta_accuracy']['hi']:.4f}), seeds {d['seeds']}")

if __name__ == '__main__': main()
