"""h1_s4_step.py — the last decode step of an ncu CSV (gpu__time_duration.sum
per launch, as bench/cuda/h1_s4_device.sh collects it): every launch in order
with its duration, then the total per kernel name.
    python3 bench/cuda/h1_s4_step.py FILE.csv
"""
import csv, sys, collections, re
allr = list(csv.reader(open(sys.argv[1])))
hi = next(i for i, r in enumerate(allr) if "Kernel Name" in r)
h = allr[hi]; rows = [r for r in allr[hi + 1:] if len(r) == len(h)]
ki, vi, ui = h.index("Kernel Name"), h.index("Metric Value"), h.index("Metric Unit")
scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}
def short(k):
    k = re.sub(r"\(.*", "", k)                 # drop the argument list
    k = re.sub(r"^void ", "", k)
    return k[:70]
seq = [(short(r[ki]), float(r[vi].replace(",", "")) * scale.get(r[ui], 1e-3)) for r in rows]  # ncu's "ns"
last = max(i for i, (k, _) in enumerate(seq) if "k_embed" in k)
step = seq[last:]
print("last decode step: %d launches, %.1f us of kernel time (serialized by ncu)" % (len(step), sum(v for _, v in step)))
for k, v in step:
    print("  %8.2f us  %s" % (v, k))
tot = collections.OrderedDict()
for k, v in step:
    tot.setdefault(k, [0, 0.0]); tot[k][0] += 1; tot[k][1] += v
print("per kernel name:")
for k, (n, v) in sorted(tot.items(), key=lambda x: -x[1][1]):
    print("%9.1f us %4d x  %s" % (v, n, k))
