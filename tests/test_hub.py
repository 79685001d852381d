"""Models on the Hugging Face Hub: ``from_pretrained("org/name", revision=...)`` through huggingface_hub's cache,
checked offline (HF_HUB_OFFLINE=1) against a cache prepared here, and ``push_to_hub`` against a stand-in HfApi."""

import json
import os
import subprocess
import sys

import pytest

from audiodiff import artifacts, hub
from audiodiff.errors import AudiodiffError

from conftest import REPO, tiny_vocoder

pytest.importorskip("huggingface_hub")  # the hub extra

MAIN, V1 = "a" * 40, "b" * 40  # the commits of the prepared cache


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """huggingface_hub's cache layout holding org/tiny-vocoder: main at one commit, the tag v1 at another, each a
    snapshot of an exported vocoder with other weights."""
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / "models--org--tiny-vocoder"
    (repo / "refs").mkdir(parents=True)
    for ref, commit, seed in (("main", MAIN, 0), ("v1", V1, 1)):
        (repo / "refs" / ref).write_text(commit)
        tiny_vocoder(seed=seed).save_pretrained(repo / "snapshots" / commit)
    return cache


def _offline(cache, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def _checksum(state: dict) -> float:
    return float(sum(v.double().sum() for v in state.values()))


def test_repo_ids_and_local_paths():
    assert hub.is_repo_id("org/name") and hub.is_repo_id("my-org/model.v2")
    for name in ("name", "/abs/path", "a/b/c", "./x", "org/", "runs/speech/"):
        assert not hub.is_repo_id(name), name


def test_local_paths_resolve_to_themselves_and_refuse_a_revision(tmp_path):
    assert artifacts.resolve(tmp_path) == tmp_path
    with pytest.raises(AudiodiffError, match="revision='v1' picks a version of a Hub model"):
        artifacts.resolve(tmp_path, revision="v1")


def test_from_pretrained_loads_a_cached_hub_model_offline(hub_cache):
    """A fresh process with HF_HUB_OFFLINE=1: the id and each revision load the snapshot of their commit."""
    code = ("import json; from audiodiff.vocoder import Vocoder\n"
            "out = {}\n"
            "for rev in (None, 'v1', '" + V1 + "'):\n"
            "    v = Vocoder.from_pretrained('org/tiny-vocoder', device='cpu', revision=rev)\n"
            "    out[str(rev)] = [v.source, float(sum(p.double().sum() for p in v.net.state_dict().values()))]\n"
            "print(json.dumps(out))\n")
    done = _offline(hub_cache, code)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    snapshots = hub_cache / "models--org--tiny-vocoder" / "snapshots"
    want_main = _checksum(artifacts.read_weights(snapshots / MAIN))
    want_v1 = _checksum(artifacts.read_weights(snapshots / V1))
    assert want_main != want_v1
    assert out["None"] == ["org/tiny-vocoder", pytest.approx(want_main, rel=1e-6)]
    assert out["v1"][1] == pytest.approx(want_v1, rel=1e-6) and out[V1][1] == pytest.approx(want_v1, rel=1e-6)


def test_an_uncached_hub_model_offline_is_one_clear_error(hub_cache):
    code = ("from audiodiff.vocoder import Vocoder\nfrom audiodiff.errors import AudiodiffError\n"
            "for name, rev in (('org/missing', None), ('org/tiny-vocoder', 'v9')):\n"
            "    try:\n        Vocoder.from_pretrained(name, device='cpu', revision=rev)\n"
            "    except AudiodiffError as err:\n        print(err)\n")
    done = _offline(hub_cache, code)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and len(lines) == 2, (done.stdout, done.stderr)
    assert lines[0].startswith("org/missing is no local path, and the Hub model org/missing is not in the local cache")
    assert "at revision 'v9'" in lines[1] and "HF_HUB_OFFLINE" in lines[1]


def test_the_cli_reads_a_hub_model_offline(hub_cache, tmp_path):
    """``audiodiff mel --model org/name`` takes the Hub model's mel settings (artifacts.read_config resolves it)."""
    import numpy as np
    import soundfile as sf

    sf.write(str(tmp_path / "a.wav"), np.zeros(22050, dtype=np.float32), 22050)
    code = ("from audiodiff.cli import main\n"
            f"main(['mel', r'{tmp_path / 'a.wav'}', r'{tmp_path / 'm.npy'}', '--model', 'org/tiny-vocoder'])\n")
    done = _offline(hub_cache, code)
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "m.npy").shape == (80, 86)


class FakeApi:
    """Records the calls ``push_to_hub`` makes of ``huggingface_hub.HfApi``."""

    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))

        class Info:
            commit_url = f"https://huggingface.co/{kwargs['repo_id']}/commit/{'c' * 40}"
        return Info()


def test_push_to_hub_uploads_an_exported_model(tmp_path, monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = tiny_vocoder().save_pretrained(tmp_path / "export")
    url = hub.push_to_hub(model, "org/tiny", revision="v2", private=True, token="t0k")
    assert url == f"https://huggingface.co/org/tiny/commit/{'c' * 40}"
    kinds = [c[0] for c in FakeApi.calls]
    assert kinds == ["init", "create_repo", "create_branch", "upload_folder"] and FakeApi.calls[0][1] == "t0k"
    assert FakeApi.calls[1][2] == {"private": True, "exist_ok": True}
    upload = FakeApi.calls[3][1]
    assert upload["repo_id"] == "org/tiny" and upload["revision"] == "v2"
    assert upload["folder_path"] == str(model) and "model.safetensors" in upload["allow_patterns"]


def test_push_to_hub_refuses_what_is_not_an_exported_model(tmp_path, monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    (tmp_path / "run").mkdir()
    with pytest.raises(AudiodiffError, match="is not an audiodiff model"):
        hub.push_to_hub(tmp_path / "run", "org/tiny")
    with pytest.raises(AudiodiffError, match="not a Hub repository id"):
        hub.push_to_hub(tiny_vocoder().save_pretrained(tmp_path / "export"), "just-a-name")
    assert FakeApi.calls == []  # nothing reached the Hub


def test_without_huggingface_hub_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(AudiodiffError, match=r"org/x is no local path; .*pip install 'audiodiff\[hub\]'"):
        artifacts.resolve("org/x")
