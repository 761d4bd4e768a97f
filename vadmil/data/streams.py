"""Several feature streams of one store (``data.streams``, e.g. ``[rgb, audio]``), aligned and read as one array.

A store holds one main stream, ``rgb`` (its ``features`` [T, C, D], whatever the backbone), and named extra streams
[T_e, D_e] without crops: ``audio`` is the soundtrack's VGGish embedding, whether extracted by `vadmil extract
streams=[rgb,audio]` or imported from Wu-layout ``<video>__vggish.npy`` files. Stores imported before the stream
was named ``audio`` hold it as ``vggish``; that name is read as ``audio`` too.

Alignment rule (by snippet index; the main stream's snippets define T and the frame geometry):

- a stream with T_e == T is used as is (every stream vadmil extracts: audio snippet i is the 0.96 s of sound
  centred on video snippet i);
- a longer stream is cut to its first T rows; a shorter one has its last row repeated up to T. XD-Violence's
  released VGGish files are one snippet shorter than its RGB files: HL-Net's code drops the last RGB snippet to
  match (Wu et al., github.com/Roc-Ng/XDVioDet, dataset.py); vadmil repeats the last audio row instead, so every
  RGB snippet, and every frame of the evaluation, keeps a score;
- a gap larger than ``max_gap`` snippets (``data.stream_max_gap``, default 1) is an error naming the video: index
  alignment of streams that far apart would pair sounds with the wrong moments.

Streams without crops are repeated over the main stream's C crops (HL-Net pairs each of XD-Violence's five crops
with the same audio). The read array is the streams concatenated along the feature axis in ``data.streams`` order,
[T, C, sum of dims] (C = 1 without ``rgb``), with one mask: what early fusion feeds a head, and what late fusion
(:mod:`vadmil.heads.fusion`) cuts back into per-stream slices.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError, check_choice

RGB = "rgb"  # the store's main features, whatever the backbone
AUDIO = "audio"
LEGACY_NAMES = {
    AUDIO: ("vggish",)
}  # stored names read as a stream (Wu imports before the stream was `audio`)
FUSIONS = ("early", "late")


def check_streams(streams) -> tuple[str, ...]:
    """``data.streams`` as a tuple of distinct names; a clear error for an empty list, repeats or non-strings."""
    if isinstance(streams, str):
        streams = [streams]
    names = tuple(streams or ())
    if not names or not all(isinstance(n, str) and n for n in names):
        raise VadmilError(
            f"data.streams must be a non-empty list of stream names, e.g. [rgb,audio]; got {streams}"
        )
    if len(set(names)) != len(names):
        raise VadmilError(f"data.streams names a stream twice: {list(names)}")
    return names


def check_fusion(fusion: str) -> str:
    check_choice("data.fusion", fusion, FUSIONS)
    return fusion


def declared_streams(recipe: Mapping) -> dict[str, int]:
    """Stream name → dim of a store recipe (its root attributes, or a run's recorded recipe): ``rgb`` and the
    declared extra streams, legacy names included."""
    extra = recipe.get("extra_streams") or {}
    if isinstance(extra, str):
        extra = json.loads(extra or "{}")
    return {RGB: int(recipe["feature_dim"]), **{str(k): int(v) for k, v in extra.items()}}


def stored_name(declared: Mapping[str, int], name: str) -> str | None:
    """The name stream ``name`` is stored under (itself, or a legacy name), or None."""
    for candidate in (name, *LEGACY_NAMES.get(name, ())):
        if candidate in declared:
            return candidate
    return None


def stream_dims(recipe: Mapping, streams: Sequence[str], where: str = "the feature store") -> dict[str, int]:
    """name → dim of each of ``streams``, in order; an error naming the streams ``where`` holds."""
    declared = declared_streams(recipe)
    dims = {}
    for name in check_streams(streams):
        stored = stored_name(declared, name)
        if stored is None:
            have = ", ".join(k for k in declared if k != RGB)
            hint = (
                " (extract with streams=[rgb,audio], or import Wu-layout files with their __vggish.npy audio)"
                if name == AUDIO
                else ""
            )
            raise VadmilError(
                f"data.streams asks for stream '{name}' but {where} holds only rgb"
                + (f" and {have}" if have else "")
                + f"{hint}; set data.streams to streams it holds"
            )
        dims[name] = declared[stored]
    return dims


def align(x: np.ndarray, t: int, max_gap: int, what: str) -> np.ndarray:
    """Rows of ``x`` [T_e, ...] aligned to ``t`` by the module's rule (cut, or last row repeated)."""
    if abs(len(x) - t) > max_gap:
        raise VadmilError(
            f"{what} has {len(x)} snippets but the rgb features have {t}: more than data.stream_max_gap="
            f"{max_gap} apart, so pairing them by index would misalign them in time; re-extract the stream, or "
            "raise data.stream_max_gap if the files are known to start together"
        )
    if len(x) >= t:
        return x[:t]
    return np.concatenate([x, np.repeat(x[-1:], t - len(x), axis=0)])


class StreamStore:
    """A :class:`FeatureStore` read as its ``streams`` concatenated (see the module's alignment rule).

    It answers what training and evaluation ask of a store (``read``, ``features``, ``feature_dim``, ``n_crops``;
    everything else — ids, frame counts, geometry, recipe — is the store's own). ``dims``: name → dim, in order.
    """

    def __init__(self, store: FeatureStore, streams: Sequence[str], max_gap: int = 1):
        self.store, self.streams = store, check_streams(streams)
        if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 0:
            raise VadmilError(f"data.stream_max_gap must be a whole number of snippets >= 0, got {max_gap!r}")
        self.max_gap = max_gap
        self.dims = stream_dims(store.attrs, self.streams, f"feature store {store.path}")
        declared = declared_streams(store.attrs)
        self._stored = {name: stored_name(declared, name) for name in self.streams}

    def __getattr__(self, name):  # ids, n_frames, geometry, pooled, path, info, recipe, ...: the store's
        if name.startswith("__") or name in ("store", "streams", "dims", "max_gap", "_stored"):
            raise AttributeError(name)
        return getattr(self.store, name)

    # Special methods are looked up on the type, not through __getattr__.
    def __contains__(self, video_id: str) -> bool:
        return video_id in self.store

    def __len__(self) -> int:
        return len(self.store)

    def __enter__(self) -> StreamStore:
        return self

    def __exit__(self, *exc) -> None:
        self.store.close()

    @property
    def feature_dim(self) -> int:
        return sum(self.dims.values())

    @property
    def n_crops(self) -> int:
        return self.store.n_crops if RGB in self.streams else 1

    def read(self, video_id: str, check_finite: bool = True) -> np.ndarray:
        """The streams of one video, aligned and concatenated: float32 [T, C, sum of dims]."""
        t = self.store.n_snippets(video_id)
        parts = {}
        for name in self.streams:
            if name == RGB:
                parts[name] = self.store.read(video_id, check_finite)
                continue
            stored = self._stored[name]
            try:
                x = self.store.read_extra(video_id, stored)
            except VadmilError:
                raise VadmilError(
                    f"video '{video_id}' in feature store {self.store.path} has no '{name}' stream; re-extract it "
                    f"with streams=[rgb,{name}] (or import its audio file), or leave '{name}' out of data.streams"
                ) from None
            if check_finite and not np.isfinite(x).all():
                raise VadmilError(
                    f"video '{video_id}' in feature store {self.store.path} has NaN/Inf in its '{name}' stream; "
                    "re-extract or re-import that video"
                )
            parts[name] = align(x, t, self.max_gap, f"video '{video_id}': stream '{name}'")
        return fuse(parts, self.streams, self.store.n_crops)

    def features(self, video_id: str) -> np.ndarray:
        """As :meth:`read` (an array, where a store gives a lazy dataset: a video's streams are read whole)."""
        return self.read(video_id, check_finite=False)


def fuse(parts: Mapping[str, np.ndarray], streams: Sequence[str], n_crops: int) -> np.ndarray:
    """Aligned streams (``rgb`` [T, C, D], the others [T, D_e]) → float32 [T, C, sum of dims] in ``streams``
    order; streams without crops are repeated over the C crops (C = 1 without ``rgb``)."""
    c = n_crops if RGB in streams else 1
    t = len(parts[streams[0]])
    out = [
        parts[name]
        if name == RGB
        else np.broadcast_to(parts[name][:, None, :], (t, c, parts[name].shape[-1]))
        for name in streams
    ]
    return np.ascontiguousarray(np.concatenate(out, axis=-1), dtype=np.float32)


def open_streams(store: FeatureStore, streams: Sequence[str] = (RGB,), max_gap: int = 1):
    """``store`` itself for ``[rgb]`` (nothing changes for single-stream runs), else a :class:`StreamStore`."""
    if check_streams(streams) == (RGB,):
        return store
    return StreamStore(store, streams, max_gap)


def run_streams(cfg) -> tuple[tuple[str, ...], int]:
    """(streams, max gap) of a run's config (``data.streams``; runs from before streams read ``[rgb]``)."""
    data = cfg.get("data") or {}
    return check_streams(list(data.get("streams") or [RGB])), int(data.get("stream_max_gap", 1))


def open_run_streams(store: FeatureStore, cfg):
    """``store`` read as the run ``cfg`` trained on it (:func:`open_streams` of its ``data.streams``)."""
    streams, max_gap = run_streams(cfg)
    return open_streams(store, streams, max_gap)


def stream_dims_of(store) -> dict[str, int]:
    """name → dim of what a (stream) store reads, in feature order."""
    return dict(getattr(store, "dims", None) or {RGB: store.feature_dim})
