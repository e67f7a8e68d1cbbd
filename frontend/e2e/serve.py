"""Starts a real TensorBoard (with the installed tb_matmul_explainer plugin) for the browser tests.

    python frontend/e2e/serve.py LOGDIR [extra tensorboard flags...]

Binds 127.0.0.1 on a free port, prints one JSON line {"url": ...} when it serves, and runs until killed.
"""

import json
import signal
import sys
import time

from tensorboard import default, program


def main():
    logdir = sys.argv[1]
    tb = program.TensorBoard(plugins=default.get_plugins(), assets_zip_provider=None)
    # The plugin registers through its `tensorboard_plugins` entry point, as for any pip-installed plugin.
    tb.configure(
        argv=[None, "--logdir", logdir, "--host", "127.0.0.1", "--port", "0", "--reload_interval", "2", *sys.argv[2:]]
    )
    url = tb.launch()
    print(json.dumps({"url": url.rstrip("/")}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
