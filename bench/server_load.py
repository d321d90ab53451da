"""Load run for `opacc1ty serve`: many requests from concurrent clients, zero
failures allowed, server memory before and after, throughput per concurrency.

    python3 bench/server_load.py BIN MODEL [--requests 200] [--clients 16]
                                 [--parallel 4] [--max-tokens 32] [--sweep 1,4,16]
                                 [--threads N] [--device cpu|cuda]

Starts the server itself on a free loopback port, sends one warm-up request,
reads VmRSS from /proc/PID/status ("before"), runs the load (half streaming,
half not, sampled with per-request seeds), reads VmRSS again ("after") and
VmHWM (peak), optionally measures generated tokens/s at each concurrency of
--sweep, and stops the server with SIGTERM (exit status must be 0).
Prints a Markdown summary for docs/RESULTS.md. Exit status 1 on any failure.
"""

import argparse
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def proc_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def one_request(conn, i, max_tokens, stream):
    """One completion on a kept-alive connection; returns completion tokens."""
    body = {"prompt": f"Once upon a time, story {i}", "max_tokens": max_tokens,
            "temperature": 0.8, "seed": i, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    conn.request("POST", "/v1/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
    if not stream:
        return json.loads(data)["usage"]["completion_tokens"]
    events = [ln[6:] for ln in data.decode().split("\n") if ln.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        raise RuntimeError("stream did not end with [DONE]")
    usage = json.loads(events[-2]).get("usage")
    if not usage:
        raise RuntimeError("no usage chunk")
    return usage["completion_tokens"]


def run_load(port, n_requests, n_clients, max_tokens):
    """n_requests spread over n_clients threads; returns (ok, failed, tokens, seconds)."""
    lock = threading.Lock()
    next_i = [0]
    stats = {"ok": 0, "failed": 0, "tokens": 0}

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next_i[0]
                if i >= n_requests:
                    break
                next_i[0] += 1
            try:
                toks = one_request(conn, i, max_tokens, stream=bool(i % 2))
                with lock:
                    stats["ok"] += 1
                    stats["tokens"] += toks
            except Exception as e:  # noqa: BLE001 - every failure counts
                print(f"request {i}: {e!r}", file=sys.stderr)
                with lock:
                    stats["failed"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.close()

    t0 = time.time()
    threads = [threading.Thread(target=client) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats["ok"], stats["failed"], stats["tokens"], time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("model")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--sweep", default="", help="comma-separated client counts, e.g. 1,4,16")
    a = ap.parse_args()

    port = free_port()
    cmd = [a.bin, "serve", a.model, "--port", str(port), "--parallel", str(a.parallel),
           "--ctx", str(a.ctx), "--queue", str(max(64, a.clients * 2)), "--device", a.device]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            if srv.poll() is not None:
                print(srv.stderr.read(), file=sys.stderr)
                return 1
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                print("server did not start", file=sys.stderr)
                return 1
            time.sleep(0.1)

        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        one_request(warm, 0, a.max_tokens, False)
        warm.close()
        rss0 = proc_kib(srv.pid, "VmRSS")
        ok, failed, toks, secs = run_load(port, a.requests, a.clients, a.max_tokens)
        rss1 = proc_kib(srv.pid, "VmRSS")
        hwm = proc_kib(srv.pid, "VmHWM")

        sweep = []
        for n in [int(x) for x in a.sweep.split(",") if x]:
            reqs = max(n * 8, 32)
            s_ok, s_failed, s_toks, s_secs = run_load(port, reqs, n, a.max_tokens)
            failed += s_failed
            sweep.append((n, reqs, s_ok, s_failed, s_toks, s_secs))
        rss2 = proc_kib(srv.pid, "VmRSS")

        srv.send_signal(signal.SIGTERM)
        try:
            status = srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            status = "killed after 30 s"
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()

    print(f"- load: {a.requests} requests from {a.clients} concurrent clients "
          f"(half streaming), max_tokens {a.max_tokens}, --device {a.device}, --parallel {a.parallel}, "
          f"--ctx {a.ctx}: **{ok} ok, {failed} failed**, {toks} tokens in {secs:.2f} s "
          f"({toks / secs:.1f} tokens/s, {ok / secs:.1f} requests/s)")
    print(f"- server RSS: {rss0 / 1024:.1f} MiB before (after start-up and one warm-up "
          f"request), {rss1 / 1024:.1f} MiB after the load, {rss2 / 1024:.1f} MiB after the "
          f"sweep; peak (VmHWM) {hwm / 1024:.1f} MiB")
    if sweep:
        print("\n| clients | requests | ok | failed | completion tokens | seconds | tokens/s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n, reqs, s_ok, s_failed, s_toks, s_secs in sweep:
            print(f"| {n} | {reqs} | {s_ok} | {s_failed} | {s_toks} | {s_secs:.2f} | "
                  f"{s_toks / s_secs:.1f} |")
    print(f"- SIGTERM -> exit status {status}")
    return 0 if failed == 0 and ok == a.requests and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
