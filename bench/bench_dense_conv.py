"""Issue 20: a 3x3 convolution on a tiny image, as one matmul (`miniai.resnet.conv_as_matmul`, which `DenseConv2d`
uses in `resnet()` on 2x2 images). Where `--preset best`'s training step got cheaper.

Profiled on 2026-12-07 (AVX2 machine, fp32, 2 threads), the ResNet's step spent 55% in convolution backward; its
last stage's 128->128 3x3 convolution on a 2x2 image took 4.4x its forward there. With padding 1 on a 2x2 image,
every output pixel sees every input pixel through a different tap of the kernel, so the convolution is a dense
linear map from the 2*2*128 inputs to the 2*2*128 outputs, whose matrix is made from the kernel's taps (zeros
where a tap falls on the padding; since 2026-12-08 by a matmul with a 0/1 matrix instead of a gather): one GEMM forward, two backward, and none of the 5/9 of the multiply-adds that
land on padding.

Default: for each 3x3 convolution shape of `resnet()` (batch 256, channels last), forward + backward of `F.conv2d`
against `conv_as_matmul`, alternated, medians, with the largest difference of outputs and gradients. `--step`: the
figure the decision rests on, the whole training step of `resnet()` with `nn.Conv2d` against `DenseConv2d` in its
blocks (`step_ms`, also in `make bench`). Run: `python bench/bench_dense_conv.py [--threads 2] [--bf16] [--step]`."""
import argparse, statistics, time
import torch
import torch.nn.functional as F
from torch import nn

from miniai.resnet import DenseConv2d, conv_as_matmul, resnet

SHAPES = [(16, 16, 14, 1), (16, 32, 14, 2), (32, 32, 7, 1), (32, 64, 7, 2), (64, 64, 4, 1), (64, 128, 4, 2), (128, 128, 2, 1)]

def fwd_bwd_ms(f, x, w, n=30, warm=5)->float:
    """Median ms of `f(x, w)` and its backward from a gradient like a real layer's: a dense tensor of the output's shape,
    dtype and memory format. (`f(x, w).sum().backward()`, the first version, sent back an expanded tensor of ones
    (stride 0), which the convolution's backward first copies out: that made conv2d look slower than it is.)"""
    with torch.no_grad(): y = f(x, w)
    g = torch.randn_like(y)  # randn_like keeps y's dtype and memory format
    ts = []
    for i in range(n + warm):
        xx, ww = x.detach().requires_grad_(), w.detach().requires_grad_()
        t = time.perf_counter(); f(xx, ww).backward(g); ts.append(time.perf_counter() - t)
    return statistics.median(ts[warm:]) * 1e3

def main(threads=2, bf16=False, rounds=3, bs=256):
    torch.set_num_threads(threads); torch.manual_seed(0)
    rows = []
    for c,o,hw,s in SHAPES:
        x = torch.randn(bs, c, hw, hw).contiguous(memory_format=torch.channels_last); w = torch.randn(o, c, 3, 3) * (2 / (9*c))**0.5
        conv = lambda x, w: F.conv2d(x, w, stride=s, padding=1)
        dense = lambda x, w: conv_as_matmul(x, w, padding=1, stride=s)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            xa, wa = x.detach().requires_grad_(), w.detach().requires_grad_(); a = conv(xa, wa).float(); g = torch.randn_like(a); a.backward(g)
            xb, wb = x.detach().requires_grad_(), w.detach().requires_grad_(); b = dense(xb, wb).float(); b.backward(g)
            err = max((a - b).abs().max().item() / a.abs().max().item(), (xa.grad - xb.grad).abs().max().item() / xa.grad.abs().max().item(),
                      (wa.grad - wb.grad).abs().max().item() / wa.grad.abs().max().item())
            ts = [(fwd_bwd_ms(conv, x, w), fwd_bwd_ms(dense, x, w)) for _ in range(rounds)]
        tc, td = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        rows.append(dict(shape=f"{c}->{o} on {hw}x{hw}, stride {s}", conv_ms=tc, dense_ms=td, ratio=td/tc, rel_err=err))
        print(f"{rows[-1]['shape']:26s} conv2d {tc:6.2f} ms   dense {td:6.2f} ms   ratio {td/tc:5.2f}   largest relative difference {err:.1e}")
    return rows

def step_ms(nfs=(16, 32, 64, 128), threads:int=2, rounds:int=4, n_batches:int=80, bs:int=256)->dict:
    """The decision's figure: ms per training step of `resnet(nfs)` (fp32, channels last, miniai's AdamW, real
    Fashion-MNIST batches) with `nn.Conv2d` in its blocks against `DenseConv2d` (the default), alternated pass by pass,
    the same initial weights; medians of `rounds` passes of `n_batches` steps."""
    from miniai.datasets import get_dls
    from miniai.optim import AdamW
    before = torch.get_num_threads(); torch.set_num_threads(threads)
    batches = [(xb.contiguous(memory_format=torch.channels_last), yb) for xb,yb in get_dls(bs=bs).train][:n_batches]
    def make(conv_cls):
        torch.manual_seed(0); m = resnet(nfs=nfs, conv_cls=conv_cls).to(memory_format=torch.channels_last)
        return m, AdamW(m.parameters(), lr=1e-2, eps=1e-5)
    runs = dict(conv2d=make(nn.Conv2d), dense=make(DenseConv2d))
    ts = {k: [] for k in runs}
    for _ in range(rounds):
        for k,(m,opt) in runs.items():
            t = time.perf_counter()
            for xb,yb in batches:
                F.cross_entropy(m(xb), yb).backward(); opt.step(); opt.zero_grad()
            ts[k].append((time.perf_counter() - t) / len(batches) * 1e3)
    torch.set_num_threads(before)
    med = {k: statistics.median(v) for k,v in ts.items()}
    return dict(nfs=nfs, threads=threads, ms_per_step=med, ratio_dense_conv2d=med['dense'] / med['conv2d'], rounds=rounds)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=2); p.add_argument('--bf16', action='store_true')
    p.add_argument('--step', action='store_true', help="only the whole training step of resnet(), both presets' widths")
    a = p.parse_args()
    if a.step:
        for nfs in ((16, 32, 64, 128), (16, 48, 96, 192)): print(step_ms(nfs, a.threads))
        raise SystemExit
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {a.threads} threads, {'bf16 autocast' if a.bf16 else 'fp32'}")
    main(a.threads, a.bf16)
