"""`make bench`: every speed target, each measured as a ratio against a reference run side by side in this run.

Prints a summary and writes bench/results.json. Never used by tests: these machines are shared and noisy (±30%)."""
import json, os, platform, sys
from pathlib import Path

here = Path(__file__).parent
sys.path.insert(0, str(here))

def machine()->str:
    import torch
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"

def main():
    from bench_learner import bench_learner
    from bench_data import bench_data
    from bench_sched import bench_sched
    from bench_precision import bench_epoch_time, bench_accuracy
    from bench_threads import bench_threads
    from bench_fit import bench_fit, REF
    from bench_accel import run as run_procs
    from bench_ckpt import bench_ckpt
    from bench_setup import bench_setup, bench_exit
    from bench_dense_conv import step_ms
    import bench_malloc
    res = dict(machine=machine())
    print('machine:', res['machine'])
    print(f'\n== end to end (run first, while nothing else runs): miniai fit with the defaults, this checkout against {REF}, alternated')
    res['end_to_end'] = r = bench_fit()
    print(f"  wall: {REF} {r['wall_median']['ref']:.1f} s, now {r['wall_median']['new']:.1f} s (median); ratio now/{REF} "
          f"{r['ratio_new_ref']:.2f} (target: 6 s on this machine when quiet, as this ratio against today's)")
    print(f"  accuracy: {REF} " + ' '.join(f'{a:.4f}' for a in r['accuracy']['ref']) + '; now ' + ' '.join(f'{a:.4f}' for a in r['accuracy']['new']))
    print(f"  training loop: {r['mflop_per_image']['train']:.2f} MFLOP per training image, {r['train_gflops']:.0f} GFLOP/s = "
          f"{r['fraction_of_peak']:.1%} of this CPU's measured peak {r['peak']['peak']:.0f} GFLOP/s "
          f"(matmul fp32 {r['peak']['matmul_fp32']:.0f}, bf16 {r['peak']['matmul_bf16']:.0f}; conv fp32 {r['peak']['conv_fp32']:.0f}, bf16 {r['peak']['conv_bf16']:.0f})")
    print("\n== make train's set-up check, all installed: tools/setup.sh now against the old check's `import miniai.learner` alone (s, median)")
    res['setup_check'] = r = bench_setup()
    print(f"  setup.sh {r['seconds']['setup_sh_now']:.2f}, old check {r['seconds']['old_check_alone']:.2f}; ratio {r['ratio_now_old']:.3f}")
    print("\n== the end of miniai fit's process: Python's teardown against console_main's quick exit (s from the last statement, median)")
    res['exit'] = r = bench_exit()
    print(f"  normal {r['seconds']['normal']:.3f}, quick {r['seconds']['quick']:.3f}; saved {r['saved']:.2f} s")
    print("\n== keep_freed_memory(): glibc's malloc keeping what a step frees, against its own settings (fresh processes alternated, medians)")
    res['keep_freed_memory'] = rs = [bench_malloc.step_ms(m) for m in ('fast_net', 'resnet')]
    for r in rs: print(f"  {r['model']} step: {r['plain']['ms']:.2f} ms ({r['plain']['faults_per_step']:.0f} page faults), kept "
                       f"{r['keep']['ms']:.2f} ms ({r['keep']['faults_per_step']:.0f}); ratio {r['ratio_keep_plain']:.3f}")
    res['keep_freed_memory_fit'] = r = bench_malloc.fit_wall()
    print(f"  miniai fit defaults: {r['plain']['wall']:.2f} s, kept {r['keep']['wall']:.2f} s wall; ratio {r['ratio_wall']:.3f}")
    print('\n== framework overhead (s/epoch, median of interleaved rounds; target ratio <= 1.03)')
    res['learner'] = r = bench_learner()
    for k,v in r['seconds_per_epoch'].items(): print(f"  {k:28s} {v:6.3f}  ratio {r['ratio'][k]:.3f}")
    print("\n== resnet()'s training step, nn.Conv2d against DenseConv2d in its blocks (fp32, 2 threads, ms/step, median; the default since 2026-12-07)")
    res['dense_conv'] = rs = [step_ms(nfs) for nfs in ((16, 32, 64, 128), (16, 48, 96, 192))]
    for r in rs: print(f"  nfs {r['nfs']}: nn.Conv2d {r['ms_per_step']['conv2d']:.1f}, DenseConv2d {r['ms_per_step']['dense']:.1f}; ratio {r['ratio_dense_conv2d']:.3f}")
    print('\n== checkpoint write/read of the default job (ms, median; target: checksum + safe load < 5% of write/read)')
    res['checkpoint'] = r = bench_ckpt()
    print(f"  write: torch.save {r['ms']['old_write']:.2f}, miniai {r['ms']['new_write']:.2f} (ratio {r['ratio_write']:.2f}); "
          f"read: torch.load {r['ms']['old_read']:.2f}, miniai {r['ms']['new_read']:.2f} (ratio {r['ratio_read']:.2f}); "
          f"checksum {r['ms']['digest']:.3f} = {r['digest_share_of_write']:.1%} of the write, {r['digest_share_of_read']:.1%} of the read")
    print('\n== data (images/s)')
    res['data'] = r = bench_data()
    print('  ' + json.dumps(r, default=str))
    print('\n== scheduler step (us/step; target ratio <= 0.40 of torch OneCycleLR with momentum)')
    res['sched'] = r = bench_sched()
    print('  ' + json.dumps(r, default=str))
    print('\n== mixed precision on the CPU: bf16 vs fp32 (s/epoch, interleaved; accuracy of miniai fit, 3 seeds)')
    res['precision'] = r = bench_epoch_time()
    print('  ' + ', '.join(f"{k} {v:.2f} s/epoch" for k,v in r['seconds_per_epoch'].items()) + f"; ratio bf16/fp32 {r['ratio_bf16_fp32']:.3f}")
    res['precision_accuracy'] = r = bench_accuracy()
    for p,d in r.items(): print(f"  {p}: " + ', '.join(f"seed {s} {v['accuracy']:.4f}" for s,v in d.items()))
    print('\n== threads: s/batch with 1 and 2 intra-op threads, quiet and beside a competing load (interleaved)')
    for load in (False, True):
        res[f'threads_load_{load}'] = r = bench_threads(load=load)
        print(f"  {'with a load' if load else 'quiet'}: " + ', '.join(f"{n} thread(s) {v*1e3:.0f} ms (x{r['ratio'][n]:.2f})" for n,v in r['seconds_per_batch'].items()))
    print('\n== processes: 1 vs 2 (HF accelerate, gloo, 1 thread each), 1 epoch of the default job, alternated')
    res['procs'] = rs = [run_procs(n, 1, 60000, 512) for n in (1, 2, 1, 2)]
    for r in rs: print(f"  {r['procs']} process(es): {r['img_s']:,.0f} training images/s, accuracy {r['acc']:.4f}")
    (here/'results.json').write_text(json.dumps(res, indent=1, default=str))

if __name__ == '__main__': main()
