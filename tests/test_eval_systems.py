"""`audiodiff eval` with several systems: per-system means, paired differences with a known answer, the refinement's
own baseline, and the listening report (links, atomic writes, a headless-Chromium screenshot where Chromium exists).

One evaluation (module fixture) serves most tests: the tiny model twice, Griffin-Lim and the refine baseline on two
short tones and one unreadable file, with --report and --out.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from audiodiff import atomic
from audiodiff.audio.io import load_audio
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.audio.refine import ITERATIONS, refine
from audiodiff.cli import main
from audiodiff.eval import metrics as M
from audiodiff.eval.copysynth import paired_differences, refine_baseline

from conftest import SR, harmonic, tiny_vocoder, write_wav

SYSTEMS = ["tiny", "tiny#2", "griffinlim", "refine"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    """``eval tiny tiny DATA --baseline griffinlim --baseline refine --report --out``: its stdout, stderr, the
    folder and every path that ``atomic`` renamed into place."""
    root = tmp_path_factory.mktemp("eval-systems")
    model = Path(shutil.copytree(tiny_model_dir, root / "tiny"))
    data = root / "data"
    write_wav(data / "a.wav", harmonic(0.3))
    write_wav(data / "c.wav", harmonic(0.3, 330.0))
    (data / "b.wav").write_bytes(b"")
    renamed, replace = [], os.replace

    def record(src, dst):
        replace(src, dst)
        renamed.append(Path(dst))

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setattr(atomic.os, "replace", record)
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in ("eval", model, model, data, "--baseline", "griffinlim", "--baseline", "refine",
                                   "--fast", "--steps", 1, "--refine", 0, "--device", "cpu", "--no-progress",
                                   "--out", root / "out" / "r.json", "--report", root / "page")])
    assert (exit_info.value.code or 0) == 0, err.getvalue()
    return {"out": out.getvalue(), "err": err.getvalue(), "root": root, "data": data, "renamed": renamed,
            "report": json.loads((root / "out" / "r.json").read_text())}


def test_every_system_is_scored_on_the_same_readable_files(run):
    report, data = run["report"], run["data"]
    assert [s["name"] for s in report["systems"]] == SYSTEMS
    assert [s["kind"] for s in report["systems"]] == ["model", "model", "baseline", "baseline"]
    for system in report["systems"]:
        assert [r["file"] for r in system["files"]] == [str(data / "a.wav"), str(data / "c.wav")]
        assert system["summary"]["mrstft"]["n"] == 2
    assert report["skipped"] == [{"file": str(data / "b.wav"), "reason": "empty file"}]
    assert report["files"] == report["systems"][0]["files"]  # the one-model layout is kept at the top level
    assert run["out"].count("skipped 1 of 3 files") == 1
    assert run["err"] == ""  # --no-progress: no bar
    with open(run["root"] / "out" / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["system"], Path(r["file"]).name) for r in rows] == [(s, n) for s in SYSTEMS for n in ("a.wav", "c.wav")]


def test_the_same_model_twice_differs_by_exactly_zero(run):
    (same,) = [d for d in run["report"]["differences"] if d["system"] == "tiny#2"]
    assert same["minus"] == "tiny"
    for v in same["metrics"].values():  # the same weights, seed and mels: bitwise the same outputs
        assert v["mean"] == v["low"] == v["high"] == 0.0 and v["n"] == 2


def test_griffin_lim_beats_an_untrained_model_on_every_file(run):
    # The untrained network emits broadband noise; Griffin-Lim from the tones' own mel gets their harmonics: its
    # difference is negative on every file, so the whole interval lies below 0.
    (gl,) = [d for d in run["report"]["differences"] if d["system"] == "griffinlim"]
    rows = {s["name"]: s["files"] for s in run["report"]["systems"]}
    for k, v in gl["metrics"].items():
        d = [b[k] - a[k] for a, b in zip(rows["tiny"], rows["griffinlim"])]
        assert v["mean"] == pytest.approx(np.mean(d), abs=1e-12) and v["high"] < 0


def test_paired_differences_use_a_student_t_interval():
    base = {"name": "a", "files": [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}, {"x": 5.0}]}
    other = {"name": "b", "files": [{"x": 2.0}, {"x": 4.0}, {"x": 6.0}, {"x": None}]}
    (d,) = paired_differences([base, other], ["x"])
    # differences 1, 2, 3 (the fourth file lacks a value): mean 2, sd 1, t(0.975, 2) = 4.302653
    assert d["system"] == "b" and d["minus"] == "a" and d["metrics"]["x"]["n"] == 3
    assert d["metrics"]["x"]["mean"] == pytest.approx(2.0)
    assert d["metrics"]["x"]["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)


def test_refine_baseline_is_the_vocoders_refinement_started_from_seeded_noise():
    voc = tiny_vocoder(refine=0)  # refinement off in the vocoder: the baseline uses the default iterations
    ref = harmonic(0.3)
    mel = voc.mel(ref).numpy()
    out = refine_baseline(voc, mel, ref, seed=3)
    noise = torch.randn(1, mel.shape[1] * voc.hop_length, generator=torch.Generator().manual_seed(3))
    noise *= float(np.sqrt(np.mean(np.square(ref, dtype=np.float64))))
    expected = refine(noise, torch.from_numpy(mel)[None], MelSpectrogram(voc.mel_config), ITERATIONS,
                      momentum=voc.refine_momentum).clamp(-1, 1)[0].numpy()
    assert np.array_equal(out, expected)  # the same float32 operations on the same input
    assert np.array_equal(out, refine_baseline(voc, mel, ref, seed=3))
    assert not np.allclose(out, refine_baseline(voc, mel, ref, seed=4), atol=1e-3)
    # The refinement pulls the noise onto the mel: far closer than where it started.
    assert M.log_mel_l1(ref, out, SR) < 0.5 * M.log_mel_l1(ref, noise[0].numpy(), SR)


def _links(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', page)


def test_report_links_resolve_to_the_kept_clips(run):
    page_dir = run["root"] / "page"
    page = (page_dir / "index.html").read_text()
    links = _links(page)
    assert len(links) == 2 * 2 * (1 + len(SYSTEMS))  # per file: a picture and a player for the original and each
    for link in links:
        assert "://" not in link and not link.startswith("/"), link  # relative: the folder works anywhere
        assert (page_dir / link).is_file(), link
    assert "<script" not in page and "<link" not in page  # no external assets
    audio, sr = load_audio(page_dir / "audio" / "000-original.wav", SR)
    assert sr == SR and len(audio) == len(harmonic(0.3))
    for name in ("Means ± 95% interval", "Paired differences", "tiny#2 − tiny"):
        assert name in page


def test_every_file_is_written_atomically(run):
    written = [p for p in run["root"].rglob("*") if p.is_file() and p.parent != run["data"]
               and "tiny" not in p.parts[len(run["root"].parts):]]
    assert len(written) == 2 + 1 + 2 * 2 * (1 + len(SYSTEMS))  # JSON, CSV, page, a wav and a picture per clip
    assert set(written) <= set(run["renamed"])
    assert not [p for p in run["root"].rglob(".tmp-*")]


def _chromium() -> str | None:
    return next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and os.path.exists(p)), None)


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (CI does not install it)")
def test_report_renders_in_headless_chromium(run, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1200,1600", (run["root"] / "page" / "index.html").as_uri()],
                       check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (1600, 1200, 3)
    # A blank or broken page has a handful of colours; the tables, players and spectrograms have thousands, and
    # the spectrograms' viridis colours (strong blue-green, absent from the page's greys) must be on screen.
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1000
    r, g, b = (image[..., i].astype(int) for i in range(3))
    assert ((g - r > 60) & (b - r > 20)).mean() > 0.02


def test_the_recording_is_scored_where_a_metric_is_non_intrusive(tmp_path, monkeypatch):
    # metrics_of gives a non-intrusive score of the recording as ref_KEY beside KEY (the MOS estimates); here a
    # stand-in, the RMS, whose values are known: the original becomes a system of its own.
    from audiodiff.eval import copysynth

    def rms(x):
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))

    monkeypatch.setattr(copysynth, "metrics_of", lambda ref, est, *a, **k: {"mrstft": M.mrstft_distance(ref, est),
                                                                           "level": rms(est), "ref_level": rms(ref)})
    data = tmp_path / "data"
    for name, f0 in (("a.wav", 220.0), ("c.wav", 330.0)):
        write_wav(data / name, harmonic(0.3, f0))
    report = copysynth.evaluate_systems({"tiny": tiny_vocoder(refine=0)}, data, baselines=["griffinlim"], steps=1,
                                        full=False, progress=False)
    tiny, gl, original = report["systems"]
    assert (original["name"], original["kind"]) == ("original", "original")
    assert [set(r) for r in original["files"]] == [{"file", "level"}] * 2
    assert all("ref_level" not in r for s in (tiny, gl) for r in s["files"])
    levels = [rms(load_audio(data / n, SR)[0]) for n in ("a.wav", "c.wav")]
    assert [r["level"] for r in original["files"]] == levels
    (diff,) = [d for d in report["differences"] if d["system"] == "original"]
    assert set(diff["metrics"]) == {"level"}  # the intrusive distances have no value for the recording itself
    assert diff["metrics"]["level"]["mean"] == pytest.approx(np.mean([o - t["level"] for o, t in
                                                                     zip(levels, tiny["files"])]), abs=1e-12)


def test_a_model_with_refinement_is_scored_raw_beside_refined(tiny_model_dir, tmp_path):
    # The raw output's rows are those of the same model evaluated with refinement off (one sampling pass serves
    # both systems), and the refined rows those of a plain evaluation; baselines still come after the models.
    from audiodiff.eval.copysynth import evaluate, evaluate_systems
    from audiodiff.vocoder import Vocoder

    data = tmp_path / "data"
    write_wav(data / "a.wav", harmonic(0.3))
    write_wav(data / "c.wav", harmonic(0.3, 330.0))
    kwargs = dict(steps=1, full=False, progress=False)
    refined = Vocoder.from_pretrained(tiny_model_dir, device="cpu", refine=4)
    report = evaluate_systems({"tiny": refined}, data, baselines=["griffinlim"], **kwargs)
    assert [(s["name"], s["kind"], s["refine"] if "refine" in s else None) for s in report["systems"]] == [
        ("tiny", "model", 4), ("tiny raw", "model", 0), ("griffinlim", "baseline", None)]
    raw_alone = evaluate_systems({"tiny": Vocoder.from_pretrained(tiny_model_dir, device="cpu", refine=0)}, data,
                                 **kwargs)
    assert [s["name"] for s in raw_alone["systems"]] == ["tiny"]  # nothing to add when the output is raw
    rows = {s["name"]: s["files"] for s in report["systems"]}
    assert rows["tiny raw"] == raw_alone["files"]
    assert rows["tiny"] == evaluate_systems({"tiny": refined}, data, **kwargs)["files"]
    assert rows["tiny"] != rows["tiny raw"]
    (diff,) = [d for d in report["differences"] if d["system"] == "tiny raw"]
    assert diff["minus"] == "tiny"
    assert evaluate(refined, data, baseline="griffinlim", **kwargs)["baseline"]["name"] == "griffinlim"
