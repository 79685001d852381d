"""The listening report of ``audiodiff eval --report DIR``: a static ``DIR/index.html`` with the metric table
(means ± 95% intervals per system, paired differences) and, per file, the original and every system as HTML5
audio players beside their mel-spectrogram pictures.

Everything the page shows lies beside it (``audio/NNN-SYSTEM.wav``, ``img/NNN-SYSTEM.png``) under relative links:
no server, no external assets, so the folder can be copied or zipped whole. Every file is written atomically.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from audiodiff import atomic
from audiodiff.audio.io import save_audio
from audiodiff.audio.plot import mel_png
from audiodiff.eval.copysynth import mean_ci

STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th:first-child,td:first-child{text-align:left}
.clips{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;width:330px}figure img{width:100%}
figure audio{width:100%}figcaption{font-weight:bold}h2{margin-top:1.5em}"""


def clip_stem(index: int, system: str) -> str:
    """``NNN-SYSTEM`` with anything but letters, digits, ``._-`` in the name replaced: the file name of a clip."""
    return f"{index:03d}-{re.sub(r'[^A-Za-z0-9._-]', '_', system)}"


class ClipWriter:
    """The ``keep`` callback of ``evaluate_systems``: writes each clip's wav and mel picture under ``folder``.
    Pictures use the first model's mel front end (``vocoder.mel``) for every system, so they compare."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.front_end = None

    def __call__(self, index: int, system: str, audio, vocoder) -> None:
        if self.front_end is None:
            self.front_end = vocoder
        stem = clip_stem(index, system)
        save_audio(self.folder / "audio" / f"{stem}.wav", audio, vocoder.sample_rate)
        png = mel_png(self.front_end.mel(audio).cpu(), system)
        atomic.write_bytes(self.folder / "img" / f"{stem}.png", png, "report picture")


def _interval(v: dict) -> str:
    return f"{v['mean']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]"


def render(report: dict) -> str:
    """The page of ``report`` (``evaluate_systems``'s), its clips named by :func:`clip_stem`."""
    e = html.escape
    systems = report["systems"]
    keys = list(dict.fromkeys(k for s in systems for k in s["summary"]))
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>audiodiff eval: {e(report['data'])}</title><style>{STYLE}</style></head><body>",
           f"<h1>Copy-synthesis evaluation of {e(report['data'])}</h1>",
           f"<p>{len(report['files'])} files; {e(report['interval'])}. Lower is better except PESQ and STOI.</p>",
           "<h2>Means ± 95% interval</h2><table><tr><th>metric</th>"
           + "".join(f"<th>{e(s['name'])}</th>" for s in systems) + "</tr>"]
    for k in keys:
        out.append(f"<tr><td>{e(k)}</td>" + "".join(f"<td>{mean_ci(s['summary'].get(k))}</td>" for s in systems)
                   + "</tr>")
    out.append("</table>")
    diffs = report.get("differences", [])
    if diffs:
        out.append("<h2>Paired differences (per file), mean [95% t-interval]</h2><table><tr><th>metric</th>"
                   + "".join(f"<th>{e(d['system'])} − {e(d['minus'])}</th>" for d in diffs) + "</tr>")
        for k in keys:
            cells = "".join(f"<td>{_interval(d['metrics'][k]) if k in d['metrics'] else '-'}</td>" for d in diffs)
            out.append(f"<tr><td>{e(k)}</td>{cells}</tr>")
        out.append("</table>")
    if report.get("skipped"):
        out.append("<p>Skipped: " + "; ".join(f"{e(s['file'])} ({e(s['reason'])})" for s in report["skipped"])
                   + "</p>")
    names = ["original"] + [s["name"] for s in systems if s["name"] != "original"]
    for i, row in enumerate(report["files"]):
        out.append(f"<h2>{e(Path(row['file']).name)}</h2><div class=\"clips\">")
        for name in names:
            stem = clip_stem(i, name)
            out.append(f'<figure><figcaption>{e(name)}</figcaption><img src="img/{stem}.png" alt="mel of {e(name)}">'
                       f'<audio controls preload="none" src="audio/{stem}.wav"></audio></figure>')
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_html(report: dict, folder: str | Path) -> Path:
    """``folder/index.html`` for ``report``, written atomically; the clips must already be there."""
    return atomic.write_text(Path(folder) / "index.html", render(report), "eval report page")
