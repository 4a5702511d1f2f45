"""rs_core is an installed package, importable outside the repository."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importable_from_another_directory(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", "import rs_core, sys; from rs_core import certify, predict, sample_counts, ABSTAIN;"
                               "print(rs_core.__file__); assert ABSTAIN == -1; assert 'streamlit' not in sys.modules"],
        cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve().is_relative_to(ROOT / "rs_core")


def test_rs_core_never_imports_streamlit():
    for path in (ROOT / "rs_core").rglob("*.py"):
        text = path.read_text()
        assert "import streamlit" not in text and "from streamlit" not in text, path
