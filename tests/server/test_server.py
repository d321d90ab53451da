"""End-to-end tests of `opacc1ty serve` against a running server.

Run by tests/cli_server.sh, which starts the server on a free loopback port
and stops it afterwards:

    python3 tests/server/test_server.py --port PORT --api-key KEY

Two halves:
  * the official `openai` Python client: models, completions, chat,
    streaming, stop sequences, seeds, usage, and errors as exceptions;
  * raw sockets for what a well-behaved client never sends: malformed and
    truncated JSON, huge bodies, invalid UTF-8, bad numbers and types, abrupt
    disconnects mid-stream, and 16 clients at once. After each of these the
    server must still answer /health.

Every network wait has a timeout, and the whole run stays well under a minute
on the stories260K model.
"""

import argparse
import http.client
import json
import socket
import sys
import threading
import time

import openai

FAILS = []
PASSES = 0


def check(cond, what):
    global PASSES
    if cond:
        PASSES += 1
    else:
        FAILS.append(what)
        print(f"  FAIL: {what}", file=sys.stderr)


def section(name):
    print(f"[ RUN  ] {name}", file=sys.stderr)


# --------------------------------------------------------------- raw HTTP --

class Raw:
    def __init__(self, port, key):
        self.port = port
        self.key = key

    def request(self, method, path, body=None, headers=None, auth=True, timeout=30):
        """One request on a fresh connection; returns (status, parsed JSON or text)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Content-Type": "application/json"}
        if auth and self.key:
            h["Authorization"] = f"Bearer {self.key}"
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data.decode("utf-8", "replace")

    def health(self):
        return self.request("GET", "/health", auth=False, timeout=10)

    def raw_socket(self, payload, read=True, timeout=10):
        """Send raw bytes; return the first response bytes (or b'' when closed)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(payload)
            if not read:
                return b""
            out = b""
            while b"\r\n\r\n" not in out:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            return out
        except (ConnectionResetError, BrokenPipeError):
            return b""
        finally:
            s.close()


def error_of(body):
    """The OpenAI error object, checking its shape."""
    ok = (isinstance(body, dict) and isinstance(body.get("error"), dict)
          and {"message", "type", "param", "code"} <= set(body["error"]))
    check(ok, f"error shape: {str(body)[:200]}")
    return body["error"] if ok else {}


def still_healthy(raw, after):
    st, body = raw.health()
    check(st == 200 and isinstance(body, dict) and body.get("status") == "ok",
          f"/health after {after}: {st} {body}")


# ---------------------------------------------------------- openai client --

def test_openai(client, model_id, raw):
    section("openai: models")
    models = client.models.list()
    ids = [m.id for m in models.data]
    check(ids == [model_id], f"models.list: {ids}")
    check(client.models.retrieve(model_id).id == model_id, "models.retrieve")

    section("openai: completions")
    prompt = "Once upon a time"
    r = client.completions.create(model=model_id, prompt=prompt, max_tokens=24, temperature=0)
    text = r.choices[0].text
    check(isinstance(text, str) and len(text) > 0, f"completion text: {text!r}")
    check(r.object == "text_completion" and r.id.startswith("cmpl-"), "completion id/object")
    check(r.choices[0].finish_reason in ("stop", "length"), "finish_reason")
    u = r.usage
    check(u.prompt_tokens > 0 and 0 < u.completion_tokens <= 24
          and u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage {u}")
    if r.choices[0].finish_reason == "length":
        check(u.completion_tokens == 24, "length => max_tokens tokens")

    # greedy decoding is deterministic; a seed makes sampling repeatable
    r2 = client.completions.create(model=model_id, prompt=prompt, max_tokens=24, temperature=0)
    check(r2.choices[0].text == text, "temperature 0 is deterministic")
    s1 = client.completions.create(model=model_id, prompt=prompt, max_tokens=24,
                                   temperature=1.0, top_p=0.9, seed=1234)
    s2 = client.completions.create(model=model_id, prompt=prompt, max_tokens=24,
                                   temperature=1.0, top_p=0.9, seed=1234)
    check(s1.choices[0].text == s2.choices[0].text, "same seed, same text")

    section("openai: streaming completions")
    chunks = list(client.completions.create(model=model_id, prompt=prompt, max_tokens=24,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    check(streamed == text, f"stream == non-stream: {streamed!r} vs {text!r}")
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finals == [r.choices[0].finish_reason], f"one final finish_reason: {finals}")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == u.completion_tokens,
          "include_usage chunk")

    section("openai: stop sequences")
    # stop at a piece of the greedy text: the answer is exactly what precedes it
    words = text.split()
    if len(words) >= 3:
        stop = " " + words[2]
        cut = text.find(stop)
        rs = client.completions.create(model=model_id, prompt=prompt, max_tokens=24,
                                       temperature=0, stop=[stop, "\u2603never"])
        check(rs.choices[0].text == text[:cut], f"stop: {rs.choices[0].text!r} vs {text[:cut]!r}")
        check(rs.choices[0].finish_reason == "stop", "stop => finish_reason stop")
        st_chunks = list(client.completions.create(model=model_id, prompt=prompt, max_tokens=24,
                                                   temperature=0, stop=stop, stream=True))
        check("".join(c.choices[0].text for c in st_chunks) == text[:cut], "stop in a stream")

    section("openai: chat")
    try:
        c = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Hello!"}], max_tokens=16,
            temperature=0)
        check(c.choices[0].message.role == "assistant"
              and isinstance(c.choices[0].message.content, str), "chat message")
        check(c.object == "chat.completion" and c.usage.completion_tokens <= 16, "chat usage")
        parts = list(client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Hello!"}], max_tokens=16,
            temperature=0, stream=True))
        check(parts[0].choices[0].delta.role == "assistant", "first chunk carries the role")
        check("".join(p.choices[0].delta.content or "" for p in parts)
              == c.choices[0].message.content, "chat stream == non-stream")
    except openai.BadRequestError as e:
        # models without a chat template (stories260K): the documented refusal
        check(e.status_code == 400 and e.code == "chat_template_unsupported",
              f"chat without a template: {e}")

    section("openai: errors")
    try:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
        check(False, "unknown model accepted")
    except openai.NotFoundError as e:
        check(e.code == "model_not_found", f"unknown model code {e.code}")
    for kwargs, param in (({"n": 2}, "n"), ({"max_tokens": -1}, "max_tokens"),
                          ({"temperature": 5}, "temperature"), ({"max_tokens": 10**9}, "max_tokens")):
        try:
            args = {"max_tokens": 2}
            args.update(kwargs)
            client.completions.create(model=model_id, prompt="x", **args)
            check(False, f"{kwargs} accepted")
        except openai.BadRequestError as e:
            check(e.param == param, f"{kwargs}: param {e.param}")
    bad = openai.OpenAI(base_url=client.base_url, api_key="wrong-key", max_retries=0)
    try:
        bad.completions.create(model=model_id, prompt="x", max_tokens=1)
        check(False, "wrong API key accepted")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "wrong key -> 401")
    return text


# ------------------------------------------------------------- bad input --

def test_bad_input(raw, model_id):
    section("raw: malformed / wrong / invalid bodies")
    cases = [
        ("truncated JSON", b'{"prompt": "Once upon', 400, "invalid_json"),
        ("not JSON", b"hello", 400, "invalid_json"),
        ("JSON array", b"[1,2,3]", 400, "invalid_type"),
        ("empty body", b"", 400, "invalid_json"),
        ("invalid UTF-8", b'{"prompt": "\xff\xfe\xc3(", "max_tokens": 2}', 400, "invalid_utf8"),
        ("lone surrogate", b'{"prompt": "\\ud83d", "max_tokens": 2}', 400, "invalid_json"),
        ("negative max_tokens", b'{"prompt": "x", "max_tokens": -5}', 400, "invalid_value"),
        ("huge max_tokens", b'{"prompt": "x", "max_tokens": 99999999999}', 400, "invalid_value"),
        ("string max_tokens", b'{"prompt": "x", "max_tokens": "7"}', 400, "invalid_type"),
        ("float max_tokens", b'{"prompt": "x", "max_tokens": 1.5}', 400, "invalid_type"),
        ("prompt object", b'{"prompt": {"a": 1}}', 400, "invalid_type"),
        ("stop number", b'{"prompt": "x", "stop": 7}', 400, "invalid_type"),
        ("temperature string", b'{"prompt": "x", "temperature": "hot"}', 400, "invalid_type"),
        ("stream number", b'{"prompt": "x", "stream": 1}', 400, "invalid_type"),
        ("deep nesting", b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, None),
        ("token id out of range", b'{"prompt": [1, 2, 100000000]}', 400, "invalid_value"),
    ]
    for name, body, status, code in cases:
        st, resp = raw.request("POST", "/v1/completions", body=body)
        check(st == status, f"{name}: status {st} (want {status})")
        err = error_of(resp)
        if code:
            check(err.get("code") == code, f"{name}: code {err.get('code')} (want {code})")
    st, resp = raw.request("POST", "/v1/chat/completions",
                           body={"messages": [{"role": "user", "content": 42}]})
    check(st == 400 and error_of(resp).get("param") == "messages[0].content", "chat content type")
    st, resp = raw.request("POST", "/v1/chat/completions", body={"messages": "hi"})
    check(st == 400, "messages not an array")
    long_prompt = "once upon a time " * 2000
    st, resp = raw.request("POST", "/v1/completions", body={"prompt": long_prompt, "max_tokens": 4})
    check(st == 400 and error_of(resp).get("code") == "context_length_exceeded",
          f"prompt longer than the context: {st}")
    st, resp = raw.request("GET", "/v1/nothing")
    check(st == 404, "unknown route -> 404")
    st, resp = raw.request("PUT", "/v1/completions", body=b"{}")
    check(st == 405, "wrong method -> 405")
    st, resp = raw.request("POST", "/v1/completions", body={"prompt": "x"}, auth=False)
    check(st == 401 and error_of(resp).get("code") == "missing_api_key", "no key -> 401")
    still_healthy(raw, "bad bodies")

    section("raw: huge bodies")
    big = b'{"prompt": "' + b"a" * (2 << 20) + b'"}'
    st, resp = raw.request("POST", "/v1/completions", body=big)
    check(st == 413 and error_of(resp).get("code") == "request_too_large", f"2 MiB body: {st}")
    head = raw.raw_socket(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + raw.key.encode() + b"\r\nContent-Length: 9000000000\r\n\r\n{")
    check(head.startswith(b"HTTP/1.1 413"), f"declared 9 GB body: {head[:40]!r}")
    still_healthy(raw, "huge bodies")

    section("raw: truncated and garbage requests")
    # body shorter than Content-Length, then the client hangs up
    raw.raw_socket(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                   b'{"prompt": "x"', read=False)
    raw.raw_socket(b"\x16\x03\x01\x02\x00garbage-not-http\r\n\r\n", read=False)
    raw.raw_socket(b"GET /health HTTP/1.1\r\n" + b"X-Long: " + b"a" * 100000 + b"\r\n\r\n")
    still_healthy(raw, "truncated requests")


def test_disconnect(raw, model_id):
    section("raw: abrupt disconnect mid-stream frees the slot")
    _, before = raw.health()
    body = json.dumps({"model": model_id, "prompt": "Once upon a time", "max_tokens": 200,
                       "stream": True}).encode()
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", raw.port), timeout=10)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + raw.key.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
        got = s.recv(4096)
        check(got.startswith(b"HTTP/1.1 200"), f"stream started: {got[:30]!r}")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST: the rudest goodbye
    deadline = time.time() + 10
    after = before
    while time.time() < deadline:
        _, after = raw.health()
        if after["slots_busy"] == 0 and after["queued"] == 0:
            break
        time.sleep(0.05)
    check(after["slots_busy"] == 0 and after["queued"] == 0, f"slots freed: {after}")
    # a disconnect shows as cancelled unless generation had already finished
    check(after["cancelled"] + after["completed"] >= before["cancelled"] + before["completed"] + 3,
          f"3 disconnected jobs accounted for: {before} -> {after}")
    still_healthy(raw, "disconnects")


def test_concurrent(client, raw, model_id, n_clients=16, per_client=3):
    section(f"raw: {n_clients} concurrent clients")
    results = []
    lock = threading.Lock()

    def worker(i):
        for k in range(per_client):
            try:
                if (i + k) % 2:
                    r = client.completions.create(model=model_id, prompt=f"Tale {i}-{k}:",
                                                  max_tokens=12, temperature=0.8, seed=i)
                    ok = r.usage.completion_tokens > 0
                else:
                    parts = list(client.completions.create(model=model_id, prompt=f"Tale {i}:",
                                                           max_tokens=12, stream=True))
                    ok = any(p.choices[0].finish_reason for p in parts if p.choices)
            except Exception as e:  # noqa: BLE001 - any failure is a failed request
                ok = False
                print(f"  client {i}: {e!r}", file=sys.stderr)
            with lock:
                results.append(ok)

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    check(all(not t.is_alive() for t in threads), "clients finished in time")
    check(len(results) == n_clients * per_client and all(results),
          f"{sum(results)}/{n_clients * per_client} requests succeeded")
    print(f"  {len(results)} requests from {n_clients} clients in {time.time() - t0:.2f} s",
          file=sys.stderr)
    still_healthy(raw, "concurrent clients")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--api-key", required=True)
    a = ap.parse_args()
    raw = Raw(a.port, a.api_key)
    st, models = raw.request("GET", "/v1/models")
    if st != 200:
        print(f"cannot list models: {st} {models}", file=sys.stderr)
        return 1
    model_id = models["data"][0]["id"]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{a.port}/v1", api_key=a.api_key,
                           max_retries=0, timeout=60)
    t0 = time.time()
    test_openai(client, model_id, raw)
    test_bad_input(raw, model_id)
    test_disconnect(raw, model_id)
    test_concurrent(client, raw, model_id)
    print(f"{PASSES} passed, {len(FAILS)} failed ({time.time() - t0:.1f} s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
