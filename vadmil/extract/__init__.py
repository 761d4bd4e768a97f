"""Feature extraction inputs: sequential video decoding, snippet assembly and backbone transforms."""

from vadmil.extract.decode import BACKENDS, DecodedVideo, VideoInfo, open_video, resample_indices
from vadmil.extract.snippets import SnippetAssembler, snippet_frame_indices
from vadmil.extract.transforms import (
    CROP_ORDERS,
    SnippetTransform,
    crop,
    normalise,
    resize_short_side,
    resize_to,
    to_float_clip,
)

__all__ = [
    "BACKENDS",
    "CROP_ORDERS",
    "DecodedVideo",
    "SnippetAssembler",
    "SnippetTransform",
    "VideoInfo",
    "crop",
    "normalise",
    "open_video",
    "resample_indices",
    "resize_short_side",
    "resize_to",
    "snippet_frame_indices",
    "to_float_clip",
]
