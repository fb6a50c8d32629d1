"""Fixtures for the integration tests: certificates, Dovecot, mfagate.

Scopes:
  certdir, cafile, tls_ctx   session  (one self-signed pair from certs/mkcert.sh)
  dovecot                    session  (shared backend; tests never stop it)
  mfagate                    module   (each module has its own server + state)
  fresh_dovecot              function (a backend a test may stop and start)
  make_mfagate               function (factory: a server with config overrides)

Every server runs on free loopback ports with its directory under pytest's
tmp_path and is stopped at teardown; stopping mfagate asserts exit status 0
and no sanitizer report in its log.
"""
import os
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "harness"))

from dovecot import Dovecot  # noqa: E402
from mfagate import REPO_ROOT, Mfagate  # noqa: E402
from rawimap import client_context  # noqa: E402

TEST_TIMEOUT = int(os.environ.get("MFA_TEST_TIMEOUT", "120"))


@pytest.fixture(autouse=True)
def _per_test_timeout():
    """No test may hang the suite: SIGALRM after TEST_TIMEOUT seconds."""
    def on_alarm(signum, frame):
        raise TimeoutError("test exceeded %ds" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def certdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", os.path.join(REPO_ROOT, "certs", "mkcert.sh"), str(d)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return str(d)


@pytest.fixture(scope="session")
def cafile(certdir):
    return os.path.join(certdir, "server.crt")


@pytest.fixture(scope="session")
def tls_ctx(cafile):
    return client_context(cafile)


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory):
    dc = Dovecot(str(tmp_path_factory.mktemp("dovecot")))
    dc.start()
    yield dc
    dc.close()


@pytest.fixture
def fresh_dovecot(tmp_path):
    dc = Dovecot(str(tmp_path / "dovecot"))
    dc.start()
    yield dc
    dc.close()


@pytest.fixture(scope="module")
def mfagate(tmp_path_factory, dovecot, certdir):
    mg = Mfagate(str(tmp_path_factory.mktemp("mfagate")), dovecot, certdir)
    mg.start()
    yield mg
    mg.stop()


@pytest.fixture
def make_mfagate(tmp_path, dovecot, certdir):
    """make_mfagate(overrides={...}, dovecot=..., listen=(...), start=True)."""
    made = []

    def make(overrides=None, backend=None, listen=Mfagate.DEFAULT_LISTEN,
             start=True, **kw):
        mg = Mfagate(str(tmp_path / ("mfagate%d" % len(made))), backend or dovecot,
                     certdir, overrides=overrides, listen=listen, **kw)
        made.append(mg)
        if start:
            mg.start()
        return mg

    yield make
    errors = []
    for mg in made:
        try:
            mg.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors))
