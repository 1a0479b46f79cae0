"""`miniai fit` end to end, against the same command at a reference commit, alternated in one run.

The reference is main when issue 11 ("the default job, faster") began: commit 1c2d08b, whose defaults trained 5 epochs
in NCHW memory order, whose `set_seed` imported torch._dynamo (about 1 s) and whose `--threads auto` paused 0.25 s to
measure the free cores. Its package is unpacked with `git archive` into a temporary folder and run with the same
Python and the same installed dependencies (PYTHONPATH puts it first), so the two runs differ only in miniai's code.

Also: the fraction of this CPU's peak the training loop reaches. FLOPs per image come from the layer shapes (a forward
hook on every Conv2d and Linear); the peak is the best of a large matmul and a mid-sized convolution, fp32 and bf16,
timed in this process with all cores. The ratio of wall times is the figure that counts; absolute seconds on a
shared machine vary by ±30%."""
import csv, os, statistics, subprocess, sys, tarfile, tempfile, time, io
from pathlib import Path

REF = '1c2d08b'
repo = Path(__file__).resolve().parent.parent

def ref_tree(ref:str=REF)->Path:
    "A temporary folder holding the `miniai` package as it was at commit `ref`."
    d = Path(tempfile.mkdtemp(prefix=f'miniai-ref-{ref}-'))
    tar = subprocess.run(['git', '-C', str(repo), 'archive', ref, 'miniai'], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t: t.extractall(d, filter='data')
    return d

def _env(pythonpath:Path|None)->dict:
    env = dict(os.environ, MPLBACKEND='Agg')
    if pythonpath is not None: env['PYTHONPATH'] = f"{pythonpath}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env

def miniai_file(pythonpath:Path|None)->str:
    "Where `import miniai` finds the package with this PYTHONPATH (checks that the reference really is the one run)."
    return subprocess.run([sys.executable, '-c', 'import miniai; print(miniai.__file__)'], env=_env(pythonpath),
                          cwd=tempfile.mkdtemp(), check=True, capture_output=True, text=True).stdout.strip()

def run_fit(pythonpath:Path|None, args=())->dict:
    "One `python -m miniai fit --quiet` in a subprocess: wall seconds, final accuracy, seconds of each epoch."
    out = Path(tempfile.mkdtemp())/'run'
    t = time.perf_counter()
    subprocess.run([sys.executable, '-m', 'miniai', 'fit', '--out', str(out), '--quiet', *args], env=_env(pythonpath),
                   cwd=out.parent, check=True)  # not the repository: Python puts the working folder first on sys.path
    wall = time.perf_counter() - t
    rows = list(csv.DictReader(open(out/'metrics.csv')))
    return dict(wall=wall, accuracy=float(rows[-1]['valid_accuracy']), epoch_seconds=[float(r['seconds']) for r in rows])

def flops_per_image(model, shape=(1, 1, 28, 28))->dict:
    """Forward and training FLOPs (2 per multiply-add) of one image through `model`'s Conv2d and Linear layers.
    Training = forward + the weight gradients (as many multiply-adds as the forward) + the input gradients (as many
    again), except for the first layer, whose input (the image) needs no gradient."""
    import torch
    from torch import nn
    macs = []
    def hook(m, a, o):
        if isinstance(m, nn.Conv2d): macs.append(o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        else: macs.append(o.numel() * m.in_features)
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad(): model.eval()(torch.zeros(shape))
    for h in hs: h.remove()
    fwd = 2 * sum(macs)
    return dict(forward=fwd, train=3 * fwd - 2 * macs[0], layers_macs=macs)

def _best_rate(f, flops:float, reps:int=5)->float:
    "GFLOP/s of the fastest of `reps` calls of `f` (after one warm-up call)."
    f(); ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return flops / min(ts) / 1e9

def peak_gflops(threads:int=None)->dict:
    "GFLOP/s of a 2048x2048 matmul and of a 64->64 3x3 conv on 64x32x32 images, fp32 and bf16 (channels last), all cores."
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads or os.cpu_count() or 1)
    res = {}
    for dt,nm in ((torch.float32, 'fp32'), (torch.bfloat16, 'bf16')):
        a = torch.randn(2048, 2048, dtype=dt); b = torch.randn(2048, 2048, dtype=dt)
        res[f'matmul_{nm}'] = _best_rate(lambda: a @ b, 2 * 2048**3)
        x = torch.randn(64, 64, 32, 32, dtype=dt).contiguous(memory_format=torch.channels_last)
        w = torch.randn(64, 64, 3, 3, dtype=dt).contiguous(memory_format=torch.channels_last)
        res[f'conv_{nm}'] = _best_rate(lambda: F.conv2d(x, w, padding=1), 2 * 64 * 64 * 32 * 32 * 64 * 9)
    res['peak'] = max(res.values())
    res['threads'] = torch.get_num_threads()
    return res

def bench_fit(rounds:int=3, n_train:int=60000, n_valid:int=10000)->dict:
    "`rounds` alternated pairs of runs (reference first, then this checkout): wall ratio, accuracies, FLOP fraction."
    from miniai.fastnet import fast_net  # the model of `miniai fit`'s default preset
    ref = ref_tree()
    where = miniai_file(ref)
    assert where.startswith(str(ref)), f"the reference run would import miniai from {where}, not from {ref}"
    runs = dict(ref=[], new=[])
    for _ in range(rounds):
        for k,pp in (('ref', ref), ('new', None)): runs[k].append(run_fit(pp))
    wall = {k: statistics.median(r['wall'] for r in v) for k,v in runs.items()}
    ratios = [n['wall'] / r['wall'] for r,n in zip(runs['ref'], runs['new'])]
    fl = flops_per_image(fast_net())
    work = fl['train'] * n_train + fl['forward'] * n_valid  # one epoch: a training pass and a validation pass
    achieved = [work * len(r['epoch_seconds']) / sum(r['epoch_seconds']) / 1e9 for r in runs['new']]
    pk = peak_gflops()
    return dict(reference=REF, runs=runs, wall_median=wall, ratio_new_ref=statistics.median(ratios), ratios=ratios,
                accuracy=dict(ref=[r['accuracy'] for r in runs['ref']], new=[r['accuracy'] for r in runs['new']]),
                mflop_per_image=dict(forward=fl['forward']/1e6, train=fl['train']/1e6),
                train_gflops=statistics.median(achieved), peak=pk, fraction_of_peak=statistics.median(achieved) / pk['peak'])

def compare(ref:str, args=(), rounds:int=1)->dict:
    """`miniai fit *args` at commit `ref` against this checkout, `rounds` alternated pairs (reference first): what a
    change did to a whole preset's run (`python bench/bench_fit.py --ref 0be7d67 --rounds 1 --preset best`)."""
    tree = ref_tree(ref)
    assert miniai_file(tree).startswith(str(tree)), f"the reference run would not import miniai from {tree}"
    runs = dict(ref=[], new=[])
    for _ in range(rounds):
        for k,pp in (('ref', tree), ('new', None)): runs[k].append(run_fit(pp, args))
    ratios = [n['wall'] / r['wall'] for r,n in zip(runs['ref'], runs['new'])]
    return dict(reference=ref, args=list(args), runs=runs, ratios=ratios, ratio_new_ref=statistics.median(ratios))

if __name__ == '__main__':
    import argparse, json
    p = argparse.ArgumentParser(description='miniai fit end to end against a reference commit, alternated')
    p.add_argument('rounds', type=int, nargs='?', default=3)
    p.add_argument('--ref', help=f'compare with this commit, not {REF} (then the options after it go to miniai fit)')
    a, rest = p.parse_known_args()
    if a.ref is None: r = bench_fit(a.rounds)
    else: r = compare(a.ref, rest, a.rounds)
    print(json.dumps({k: v for k,v in r.items() if k != 'runs'} | ({'runs': r['runs']} if a.ref else {}), indent=1))
