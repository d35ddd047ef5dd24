"""Fetch MathJax 3's self-contained ``es5/tex-svg.js`` so the site renders equations offline.

Uses ``npm pack mathjax@3`` (the npm registry); writes the file to the path given (default
``book/_static/mathjax/tex-svg.js``). Prints one line and exits 2 when npm is unavailable.
"""
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

target = Path(sys.argv[1] if len(sys.argv) > 1 else "book/_static/mathjax/tex-svg.js")
if shutil.which("npm") is None:
    sys.exit("error: npm is needed to fetch MathJax (mathjax@3); install Node.js or copy "
             f"es5/tex-svg.js from the mathjax npm package to {target}")
with tempfile.TemporaryDirectory() as tmp:
    out = subprocess.run(["npm", "pack", "mathjax@3", "--silent"], cwd=tmp, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: npm pack mathjax@3 failed: {out.stderr.strip().splitlines()[-1:]}")
    tgz = next(Path(tmp).glob("mathjax-*.tgz"))
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/es5/tex-svg.js")
        data = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_target = target.with_suffix(".tmp")
    tmp_target.write_bytes(data)
    tmp_target.replace(target)
print(f"MathJax {tgz.name} -> {target} ({len(data) / 1e6:.1f} MB)")
