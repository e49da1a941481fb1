"""The CLI starts without importing torch: `prefline --help` and config commands stay fast,
and a command loads torch only when it runs (lazy imports in command bodies)."""

import subprocess
import sys


def test_importing_the_cli_does_not_import_torch() -> None:
    code = "import sys, prefline.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"torch modules imported at CLI start-up: {out.stdout}"
