"""Every module imports on its own, as the first import of a fresh process (a user's script or a config's
`class_path` may start anywhere), so no import cycle hides behind the order the CLI happens to use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# One interpreter for all modules: third-party packages stay loaded, our own are dropped before each import,
# so each module is imported as if it came first.
SCRIPT = r"""
import importlib, pkgutil, sys
import rlgf_pl, callbacks
names = sorted({module.name for package in (rlgf_pl, callbacks)
                for module in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                if not module.name.endswith(".__main__")}  # a __main__ runs its program
               | {"rlgf_pl", "callbacks"})
failed = []
for name in names:
    for loaded in [key for key in sys.modules if key.split(".")[0] in ("rlgf_pl", "callbacks")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed.append(f"{name}: {type(error).__name__}: {error}")
print(len(names), "modules")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "", "HOME": str(Path.home())})
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert int(result.stdout.split()[0]) > 50  # the walk found the package, not an empty path
