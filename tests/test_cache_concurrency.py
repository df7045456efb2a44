"""Two processes asked to build the same audio cache at the same moment: one cache, no crash."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUILD = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
from datamodules.gtzan import GTZANDataModule
start_at = float(sys.argv[3])
data = GTZANDataModule(root=sys.argv[1], cache_dir=sys.argv[2], sample_rate=8000, decode_workers=1)
while time.time() < start_at:  # both processes are imported and start the build together
    time.sleep(0.001)
data.prepare_data()
data.setup("fit")
print("train clips", len(data.clips("train")))
"""


def test_two_processes_building_one_cache_end_with_one_valid_cache(gtzan_rerelease, tmp_path):
    cache = tmp_path / "cache"
    start_at = time.time() + 8  # after both have imported torch and Lightning
    runs = [subprocess.Popen([sys.executable, "-c", BUILD, str(gtzan_rerelease), str(cache), str(start_at)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(o[-1500:] for o in outputs)
    # The decoding ran once: one process built, the other waited for it and reused the cache.
    built = [o for o in outputs if "built audio cache" in o]
    reused = [o for o in outputs if "reusing audio cache" in o]
    assert len(built) == 1 and len(reused) == 1, outputs
    assert "waiting for another process building audio cache" in reused[0]
    assert all("train clips 442" in o for o in outputs)  # 443 listed, the empty jazz.00054.wav skipped
    folders = [p for p in cache.iterdir() if p.is_dir()]
    assert len(folders) == 1 and not [p for p in cache.iterdir() if ".building-" in p.name]
    assert (folders[0] / "index.json").is_file()
