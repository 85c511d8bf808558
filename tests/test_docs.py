"""The guide's outputs are produced by running its code: it must be current, and it runs offline."""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_guide_is_current():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_docs.py"), "--check"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
