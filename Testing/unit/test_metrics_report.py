"""write_report: Markdown + PNG figures + metrics.json + NRRD error maps."""
from __future__ import annotations

import json
import re

import numpy as np

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.metrics import compare_doses, write_report


def test_report_writes_every_file_and_links_each_figure(tmp_path):
    z, y, x = np.meshgrid(np.arange(6), np.arange(7), np.arange(8), indexing="ij")
    reference = Volume(np.exp(-((x - 4) ** 2 + (y - 3) ** 2 + (z - 3) ** 2) / 4.0) * 3.0, spacing=(2, 2, 2),
                       quantity="dose", unit="Gy")
    labels = np.zeros(reference.shape, np.int16)
    labels[2:5, 2:5, 3:6] = 1
    labels[0:2, 0:2, 0:2] = 2
    test = reference.with_array(reference.array * 1.05)
    result = compare_doses(test, reference, labels=reference.with_array(labels, quantity="labels", unit="label"),
                           names={1: "liver", 2: "spleen"}, realisations=[reference.with_array(reference.array)])
    out = write_report(result, tmp_path / "rep" / "report.md", title="Kernel vs MC")
    text = out.read_text()
    assert text.startswith("# Kernel vs MC")
    pngs = sorted(p.name for p in out.parent.glob("*.png"))
    assert pngs == ["bland_altman_segments.png", "bland_altman_voxels.png", "profiles.png", "scatter.png",
                    "slices.png"]
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(linked) == pngs
    for name in pngs:
        assert (out.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "liver" in text and "spleen" in text and "Kim et al. 2022, Eq. 3" in text
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert abs(metrics["nrmse"] - 0.05) < 1e-9 and len(metrics["per_segment"]) == 2
    assert metrics["ensemble_noise_percent"] > 0
    diff = read_volume(out.parent / "difference_gy.nrrd")
    rel = read_volume(out.parent / "relative_error.nrrd")
    assert diff.quantity == "dose" and diff.unit == "Gy" and diff.grid == reference.grid
    assert rel.quantity == "relative_error" and rel.unit == "%" and rel.metadata["description"].startswith("relative error")
    above = reference.array > 0.01 * reference.array.max()
    assert np.allclose(rel.array[above], 5.0, rtol=1e-5) and np.all(rel.array[~above] == 0)
