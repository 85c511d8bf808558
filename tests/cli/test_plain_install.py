"""The CLI as a plain install has it: every package of an extra made unimportable in the process.

The suite's environment has every extra, so without this a command that imports pyarrow (the Ray extra's)
passes here and fails for every `pip install minibert-tf` user. `.ci/plain_install` proves the same in a
real venv; this test catches it in seconds, on the commands that need no Hub checkpoint.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

EXTRAS = ("pyarrow", "ray", "starlette", "uvicorn", "matplotlib", "torch", "transformers", "sentence_transformers",
          "pandas", "httpx")

# Runs the CLI with a finder ahead of every other that refuses the extras' packages, as if not installed.
BLOCKED = """
import sys, importlib.abc
BLOCK = set({blocked!r})
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
for name in list(sys.modules):
    if name.split(".")[0] in BLOCK:
        del sys.modules[name]
sys.meta_path.insert(0, Missing())
import minibert.cli
code = minibert.cli.main(sys.argv[1:])
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & BLOCK)
assert not loaded, loaded
sys.exit(code)
"""


def cli(*args, stdin=None, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", BLOCKED.format(blocked=EXTRAS), *args], input=stdin,
                          capture_output=True, env=env, timeout=300, cwd=cwd)


def ok(p):
    assert p.returncode == 0, p.stderr.decode()
    assert b"Traceback" not in p.stderr and b"No module named" not in p.stderr, p.stderr.decode()
    return p.stdout.decode()


def test_the_blocker_blocks():
    p = cli("classify", "--input", "x.txt", "--output", "out")
    assert p.returncode != 0
    assert 'pip install "minibert-tf[ray]"' in p.stderr.decode(), p.stderr.decode()


def test_first_run_and_task_commands_without_extras(tmp_path, minilm):
    # Each call loads TensorFlow and a model: the README's first run, a file into .npy, and trace. The other
    # input forms (stdin, TSV, a pipe) run in .ci/plain_install, in a real venv without the extras.
    out = ok(cli("classify", "I've been waiting for a HuggingFace course my whole life.", "I hate this so much!"))
    assert [json.loads(line)["label"] for line in out.splitlines()] == ["POSITIVE", "NEGATIVE"]
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("a good film\n\nawful\n")
    npy = tmp_path / "e.npy"
    ok(cli("embed", "--file", str(reviews), "--output", str(npy), "--model", minilm))
    assert np.load(npy).shape == (3, 384)
    assert "NEGATIVE" in ok(cli("trace", "I hate this so much!"))


@pytest.mark.parametrize("command, extra", [(["serve"], "serve"), (["trace", "x", "--attention-png", "m.png"], "plot")])
def test_each_front_end_names_its_extra(command, extra, tmp_path):
    p = cli(*command, cwd=tmp_path)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert f"minibert-tf[{extra}]" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
