"""The README's runnable example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    blocks = re.findall(r"<!-- runs as a test: tests/test_readme.py -->\n```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    code = blocks[0].replace("/tmp/dream-pendulum", str(tmp_path / "dream-pendulum"))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
