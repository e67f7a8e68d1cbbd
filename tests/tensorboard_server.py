"""A real `tensorboard` process on a log directory, for the end-to-end tests and the benches.

    from tests.tensorboard_server import start

    with start(logdir, load_fast="false", reload_interval=1) as tb:
        tb.wait_until(lambda: tb.get("/data/plugin/matmul_explainer/runs").status == 200)
        status, headers, body, ms = tb.get("/data/plugin/matmul_explainer/runs")

`start` runs `python -m tensorboard.main --logdir LOGDIR --host 127.0.0.1 --port 0 --load_fast ...` (our plugin
comes from its installed `tensorboard_plugins` entry point: `pip install -e .`), reads the URL TensorBoard prints
and returns as soon as it serves. Loading the logs goes on in the background: callers wait for the data they need
with `wait_until`, which fails early, with TensorBoard's last log lines, if the process exits. Failures raise
`TensorBoardError` (a RuntimeError), so a pytest fixture errors with TensorBoard's log and a bench stops.

Benches import this module as `from tests.tensorboard_server import ...` after putting the repository root on
`sys.path` (`python bench/load.py` puts only `bench/` there); the tests import it as a sibling module.
"""

import collections
import gzip
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

#: Seconds TensorBoard may take to print its URL (imports TensorFlow: ~5-20 s on a busy 2-core machine).
STARTUP_TIMEOUT_S = 120

Response = collections.namedtuple("Response", "status headers body ms")


class TensorBoardError(RuntimeError):
    """TensorBoard did not start, exited, or did not serve what was awaited in time (the message has its log)."""


class TensorBoardServer:
    """A started TensorBoard process: `url` (http://127.0.0.1:PORT), `proc`, and its recent stderr lines."""

    def __init__(self, proc, url, lines):
        self.proc, self.url, self._lines = proc, url, lines

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=30):
        return "".join(list(self._lines)[-n:])

    def get(self, path, timeout=60, accept_gzip=False):
        """`get(self.url + path)`."""
        return get(self.url + path, timeout=timeout, accept_gzip=accept_gzip)

    def wait_until(self, condition, timeout=60, interval=0.3, what="the logs to load"):
        """Calls `condition()` until it is true; returns the seconds waited. Raises `TensorBoardError` if
        TensorBoard exits or `timeout` seconds pass first."""
        start = time.monotonic()
        while True:
            if condition():
                return time.monotonic() - start
            if not self.alive():
                raise TensorBoardError(
                    "TensorBoard exited (status %s) while waiting for %s:\n%s"
                    % (self.proc.returncode, what, self.log_tail())
                )
            if time.monotonic() - start > timeout:
                raise TensorBoardError("waited %d s for %s:\n%s" % (timeout, what, self.log_tail()))
            time.sleep(interval)

    def stop(self, timeout=15):
        """Terminates TensorBoard (and with it its data server); kills it if it does not exit in `timeout` s."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start(logdir, load_fast="auto", *, reload_interval=None, extra_args=(), timeout=STARTUP_TIMEOUT_S):
    """Starts TensorBoard on `logdir` on loopback, port 0 (a free port), and returns a `TensorBoardServer` once it
    serves. `load_fast`: "auto" (the Rust data server where installed), "true" or "false" (the multiplexer)."""
    argv = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--load_fast",
        load_fast,
    ]
    if reload_interval is not None:
        argv += ["--reload_interval", str(reload_interval)]
    argv += list(extra_args)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines, found, url = collections.deque(maxlen=200), threading.Event(), {}

    def drain():  # reads stderr for the process's whole life, so that it never blocks on a full pipe
        for line in proc.stderr:
            lines.append(line)
            match = re.search(r"TensorBoard \S+ at (http://[^/\s]+)/", line)
            if match and not found.is_set():
                url["base"] = match.group(1)
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    if not found.wait(timeout):
        proc.kill()
        proc.wait(5)
        raise TensorBoardError("TensorBoard did not start in %d s:\n%s" % (timeout, "".join(list(lines)[-30:])))
    return TensorBoardServer(proc, url["base"], lines)


def get(url, timeout=60, accept_gzip=False):
    """GET `url`: `Response(status, headers, body, ms)`, also for 4xx/5xx; a gzip body is decompressed."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if accept_gzip else {})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, headers, body = e.code, e.headers, e.read()
    ms = (time.perf_counter() - start) * 1000
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return Response(status, headers, body, ms)
