"""The same traffic gives the linker the same state in every process: Python picks a new hash
seed per process (set and dict-of-set orders change with it), and links were once stored in a
set's order, which changed which weak links merged clusters and so a cluster's score between
two runs of the same log. Two interpreters with different seeds link `test_campaigns`' stream
(a 40-account campaign in cover traffic, an office behind one NAT) and must agree to the byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = """
import sys
import orjson
from detectors.campaigns import CampaignLinker
from tests.detectors.test_campaigns import batches, campaign, features_of, honest, with_office

linker = CampaignLinker().fit(features_of(honest(seed=101), "cal"))
for batch in batches(features_of(with_office(honest(seed=202)) + campaign(seed=7), "live")):
    linker.observe(batch)
state = linker.state()
sys.stdout.buffer.write(orjson.dumps({k: state[k] for k in ("edges", "weak", "cluster_of")}))
"""


def test_linker_state_does_not_depend_on_the_hash_seed() -> None:
    runs = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", LINK],
            cwd=ROOT,
            env=os.environ | {"PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for seed in ("1", "2")
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr.decode()[-3000:]
    first, second = (stdout for stdout, _ in outputs)
    assert b'"edges":[[' in first  # the campaign was linked: there is an order to compare
    assert first == second
