"""StepCache: content hashes (NRRD header comments ignored), step keys, freshness of recorded outputs."""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.io import write_volume
from VoxelDosimetryLib.pipeline.cache import StepCache, file_sha256


def test_rewriting_the_same_nrrd_keeps_its_hash_but_new_values_change_it(tmp_path):
    volume = Volume(np.arange(24, dtype=np.float32).reshape(2, 3, 4), quantity="dose")
    path = write_volume(volume, tmp_path / "a.nrrd")
    first = file_sha256(path)
    data = path.read_bytes()
    assert b"\n# on " in data  # pynrrd writes the time of writing in a header comment
    later = tmp_path / "b.nrrd"
    later.write_bytes(data.replace(b"\n# on ", b"\n# on 1999-01-01 00:00:00 ", 1))
    assert later.read_bytes() != data and file_sha256(later) == first
    assert file_sha256(write_volume(volume.with_array(volume.array + 1), tmp_path / "a.nrrd")) != first
    (tmp_path / "plain.txt").write_text("#not a comment\n")
    (tmp_path / "plain2.txt").write_text("#other\n")
    assert file_sha256(tmp_path / "plain.txt") != file_sha256(tmp_path / "plain2.txt")


def test_folder_hash_covers_names_and_contents(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    (folder / "1.dcm").write_bytes(b"one")
    before = file_sha256(folder)
    (folder / "1.dcm").write_bytes(b"uno")
    assert file_sha256(folder) != before
    (folder / "1.dcm").write_bytes(b"one")
    assert file_sha256(folder) == before


def test_key_depends_on_inputs_parameters_and_step(tmp_path):
    cache = StepCache(tmp_path)
    (tmp_path / "in.txt").write_text("data")
    hashes = cache.input_hashes({"source": tmp_path / "in.txt", "optional": None, "many": [tmp_path / "in.txt"]})
    assert hashes["optional"] is None and hashes["many"] == [hashes["source"]]
    key = cache.key("dose", hashes, {"method": "led", "seed": 0})
    assert key == cache.key("dose", hashes, {"seed": 0, "method": "led"})  # order of parameters does not matter
    assert key != cache.key("dose", hashes, {"method": "mc", "seed": 0})
    assert key != cache.key("tables", hashes, {"method": "led", "seed": 0})
    assert key != cache.key("dose", {**hashes, "source": "0" * 64}, {"method": "led", "seed": 0})
    assert cache.key("x", {}, {"f": 0.1}) != cache.key("x", {}, {"f": 0.1000000001})


def test_a_record_is_fresh_only_while_its_outputs_are_unchanged(tmp_path):
    cache = StepCache(tmp_path)
    output = tmp_path / "out" / "result.txt"
    output.parent.mkdir()
    output.write_text("result")
    cache.save("step", {"key": "k1", "outputs": cache.output_hashes([output])})
    assert cache.fresh_record("step", "k1", [output])["key"] == "k1"
    assert cache.fresh_record("step", "k2", [output]) is None
    assert cache.fresh_record("other", "k1", [output]) is None
    output.write_text("edited")
    assert StepCache(tmp_path).fresh_record("step", "k1", [output]) is None
    output.unlink()
    assert StepCache(tmp_path).fresh_record("step", "k1", [output]) is None
    assert cache.relative(output) == "out/result.txt"
