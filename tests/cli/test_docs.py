"""The guide's outputs are produced by running its code: it must be current, and it runs offline."""
import os
import subprocess
import sys

import pytest

from reference import REPO as ROOT


@pytest.mark.slow
def test_guide_is_current():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_docs.py"), "--check"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


def test_readme_example_runs_offline():
    """The seed's walkthrough with only the import changed, on the MiniLM package's weights."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "example.py")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "[CLS] i've been waiting for a huggingface course my whole life. [SEP]" in p.stdout
    assert "(2, 16, 384)" in p.stdout


def test_readme_python_example_runs_as_copied(capsys):
    """The README's "first run" Python block, as a reader copies it: no name left undefined."""
    import re

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    after = readme[readme.index("`python scripts/example.py` is the course's walkthrough"):]
    block = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "(2, 16, 384)"
