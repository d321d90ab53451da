"""ncu_step.py — per-kernel time of the last decode step in an ncu CSV
(gpu__time_duration.sum per launch), as forward_device.sh collects it.
    python3 bench/cuda/ncu_step.py FILE.csv
"""
import csv, sys, collections
allr = list(csv.reader(open(sys.argv[1])))
hi = next(i for i, r in enumerate(allr) if "Kernel Name" in r)
h = allr[hi]; rows = [r for r in allr[hi + 1:] if len(r) == len(h)]
ki, vi, ui = h.index("Kernel Name"), h.index("Metric Value"), h.index("Metric Unit")
scale = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6, "second": 1e9}
seq = [(r[ki][:60], float(r[vi].replace(",", "")) * scale.get(r[ui], 1.0)) for r in rows]
# the last decode step: kernels after the last embedding launch
last = max(i for i, (k, _) in enumerate(seq) if k.startswith("opc_cudafwd::k_embed") or "k_embed" in k)
step = seq[last:]
tot = collections.OrderedDict()
for k, v in step:
    tot.setdefault(k, [0, 0.0]); tot[k][0] += 1; tot[k][1] += v
print("one decode step, 2 layers: %d kernels, %.1f us of kernel time" % (len(step), sum(v for _, v in step) / 1e3))
for k, (n, v) in sorted(tot.items(), key=lambda x: -x[1][1]):
    print("%8.1f us  %3d x  %s" % (v / 1e3, n, k))
