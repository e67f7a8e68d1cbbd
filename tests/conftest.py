"""Fixtures shared by the test modules: a small log directory written by our own writer (`logdir`), what its event
files hold (`written`) and a werkzeug client of TensorBoard's app serving it (`client`). Module-scoped: each
module that asks gets its own directory."""

import pytest

from tests.plugin_helpers import make_client, read_written, write_logdir


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("logs"))
    write_logdir(d)
    return d


@pytest.fixture(scope="module")
def written(logdir):
    return read_written(logdir)


@pytest.fixture(scope="module")
def client(logdir):
    return make_client(logdir)[0]
