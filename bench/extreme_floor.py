"""Packing vs a same-size (16 MiB) threaded copy, best of 40 each, interleaved:
the in-cache yardstick of bench/README.md.

    python bench/extreme_floor.py [THREADS]
"""
import sys
import time

import numpy as np

import lowbit
from lowbit import _C
th = int(sys.argv[1]) if len(sys.argv) > 1 else 2
lowbit.set_num_threads(th)
N=4096
q=np.random.default_rng(0).integers(-1,2,(N,N)).astype(np.int8)
b=np.where(q>=0,1,-1).astype(np.int8)
def best(f, rep=40):
    f(); ts=[]
    for _ in range(rep):
        t0=time.perf_counter(); f(); ts.append(time.perf_counter()-t0)
    return min(ts)
src=np.ones(N*N,np.uint8); dst=np.empty_like(src)
tc=best(lambda: _C.parallel_copy(dst,src)); bw=2*N*N/tc
print(f'threads {th}: 16MiB parallel_copy {tc*1e3:.3f} ms = {bw/1e9:.1f} GB/s')
cases = [("1bit", b, lambda c,o: lowbit.pack(c,1,out=o), lambda p,o: lowbit.unpack(p,1,N,signed=True,out=o)),
         ("2bit", q, lambda c,o: lowbit.pack_ternary(c,"2bit",out=o), lambda p,o: lowbit.unpack_ternary(p,N,"2bit",out=o)),
         ("base3", q, lambda c,o: lowbit.pack_ternary(c,"base3",out=o), lambda p,o: lowbit.unpack_ternary(p,N,"base3",out=o)),
         ("4bit", q, lambda c,o: lowbit.pack(c,4,out=o), lambda p,o: lowbit.unpack(p,4,N,signed=True,out=o)),
         ("3bit", q, lambda c,o: lowbit.pack(c,3,out=o), lambda p,o: lowbit.unpack(p,3,N,signed=True,out=o))]
for name, c, pk, up in cases:
    p = pk(c, None); po = np.empty_like(p); co = np.empty_like(c)
    floor = (c.nbytes + p.nbytes) / bw
    t1 = best(lambda: pk(c, po)); t2 = best(lambda: up(p, co))
    print(f'{name:6s} pack {t1*1e3:.3f} ms ({t1/floor:.2f}x)  unpack {t2*1e3:.3f} ms ({t2/floor:.2f}x)  floor {floor*1e3:.3f}')
