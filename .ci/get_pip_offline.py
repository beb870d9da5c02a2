"""Stand-in for the get-pip.py that ansible-test downloads from ci-files.testing.ansible.com.

That host is not reachable from our CI (only package registries are); this bootstraps the same
pip from Python's bundled ensurepip, then installs the requested versions from PyPI.
ansible-test runs it with the pip-install arguments it would give get-pip.py.
"""

import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
arguments = [argument for argument in sys.argv[1:] if argument not in ("--no-setuptools", "--no-wheel")]
# ansible-test passes only HOME and PATH on; name the machine's CA bundle for a TLS-intercepting proxy.
bundle = "/etc/ssl/certs/ca-certificates.crt"
if os.path.exists(bundle):
    arguments = ["--cert", bundle, *arguments]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *arguments])
