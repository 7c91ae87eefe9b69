"""Quick 1- vs 2-thread GEMM check, one implementation per process (so no other
library's spinning worker threads share the cores). Median GFLOP/s.

    PYTHONPATH=python python benchmarks/gemm_threads_quick.py nnk
    PYTHONPATH=python python benchmarks/gemm_threads_quick.py numpy
    PYTHONPATH=python python benchmarks/gemm_threads_quick.py torch
"""
import time, sys, numpy as np, nnkernels
from nnkernels import _C
shapes = [(1024,1024,1024,'nn'),(2048,2048,2048,'nn'),(64,784,256,'nt'),(64,256,784,'nn'),(256,64,784,'tn'),(256,784,256,'nt'),(256,256,784,'nn'),(256,256,784,'tn'),(1024,784,256,'nt'),(1024,256,784,'nn'),(256,1024,784,'tn')]
impl = sys.argv[1]
if impl == 'numpy':
    import threadpoolctl
if impl == 'torch':
    import torch
for m,k,n,lay in shapes:
    a = np.random.rand(k,m).astype(np.float32).T if lay[0]=='t' else np.random.rand(m,k).astype(np.float32)
    b = np.random.rand(n,k).astype(np.float32).T if lay[1]=='t' else np.random.rand(k,n).astype(np.float32)
    c = np.empty((m,n), np.float32)
    out = []
    for th in (1,2):
        if impl == 'numpy':
            ctl = threadpoolctl.threadpool_limits(th); f = lambda: np.matmul(a,b,out=c)
        elif impl == 'torch':
            torch.set_num_threads(th); ta, tb, tc = map(torch.from_numpy, (a, b, c))
            f = lambda: torch.matmul(ta, tb, out=tc)
        else:
            nnkernels.set_num_threads(th); f = lambda: _C.gemm(c,a,b)
        f(); ts=[]
        reps = max(10, int(3e9/(2*m*n*k)))
        for _ in range(reps):
            t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
        out.append(2e-9*m*n*k/np.median(ts))
        if impl == 'numpy': ctl.restore_original_limits()
    print(f"{impl:6s} {m}x{k}x{n} {lay}: 1thr {out[0]:6.1f}  2thr {out[1]:6.1f}", flush=True)
