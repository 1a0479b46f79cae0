"""Issue 20: a 3x3 convolution on a tiny image, as one matmul. Where `--preset best`'s training step could get cheaper.

Profiled on 2026-12-07 (AVX2 machine, fp32, 2 threads), the ResNet's step spent 55% in convolution backward; its
last stage's 128->128 3x3 convolution on a 2x2 image took 4.4x its forward there. With padding 1 on a 2x2 image,
every output pixel sees every input pixel through a different tap of the kernel, so the convolution is a dense
linear map from the 2*2*128 inputs to the 2*2*128 outputs, whose matrix is gathered from the kernel's taps (zeros
where a tap falls on the padding): one GEMM forward, two backward, and none of the 5/9 of the multiply-adds that
land on padding. `dense_conv` builds that matrix each call (its gradient flows back to the kernel through the
gather) and works in channels-last order, where flattening (n, c, h, w) to (n, h*w*c) is free.

For each 3x3 convolution shape of `resnet()` (batch 256, channels last): forward + backward of `F.conv2d` against
`dense_conv`, alternated, medians, with the largest difference of outputs and gradients. Run:
`python bench/bench_dense_conv.py [--threads 2] [--bf16]`. Not part of `make bench`: a measurement for a decision."""
import argparse, statistics, time
import torch
import torch.nn.functional as F

def dense_index(h:int, w:int, k:int=3, stride:int=1, pad:int=1):
    "For each (output pixel, input pixel): the tap of a k x k kernel that links them, or k*k (a zero tap). And (oh, ow)."
    oh, ow = (h + 2*pad - k)//stride + 1, (w + 2*pad - k)//stride + 1
    idx = torch.full((oh*ow, h*w), k*k, dtype=torch.long)
    for i in range(oh):
        for j in range(ow):
            for p in range(k):
                for q in range(k):
                    y, x = i*stride + p - pad, j*stride + q - pad
                    if 0 <= y < h and 0 <= x < w: idx[i*ow + j, y*w + x] = p*k + q
    return idx, (oh, ow)

def dense_conv(x, weight, idx, out_hw):
    "`F.conv2d(x, weight, stride, padding)` for the `idx, out_hw` of `dense_index`, as one `F.linear`; output channels last."
    n,c,h,w = x.shape; o = weight.shape[0]; oh,ow = out_hw
    taps = F.pad(weight.flatten(2), (0, 1))  # (o, c, k*k + 1): the extra tap is 0
    big = taps[:, :, idx].permute(2, 0, 3, 1).reshape(oh*ow*o, h*w*c)  # rows (pixel, o), columns (pixel, c)
    return F.linear(x.permute(0, 2, 3, 1).reshape(n, h*w*c), big).view(n, oh, ow, o).permute(0, 3, 1, 2)

SHAPES = [(16, 16, 14, 1), (16, 32, 14, 2), (32, 32, 7, 1), (32, 64, 7, 2), (64, 64, 4, 1), (64, 128, 4, 2), (128, 128, 2, 1)]

def fwd_bwd_ms(f, x, w, n=30, warm=5)->float:
    ts = []
    for i in range(n + warm):
        xx, ww = x.detach().requires_grad_(), w.detach().requires_grad_()
        t = time.perf_counter(); f(xx, ww).float().sum().backward(); ts.append(time.perf_counter() - t)
    return statistics.median(ts[warm:]) * 1e3

def main(threads=2, bf16=False, rounds=3, bs=256):
    torch.set_num_threads(threads); torch.manual_seed(0)
    rows = []
    for c,o,hw,s in SHAPES:
        x = torch.randn(bs, c, hw, hw).contiguous(memory_format=torch.channels_last); w = torch.randn(o, c, 3, 3) * (2 / (9*c))**0.5
        idx, out_hw = dense_index(hw, hw, 3, s, 1)
        conv = lambda x, w: F.conv2d(x, w, stride=s, padding=1)
        dense = lambda x, w: dense_conv(x, w, idx, out_hw)
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

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=2); p.add_argument('--bf16', action='store_true')
    a = p.parse_args()
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {a.threads} threads, {'bf16 autocast' if a.bf16 else 'fp32'}")
    main(a.threads, a.bf16)
