#!/bin/sh
# The SATOSA baseline's own virtualenv: bench/satosa/.venv (git-ignored), with SATOSA from PyPI.
#
#     bench/satosa/setup.sh              # SATOSA 8.6.0, the version the numbers in docs/performance.md are of
#     SATOSA_VERSION=8.7.0 bench/satosa/setup.sh
#
# The interpreter is the broker virtualenv's own (the same Python for both sides of the comparison).
# SATOSA brings its own pysaml2 and gunicorn; it signs and verifies with pysaml2's default backend, the
# xmlsec1 program (apt-get install -y xmlsec1), as SATOSA deployments do. Nothing here is imported by the
# broker or by its virtualenv: bench/federation.py starts SATOSA as `gunicorn satosa.wsgi:app` from this
# virtualenv and only writes its YAML configuration.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=${SATOSA_VERSION:-8.6.0}
python=${PYTHON:-$("$repo/.venv/bin/python" -c 'import sys; print(sys._base_executable)')}
command -v xmlsec1 >/dev/null || { echo "setup: SATOSA (pysaml2) needs the xmlsec1 program" >&2; exit 1; }
"$python" -m venv --clear "$here/.venv"
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet "satosa==$version"
"$here/.venv/bin/python" - <<'PY'
from importlib.metadata import version
import platform
print("SATOSA", version("satosa"), "| pysaml2", version("pysaml2"), "| gunicorn", version("gunicorn"),
      "| Python", platform.python_version())
PY
