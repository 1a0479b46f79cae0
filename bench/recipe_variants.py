"""Issue 20: does a trick of the field buy accuracy at the same training cost? Measured on held-out images.

Each run trains one recipe variant on the first 50,000 Fashion-MNIST training images and scores it on the last 10,000
(images 50,000-59,999), so the test set plays no part in the choice. `--test` trains on all 60,000 and scores on the
test set instead. One torch thread; two runs may share the 2 cores (accuracy, not time, is what this measures: the
variants cost the same FLOPs per epoch, `secs` is only a guide).

- `--model best`: the ResNet of `miniai fit --preset best` as it trains (resnet((16, 32, 64, 128)), shifts of one pixel
  and flips, AdamW eps 1e-5, OneCycle pct_start 0.25, lr 2e-2, batch 256, 14 epochs, channels last, bf16 where
  `auto_precision` picks it), scored without and with flip TTA. Variants: `--ls` label smoothing, `--erase` random
  erasing after the shifts (probability per image), `--ema` an EMA of the weights (`EMACB`, warmed up, validated on),
  `--conv conv2d` the blocks' convolutions as `nn.Conv2d` (the model before `DenseConv2d`; the lines written before
  the option existed count as that), `--nfs 16,48,96,192` the wider ResNet of `best-long` (with `--epochs 24` its recipe).
- `--model default`: `fast_net` as `miniai fit` trains it (lr 4e-2, batch 256, 4 epochs). Variants: `--epochs`,
  `--lr`, `--bs`, `--ls`, `--pct` (OneCycle's pct_start).

Each result is one JSON line appended to bench/variants_<model>.jsonl. Run:
`python bench/recipe_variants.py --model best --ls 0.1 --seed 1 --tag ls_s1`; `--summary` prints, per variant, the mean
and range over the seeds run (what docs/benchmarks.md shows)."""
import argparse, json, time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torcheval.metrics import MulticlassAccuracy
from miniai.activations import set_seed
from miniai.threads import keep_freed_memory
from miniai.learner import MetricsCB, TrainLearner, DeviceCB
from miniai.sched import BatchSchedCB, OneCycle
from miniai.precision import MixedPrecisionCB, ChannelsLastCB, auto_precision
from miniai.optim import AdamW
from miniai.batches import MemoryDL, DataLoaders
from miniai.datasets import fashion_mnist_tensors, FASHION_MEAN, FASHION_STD

here = Path(__file__).parent
DEFAULTS = {'best': dict(epochs=14, lr=2e-2), 'default': dict(epochs=4, lr=4e-2)}  # each model's recipe
DEFAULT_VARIANT = dict(bs=256, ls=0., erase=0., ema=0., pct=0.25, test=False, precision='fp32', threads=1, conv='dense', nfs='16,32,64,128')  # and the rest of it

def args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', choices=list(DEFAULTS), default='best')
    p.add_argument('--epochs', type=int); p.add_argument('--lr', type=float); p.add_argument('--bs', type=int, default=256)
    p.add_argument('--ls', type=float, default=0., help='label smoothing of the cross-entropy loss')
    p.add_argument('--erase', type=float, default=0., help='best: random erasing, the probability per image')
    p.add_argument('--ema', type=float, default=0., help='best: the decay of an EMA of the weights (0: none)')
    p.add_argument('--pct', type=float, default=0.25, help="OneCycle's pct_start")
    p.add_argument('--nfs', default='16,32,64,128', help="best: the ResNet's stage widths ('16,48,96,192': best-long's)")
    p.add_argument('--conv', choices=('dense', 'conv2d'), default='dense',
                   help="best: the blocks' 3x3 convolutions: DenseConv2d (resnet()'s default from 2026-12-07) or nn.Conv2d (before)")
    p.add_argument('--seed', type=int, default=42); p.add_argument('--test', action='store_true')
    p.add_argument('--tag', default=''); p.add_argument('--summary', action='store_true', help='print the table, train nothing')
    p.add_argument('--save', help="also write the trained model's weights to this file (`learn.save`)")
    a = p.parse_args(argv)
    for k,v in DEFAULTS[a.model].items():
        if getattr(a, k) is None: setattr(a, k, v)
    return a

def main(a):
    torch.set_num_threads(1)
    keep_freed_memory()  # as `miniai fit` does: the time of a run, not its result, depends on it
    set_seed(a.seed)
    d = fashion_mnist_tensors()
    (xt, yt), (xv, yv) = d['train'], d['test']
    if not a.test: xt, yt, xv, yv = xt[:50000], yt[:50000], xt[50000:], yt[50000:]
    st = dict(mean=FASHION_MEAN, std=FASHION_STD)
    dls = DataLoaders(MemoryDL(xt, yt, a.bs, shuffle=True, **st), MemoryDL(xv, yv, 1024, **st))
    metrics = MetricsCB(accuracy=MulticlassAccuracy()); metrics.listeners.clear()
    cbs = [DeviceCB(), metrics, BatchSchedCB(partial(OneCycle, pct_start=a.pct)), ChannelsLastCB()]
    if auto_precision() == 'bf16': cbs.append(MixedPrecisionCB('bf16'))  # as `miniai fit --precision auto`
    ema = None
    if a.model == 'best':
        from miniai.resnet import resnet, DenseConv2d
        from miniai.augment import BatchTransformCB, random_crop_flip, random_erase
        from miniai.callbacks import EMACB
        def shift_flip_erase(x): return random_erase(random_crop_flip(x, pad=1), p=a.erase)
        cbs.append(BatchTransformCB(shift_flip_erase if a.erase else partial(random_crop_flip, pad=1)))
        if a.ema: cbs.append(ema := EMACB(decay=a.ema, warmup=True, validate_ema=True))
        model = resnet(nfs=tuple(int(n) for n in a.nfs.split(',')), conv_cls=torch.nn.Conv2d if a.conv == 'conv2d' else DenseConv2d)
    else:
        from miniai.fastnet import fast_net
        model = fast_net()
    loss = partial(F.cross_entropy, label_smoothing=a.ls) if a.ls else F.cross_entropy
    learn = TrainLearner(model, dls, loss, lr=a.lr, cbs=cbs, opt_func=partial(AdamW, eps=1e-5))
    t = time.perf_counter(); learn.fit(a.epochs); secs = time.perf_counter() - t
    res = dict(vars(a), accs=[round(r['accuracy'], 4) for r in metrics.history], acc=round(metrics.history[-1]['accuracy'], 4),
               secs=round(secs, 1), precision=auto_precision(), threads=torch.get_num_threads())
    if a.model == 'best':
        from miniai.augment import flip_tta
        if ema is not None: learn.model.load_state_dict(ema.ema)
        pr, y = flip_tta(learn)
        res['tta'] = round((pr.argmax(-1) == y).float().mean().item(), 4)
    if a.save: learn.save(a.save)
    print(json.dumps(res))
    with open(here/f'variants_{a.model}.jsonl', 'a') as f: f.write(json.dumps(res) + '\n')
    return res

_RESULT = ('seed', 'tag', 'accs', 'acc', 'tta', 'secs', 'summary', 'save')  # what a run gives; every other field says what it ran

def summary(model:str)->list:
    "One row per variant in bench/variants_<model>.jsonl: its settings, seeds, and mean (min-max) of acc and tta."
    runs = [json.loads(l) for l in open(here/f'variants_{model}.jsonl')]
    base,groups = {**DEFAULT_VARIANT, **DEFAULTS[model]},{}
    for r in runs:
        if model == 'best': r.setdefault('conv', 'conv2d'); r.setdefault('nfs', '16,32,64,128')  # lines before --conv / --nfs
        else: r.pop('conv', None); r.pop('nfs', None)  # fast_net has neither DenseConv2d nor stages: these change nothing there
        if r['tag'] == 'repro': continue  # a rerun of a variant already there, by this script: checks it, adds no seed
        groups.setdefault(json.dumps({k: v for k,v in r.items() if k not in _RESULT}, sort_keys=True), []).append(r)
    rows = []
    for k,rs in groups.items():
        row = dict(variant={kk: v for kk,v in json.loads(k).items() if kk != 'model' and v != base.get(kk)}, seeds=[r['seed'] for r in rs])
        for m in ('acc', 'tta'):
            if m in rs[0]: row[m] = (sum(r[m] for r in rs)/len(rs), min(r[m] for r in rs), max(r[m] for r in rs))
        rows.append(row)
    return rows

def table(model:str)->str:
    "`summary(model)` as text: one line per variant (only the settings that differ from the recipe's), seeds, acc, tta."
    lines = []
    for r in summary(model):
        v = ', '.join(f'{k}={x}' for k,x in r['variant'].items()) or 'the recipe as it is'
        lines.append(f"{v:42s} seeds {str(r['seeds']):12s} " + '  '.join(f"{m} {r[m][0]:.4f} ({r[m][1]:.4f}-{r[m][2]:.4f})" for m in ('acc', 'tta') if m in r))
    return '\n'.join(lines)

if __name__ == '__main__':
    a = args()
    if a.summary: print(table(a.model))
    else: main(a)
