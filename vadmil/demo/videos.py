"""The demo's video files: a fixed street scene with traffic, and planted anomalous events.

Every video shows the same camera view (sky, buildings, a road with three lanes) under its own lighting and
sensor noise, with traffic that always flows left to right. Abnormal videos carry one or two *events*, each a
labelled frame interval:

- ``wrong_way``: a large vehicle drives right to left, against the flow, fast;
- ``appearance``: a large, saturated object (a fire, a spill) appears abruptly on the road and vanishes as
  abruptly.

Normal videos also vary (traffic density, speeds, colours, lighting), so "anything moving" is not an anomaly. The
files are H.264 MP4s written with PyAV (no ffmpeg program needed); their content depends only on the spec (seed
included), and the encoder runs single-threaded so that the bytes do too. A manifest (JSON, the format of
`dataset=manifest`) gives each video's split, label, category and anomalous frame intervals (inclusive ends).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vadmil.demo.soundtrack import audio_stream, encode_audio, soundtrack
from vadmil.errors import VadmilError

EVENTS = ("wrong_way", "appearance")
_LANES = (0.58, 0.70, 0.82)  # lane centres as fractions of the height
_TRAFFIC = np.array(
    [[70, 90, 140], [150, 150, 150], [200, 200, 190], [60, 60, 70], [110, 80, 60]], np.float32
)
_HOT = np.array([[255, 60, 20], [255, 200, 0], [0, 220, 255]], np.float32)  # event colours


@dataclass(frozen=True)
class DemoVideoSpec:
    """What the demo videos look like; the files are a pure function of these values."""

    seed: int = 0
    n_train_normal: int = 20
    n_train_abnormal: int = 20
    n_test_normal: int = 10
    n_test_abnormal: int = 10
    height: int = 96
    width: int = 96
    fps: int = 25
    min_frames: int = 200
    max_frames: int = 360
    crf: int = 18  # H.264 quality (lower: larger files, fewer artefacts)
    sound: bool = (
        False  # a soundtrack: street noise, and a horn on wrong-way events (vadmil/demo/soundtrack.py)
    )

    def __post_init__(self):
        if min(self.n_train_normal, self.n_train_abnormal, self.n_test_normal, self.n_test_abnormal) < 1:
            raise VadmilError("the demo needs at least one video of each class in each split")
        if self.height < 32 or self.width < 32 or self.height % 2 or self.width % 2:
            raise VadmilError(f"demo frames must be even and at least 32 px, got {self.height}x{self.width}")
        if not 48 <= self.min_frames <= self.max_frames:
            raise VadmilError(
                f"need 48 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}"
            )


def _background(spec: DemoVideoSpec) -> np.ndarray:
    """The fixed scene, float32 [H, W, 3]: the same for every video (one camera)."""
    h, w = spec.height, spec.width
    rng = np.random.default_rng(12345)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(np.array([120, 160, 210], np.float32) * (1 - 0.4 * y), (h, w, 3)).copy()
    road = int(0.5 * h)
    for x0 in range(0, w, max(8, w // 8)):  # buildings
        top = int(rng.integers(h // 8, road - 4))
        img[top:road, x0 : x0 + max(6, w // 10)] = rng.uniform(80, 170, 3)
    img[road:] = 85
    for lane in _LANES[:-1]:  # dashed lane markings between the lanes
        yy = int((lane + 0.06) * h)
        for x0 in range(0, w, 12):
            img[yy : yy + 1, x0 : x0 + 6] = 230
    return img


def _traffic(rng: np.random.Generator, spec: DemoVideoSpec, n_frames: int) -> list[dict]:
    """Vehicles flowing left to right: lane, speed (px/frame), size, colour, entry frame."""
    cars = []
    density = rng.uniform(0.025, 0.06)  # vehicles per frame entering the scene
    t = -int(spec.width / 1.5)  # start with the road already populated
    while t < n_frames:
        t += int(rng.exponential(1 / density)) + 4
        h = int(rng.integers(spec.height // 14, spec.height // 9 + 1))
        cars.append({
            "lane": int(rng.integers(len(_LANES))),
            "speed": float(rng.uniform(1.0, 2.5)),
            "h": h,
            "w": int(h * rng.uniform(1.6, 2.4)),
            "color": _TRAFFIC[rng.integers(len(_TRAFFIC))] * rng.uniform(0.8, 1.2),
            "t0": t,
        })  # fmt: skip
    return cars


def _event(rng: np.random.Generator, spec: DemoVideoSpec, kind: str, start: int) -> dict:
    """One planted event starting at frame ``start``, with its inclusive frame interval."""
    h = int(spec.height * rng.uniform(0.3, 0.38))
    if kind == "wrong_way":
        speed = float(rng.uniform(3.0, 4.5))
        w = int(h * rng.uniform(1.6, 2.2))
        length = int(np.ceil((spec.width + w) / speed))
        return {"kind": kind, "start": start, "end": start + length - 1, "h": h, "w": w, "speed": speed,
                "lane": int(rng.integers(len(_LANES))), "color": _HOT[rng.integers(len(_HOT))]}  # fmt: skip
    length = int(rng.integers(2 * spec.fps, 4 * spec.fps))
    return {"kind": kind, "start": start, "end": start + length - 1, "h": h, "w": int(h * rng.uniform(1.0, 1.6)),
            "x": int(rng.integers(0, spec.width - h)), "lane": int(rng.integers(len(_LANES))),
            "color": _HOT[rng.integers(len(_HOT))]}  # fmt: skip


def _plan_events(rng: np.random.Generator, spec: DemoVideoSpec, n_frames: int) -> list[dict]:
    """One or two non-overlapping events, away from the first and last second."""
    events: list[dict] = []
    for _ in range(int(rng.integers(1, 3))):
        kind = EVENTS[rng.integers(len(EVENTS))]
        for _attempt in range(20):
            start = int(rng.integers(spec.fps, max(spec.fps + 1, n_frames - 4 * spec.fps)))
            ev = _event(rng, spec, kind, start)
            clear = all(
                ev["end"] + spec.fps < e["start"] or e["end"] + spec.fps < ev["start"] for e in events
            )
            if ev["end"] < n_frames - spec.fps // 2 and clear:
                events.append(ev)
                break
    if not events:  # a short video: one event that fits
        ev = _event(rng, spec, "appearance", spec.fps // 2)
        ev["end"] = min(ev["end"], n_frames - 2)
        events.append(ev)
    return sorted(events, key=lambda e: e["start"])


def _paint(img: np.ndarray, y: int, x: float, h: int, w: int, color: np.ndarray) -> None:
    x0, y0 = int(round(x)), y - h // 2
    xa, xb, ya, yb = max(x0, 0), min(x0 + w, img.shape[1]), max(y0, 0), min(y0 + h, img.shape[0])
    if xa < xb and ya < yb:
        img[ya:yb, xa:xb] = color


def render_frames(spec: DemoVideoSpec, background: np.ndarray, rng: np.random.Generator, n_frames: int,
                  events: list[dict]):  # fmt: skip
    """Yield the video's frames, uint8 [H, W, 3], front to back."""
    cars = _traffic(rng, spec, n_frames)
    light = rng.uniform(0.97, 1.03)
    noise_rng = np.random.default_rng(rng.integers(2**32))
    hh = spec.height
    for t in range(n_frames):
        img = background * light
        for c in cars:
            x = -c["w"] + (t - c["t0"]) * c["speed"]
            if -c["w"] < x < spec.width:
                _paint(img, int(_LANES[c["lane"]] * hh), x, c["h"], c["w"], c["color"])
        for ev in events:
            if not ev["start"] <= t <= ev["end"]:
                continue
            y = int(_LANES[ev["lane"]] * hh)
            if ev["kind"] == "wrong_way":
                _paint(img, y, spec.width - (t - ev["start"]) * ev["speed"], ev["h"], ev["w"], ev["color"])
            else:  # a flickering blob: its brightness changes every frame
                _paint(img, y, ev["x"], ev["h"], ev["w"], ev["color"] * noise_rng.uniform(0.75, 1.0))
        img = img + noise_rng.normal(0, 3.0, img.shape).astype(np.float32)
        yield np.clip(img, 0, 255).astype(np.uint8)


def write_video(path: Path, frames, spec: DemoVideoSpec, sound: np.ndarray | None = None) -> None:
    """Encode ``frames`` as H.264 (yuv420p, single-threaded for byte-identical output) into ``path``, with
    ``sound`` (16 kHz mono) as an AAC track when given."""
    import av

    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"crf": str(spec.crf), "preset": "veryfast", "threads": "1"}
        stream.thread_count = 1
        audio = audio_stream(container) if sound is not None else None
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
        if audio is not None:
            encode_audio(container, audio, sound)
    os.replace(tmp, path)  # a crash never leaves a half-written video under the final name


def plan(spec: DemoVideoSpec) -> list[dict]:
    """Every video's manifest row (id, split, label, category, intervals) and private generation state."""
    rng = np.random.default_rng(spec.seed)
    rows = []
    for split, n_normal, n_abnormal in (
        ("train", spec.n_train_normal, spec.n_train_abnormal),
        ("test", spec.n_test_normal, spec.n_test_abnormal),
    ):
        for label, count in ((0, n_normal), (1, n_abnormal)):
            for i in range(count):
                n_frames = int(rng.integers(spec.min_frames, spec.max_frames + 1))
                events = _plan_events(rng, spec, n_frames) if label else []
                rows.append({
                    "video_id": f"{split}_{'abnormal' if label else 'normal'}_{i:03d}", "split": split,
                    "label": label, "category": "+".join(sorted({e["kind"] for e in events})) or "normal",
                    "intervals": [[e["start"], e["end"]] for e in events], "n_frames": n_frames,
                    "_events": events, "_seed": int(rng.integers(2**32)),
                })  # fmt: skip
    return rows


def generate_videos(folder: str | os.PathLike, spec: DemoVideoSpec = DemoVideoSpec(),
                    progress: bool = True) -> tuple[Path, Path]:  # fmt: skip
    """Write the demo videos into ``folder``/videos and the manifest to ``folder``/manifest.json.

    Idempotent: a folder already holding the videos of the same spec is left as it is (the manifest records the
    spec and is written last). Returns (videos folder, manifest path)."""
    folder = Path(folder)
    videos, manifest = folder / "videos", folder / "manifest.json"
    rows = plan(spec)
    if manifest.is_file():
        try:
            same = json.loads(manifest.read_text()).get("spec") == asdict(spec)
        except json.JSONDecodeError:
            same = False
        if same and all((videos / f"{r['video_id']}.mp4").is_file() for r in rows):
            return videos, manifest
    videos.mkdir(parents=True, exist_ok=True)
    background = _background(spec)
    for row in tqdm(rows, desc="demo videos", unit="video", disable=not progress):
        rng = np.random.default_rng(row["_seed"])
        frames = render_frames(spec, background, rng, row["n_frames"], row["_events"])
        sound = soundtrack(row["_seed"], row["n_frames"], spec.fps, row["_events"]) if spec.sound else None
        write_video(videos / f"{row['video_id']}.mp4", frames, spec, sound)
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    tmp = manifest.with_name(f".{manifest.name}.tmp")
    tmp.write_text(json.dumps({"spec": asdict(spec), "videos": public}, indent=1) + "\n")
    os.replace(tmp, manifest)
    return videos, manifest
