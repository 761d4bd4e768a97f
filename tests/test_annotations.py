"""Annotation loaders on files in each dataset's real format, frame ground truth, and every error path."""

import json

import numpy as np
import pytest

from vadmil.data.annotations import (
    load_manifest,
    load_shanghaitech_masks,
    load_ucf_crime,
    load_ucf_crime_list,
    load_video_list,
    load_xd_violence,
)
from vadmil.data.labels import VideoLabel, frame_labels, normalise_video_id, split_counts
from vadmil.errors import VadmilError

XD_NORMAL = "A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A"
XD_FIGHT = "Bad.Boys.1995__#01-11-55_01-12-40_label_B1-0-0"
XD_BLAST = "Operation.Red.Sea.2018__#0-28-50_0-30-15_label_G-B2-B6"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- ids -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Abuse/Abuse028_x264.mp4", "Abuse028_x264"),
        ("/data/UCF/Abuse028_x264_i3d.npy", "Abuse028_x264"),
        (r"C:\feat\Abuse028_x264__3.npy", "Abuse028_x264"),
        ("v__7.npy", "v"),
        ("Arrest001_x264_C.txt", "Arrest001_x264"),
        ("01_0014", "01_0014"),
        ("01_0014.NPY", "01_0014"),
        ("clip.AVI", "clip"),
        (XD_NORMAL, XD_NORMAL),
        (f"{XD_NORMAL}.mp4", XD_NORMAL),
        (f"/xd/rgb/{XD_FIGHT}__0.npy", XD_FIGHT),
        (f"{XD_FIGHT}__vggish.npy", XD_FIGHT),
        ("video.h5", "video.h5"),  # unknown extension: kept
    ],
)
def test_normalise_video_id(name, expected):
    assert normalise_video_id(name) == expected


def test_normalise_video_id_rejects_empty_names():
    with pytest.raises(VadmilError, match="cannot derive a video id"):
        normalise_video_id("features/__3.npy")


# ---- frame ground truth --------------------------------------------------------------------------


def test_frame_labels_inclusive_and_exclusive_ends():
    video = VideoLabel("v", 1, ((2, 4), (7, 7)))
    assert frame_labels(video, 10).tolist() == [0, 0, 1, 1, 1, 0, 0, 1, 0, 0]
    assert frame_labels(video, 10, end_inclusive=False).tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    assert frame_labels(video, 10).dtype == np.uint8


def test_frame_labels_clips_and_merges_overlaps():
    video = VideoLabel("v", 1, ((3, 100), (1, 4), (50, 60)))
    assert frame_labels(video, 6).tolist() == [0, 1, 1, 1, 1, 1]
    assert frame_labels(VideoLabel("v", 1, ((9, 12),)), 6).tolist() == [0] * 6


def test_frame_labels_mask_is_truncated_or_padded():
    video = VideoLabel("v", 1, mask=np.array([0, 1, 1, 0], dtype=bool))
    assert frame_labels(video, 3).tolist() == [0, 1, 1]
    assert frame_labels(video, 6).tolist() == [0, 1, 1, 0, 0, 0]


def test_frame_labels_normal_video_is_all_zero_and_rejects_intervals():
    assert frame_labels(VideoLabel("n", 0), 4).tolist() == [0, 0, 0, 0]
    with pytest.raises(VadmilError, match="n is labelled normal"):
        frame_labels(VideoLabel("n", 0, ((1, 2),)), 4)


def test_frame_labels_abnormal_without_annotation():
    with pytest.raises(VadmilError, match="abnormal video a has no temporal annotation.*add its intervals"):
        frame_labels(VideoLabel("a", 1), 4)


def test_video_label_equality_and_immutable_mask():
    mask = np.array([0, 1], dtype=np.int64)
    video = VideoLabel("v", 1, [[0, 1]], mask=mask)
    assert video == VideoLabel("v", 1, ((0, 1),), mask=np.array([0, 1], dtype=np.uint8))
    assert video != VideoLabel("v", 1, ((0, 1),), mask=np.array([1, 1]))
    assert video.mask.dtype == np.uint8 and not video.mask.flags.writeable
    mask[0] = 1  # the caller's array is copied
    assert video.mask[0] == 0


# ---- UCF-Crime -----------------------------------------------------------------------------------

UCF_TEMPORAL = """\
Arrest001_x264.mp4  Arrest  4380  5250  -1  -1
Abuse028_x264.mp4  Abuse  165  240  -1  -1
Arson011_x264.mp4  Arson  150  420  680  1267
Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1

Explosion008_x264.mp4  Explosion  10  20  30  40  50  60
"""


def test_load_ucf_crime(tmp_path):
    videos = load_ucf_crime(write(tmp_path, "Temporal_Anomaly_Annotation.txt", UCF_TEMPORAL))
    assert list(videos) == [
        "Arrest001_x264",
        "Abuse028_x264",
        "Arson011_x264",
        "Normal_Videos_003_x264",
        "Explosion008_x264",
    ]
    assert videos["Arrest001_x264"] == VideoLabel("Arrest001_x264", 1, ((4380, 5250),), category="Arrest")
    assert videos["Arson011_x264"].intervals == ((150, 420), (680, 1267))
    assert videos["Explosion008_x264"].intervals == ((10, 20), (30, 40), (50, 60))
    normal = videos["Normal_Videos_003_x264"]
    assert (normal.label, normal.intervals, normal.category) == (0, (), "Normal")
    assert split_counts(videos) == (1, 4)


def test_load_ucf_crime_identical_duplicate_collapses(tmp_path):
    text = "Abuse028_x264.mp4 Abuse 165 240 -1 -1\nAbuse028_x264.mp4 Abuse 165 240 -1 -1\n"
    assert len(load_ucf_crime(write(tmp_path, "a.txt", text))) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Arrest001_x264.mp4 Arrest 4380 5250\nAbuse028_x264.mp4 165 240 -1 -1\n", r"a\.txt:2: expected"),
        ("Arrest001_x264.mp4 Arrest 4380 5250 -1\n", r"a\.txt:1: odd number of frame indices"),
        ("Arrest001_x264.mp4 Arrest 4380 x -1 -1\n", r"a\.txt:1: frame indices must be integers"),
        (
            "Arrest001_x264.mp4 Arrest 5250 4380 -1 -1\n",
            r"a\.txt:1: interval 5250 4380 ends before it starts",
        ),
        (
            "\nArrest001_x264.mp4 Arrest -1 -1 -1 -1\n",
            r"a\.txt:2: abnormal video Arrest001_x264 has no temporal",
        ),
        (
            "Normal_Videos_003_x264.mp4 Normal 1 5 -1 -1\n",
            r"a\.txt:1: normal video Normal_Videos_003_x264 has",
        ),
        (
            "Abuse028_x264.mp4 Abuse 165 240 -1 -1\nAbuse028_x264.mp4 Abuse 165 250 -1 -1\n",
            r"a\.txt:2: video Abuse028_x264 appears again",
        ),
    ],
)
def test_load_ucf_crime_errors(tmp_path, text, message):
    with pytest.raises(VadmilError, match=message):
        load_ucf_crime(write(tmp_path, "a.txt", text))


def test_missing_and_empty_files_name_the_path_and_config_key(tmp_path):
    for loader in (load_ucf_crime, load_ucf_crime_list, load_xd_violence, load_manifest):
        with pytest.raises(
            VadmilError, match=r"nowhere\.csv does not exist.*dataset\.annotations\.<split>\.path="
        ):
            loader(tmp_path / "nowhere.csv")
    with pytest.raises(VadmilError, match="nowhere.*dataset.annotations"):
        load_shanghaitech_masks(tmp_path / "nowhere")
    with pytest.raises(VadmilError, match=r"empty\.txt is empty"):
        load_ucf_crime(write(tmp_path, "empty.txt", "\n\n"))
    with pytest.raises(VadmilError, match="cannot read annotation file"):
        load_ucf_crime(tmp_path)  # a folder, not a file


UCF_TRAIN_LIST = """\
Abuse/Abuse001_x264.mp4
Arrest/Arrest002_x264.mp4
Training_Normal_Videos_Anomaly/Normal_Videos003_x264.mp4
Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4
RoadAccidents011_x264.mp4
Normal_Videos_050_x264.mp4
"""


def test_load_ucf_crime_list(tmp_path):
    videos = load_ucf_crime_list(write(tmp_path, "Anomaly_Train.txt", UCF_TRAIN_LIST))
    got = {v: (x.label, x.category) for v, x in videos.items()}
    assert got == {
        "Abuse001_x264": (1, "Abuse"),
        "Arrest002_x264": (1, "Arrest"),
        "Normal_Videos003_x264": (0, "Normal"),
        "Normal_Videos_003_x264": (0, "Normal"),
        "RoadAccidents011_x264": (1, "RoadAccidents"),
        "Normal_Videos_050_x264": (0, "Normal"),
    }
    assert list(videos)[0] == "Abuse001_x264" and split_counts(videos) == (3, 3)


def test_load_ucf_crime_list_rejects_temporal_file_and_nameless_classes(tmp_path):
    with pytest.raises(VadmilError, match=r"l\.txt:1: expected one path per line"):
        load_ucf_crime_list(write(tmp_path, "l.txt", UCF_TEMPORAL))
    with pytest.raises(VadmilError, match=r"l\.txt:2: no class in '0042\.mp4'"):
        load_ucf_crime_list(write(tmp_path, "l.txt", "Abuse/Abuse001_x264.mp4\n0042.mp4\n"))


# ---- generic lists (RTFM style) ------------------------------------------------------------------

RTFM_LIST = """\
/feats/UCF_Train_ten_crop_i3d/Abuse001_x264_i3d.npy
/feats/UCF_Train_ten_crop_i3d/Arrest002_x264_i3d.npy
/feats/UCF_Train_ten_crop_i3d/Normal_Videos003_x264_i3d.npy
"""


def test_load_video_list_abnormal_first_and_label(tmp_path):
    path = write(tmp_path, "ucf-i3d.list", RTFM_LIST)
    videos = load_video_list(path, abnormal_first=2)
    assert [(v, x.label) for v, x in videos.items()] == [
        ("Abuse001_x264", 1),
        ("Arrest002_x264", 1),
        ("Normal_Videos003_x264", 0),
    ]
    assert split_counts(load_video_list(path, label=0)) == (3, 0)
    assert split_counts(load_video_list(path, abnormal_first=0)) == (3, 0)


def test_load_video_list_collapses_per_crop_files(tmp_path):
    lines = [f"rgb/{v}__{c}.npy" for v in ("Abuse001_x264", "Normal_Videos003_x264") for c in range(10)]
    videos = load_video_list(write(tmp_path, "crops.list", "\n".join(lines)), abnormal_first=1)
    assert [(v, x.label) for v, x in videos.items()] == [("Abuse001_x264", 1), ("Normal_Videos003_x264", 0)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of abnormal_first=N.*or label=0|1"),
        ({"abnormal_first": 1, "label": 1}, "give exactly one of"),
        ({"abnormal_first": 4}, "has 3 videos, fewer than abnormal_first=4"),
        ({"label": 2}, "label must be 0 .normal. or 1"),
    ],
)
def test_load_video_list_errors(tmp_path, kwargs, message):
    with pytest.raises(VadmilError, match=message):
        load_video_list(write(tmp_path, "ucf-i3d.list", RTFM_LIST), **kwargs)


# ---- ShanghaiTech --------------------------------------------------------------------------------


@pytest.fixture
def sh_masks(tmp_path):
    folder = tmp_path / "test_frame_mask"
    folder.mkdir()
    np.save(folder / "01_0014.npy", np.array([0, 0, 1, 1, 0], dtype=np.uint8))
    np.save(folder / "01_001.npy", np.zeros(4, dtype=np.int64))  # a normal test video
    np.save(folder / "12_0173.npy", np.array([False, True, True]))
    return folder


def test_load_shanghaitech_masks(sh_masks):
    videos = load_shanghaitech_masks(sh_masks)
    assert list(videos) == ["01_001", "01_0014", "12_0173"]
    assert [videos[v].label for v in videos] == [0, 1, 1]
    assert videos["01_0014"].mask.tolist() == [0, 0, 1, 1, 0]
    assert frame_labels(videos["12_0173"], 5).tolist() == [0, 1, 1, 0, 0]


def test_load_shanghaitech_masks_with_id_list(sh_masks, tmp_path):
    ids = write(tmp_path, "sh-test.list", "/feats/12_0173_i3d.npy\n/feats/01_0014_i3d.npy\n")
    assert list(load_shanghaitech_masks(sh_masks, ids_path=ids)) == ["12_0173", "01_0014"]
    ids = write(tmp_path, "sh-test.list", "12_0173\n05_0018\n06_0144\n")
    with pytest.raises(VadmilError, match="no mask for 2 video.* listed in .*sh-test.list: 05_0018, 06_0144"):
        load_shanghaitech_masks(sh_masks, ids_path=ids)


@pytest.mark.parametrize("bad", [np.array([0, 2, 1]), np.zeros((3, 2)), np.array([0.0, 0.5])])
def test_load_shanghaitech_masks_rejects_bad_masks(sh_masks, bad):
    np.save(sh_masks / "07_0047.npy", bad)
    with pytest.raises(VadmilError, match=r"mask .*07_0047\.npy must be 1-D with 0/1 per frame"):
        load_shanghaitech_masks(sh_masks)


def test_load_shanghaitech_masks_rejects_empty_folder(tmp_path):
    with pytest.raises(VadmilError, match="has no <scene>_<id>.npy files"):
        load_shanghaitech_masks(tmp_path)


# ---- XD-Violence ---------------------------------------------------------------------------------


@pytest.fixture
def xd_list(tmp_path):
    crops = [f"/xd/RGBTest/{v}__{c}.npy" for v in (XD_FIGHT, XD_BLAST, XD_NORMAL) for c in range(5)]
    return write(tmp_path, "rgb_test.list", "\n".join(crops) + "\n")


def test_load_xd_violence_labels_from_names(xd_list):
    videos = load_xd_violence(xd_list)
    assert [(v, x.label, x.category) for v, x in videos.items()] == [
        (XD_FIGHT, 1, "B1-0-0"),
        (XD_BLAST, 1, "G-B2-B6"),
        (XD_NORMAL, 0, "A"),
    ]


def test_load_xd_violence_with_annotations(xd_list, tmp_path):
    ann = write(tmp_path, "annotations.txt", f"{XD_FIGHT}.mp4 0 88 160 271\n{XD_BLAST} 1 4113\n")
    videos = load_xd_violence(xd_list, annotation_path=ann)
    assert videos[XD_FIGHT].intervals == ((0, 88), (160, 271))
    assert videos[XD_BLAST].intervals == ((1, 4113),)
    assert videos[XD_NORMAL].intervals == () and videos[XD_NORMAL].category == "A"


def test_load_xd_violence_errors(xd_list, tmp_path):
    ann = write(tmp_path, "annotations.txt", f"{XD_FIGHT} 0 88\n")
    with pytest.raises(
        VadmilError, match=r"annotations\.txt has no intervals for 1 violent video.*Operation\.Red"
    ):
        load_xd_violence(xd_list, annotation_path=ann)
    ann = write(tmp_path, "annotations.txt", f"{XD_FIGHT} 0 88\n{XD_BLAST} 1 4113\n{XD_NORMAL} 5 9\n")
    with pytest.raises(VadmilError, match=r"annotations\.txt:3: .*normal \(_label_A\) video with intervals"):
        load_xd_violence(xd_list, annotation_path=ann)
    ann = write(tmp_path, "annotations.txt", f"{XD_FIGHT} 0 88 160\n")
    with pytest.raises(VadmilError, match=r"annotations\.txt:1: odd number"):
        load_xd_violence(xd_list, annotation_path=ann)
    with pytest.raises(VadmilError, match=r"x\.list:2: XD-Violence name 'Some_movie' lacks '_label_"):
        load_xd_violence(write(tmp_path, "x.list", f"{XD_FIGHT}\nSome_movie.mp4\n"))


# ---- manifest ------------------------------------------------------------------------------------

MANIFEST_CSV = """\
video_id,split,label,intervals,category
cam1/2024-05-01_0800.mp4,train,abnormal,,fight
cam1/2024-05-01_0900.mp4,train,normal,,
cam2/2024-05-02_1200.mp4,test,1,120-250;400-512,theft
cam2/2024-05-02_1300.mp4,test,0,,
"""


def test_load_manifest_csv(tmp_path):
    path = write(tmp_path, "manifest.csv", MANIFEST_CSV)
    test = load_manifest(path, split="test")
    assert test == {
        "2024-05-02_1200": VideoLabel("2024-05-02_1200", 1, ((120, 250), (400, 512)), category="theft"),
        "2024-05-02_1300": VideoLabel("2024-05-02_1300", 0),
    }
    assert split_counts(load_manifest(path, split="train")) == (1, 1)
    assert len(load_manifest(path)) == 4


def test_load_manifest_json_both_layouts(tmp_path):
    rows = [
        {"video_id": "a.mp4", "split": "test", "label": 1, "intervals": [[3, 9]], "category": "x"},
        {"video_id": "b", "split": "test", "label": 0},
    ]
    for data in (rows, {"videos": rows}):
        videos = load_manifest(write(tmp_path, "m.json", json.dumps(data)), split="test")
        assert videos == {"a": VideoLabel("a", 1, ((3, 9),), category="x"), "b": VideoLabel("b", 0)}


@pytest.mark.parametrize(
    ("name", "text", "split", "message"),
    [
        ("m.csv", MANIFEST_CSV, "val", r"manifest .*m\.csv: unknown split 'val'; choose one of train, test"),
        (
            "m.csv",
            "video_id,split,label\na,train,1\n",
            "test",
            "no row with split 'test'; splits present: train",
        ),
        # Rows are validated, not filtered: a mistyped split, a wrong column count, another separator.
        ("m.csv", "video_id,split,label\na,test,1\nb,tset,0\n", "test", r"m\.csv:3: unknown split 'tset'"),
        (
            "m.csv",
            "video_id,split,label\na,test,1\nb test 0\n",
            "test",
            r"m\.csv:3: 1 column\(s\) where the header has 3",
        ),
        (
            "m.csv",
            "video_id,split,label\na,test,1,extra\n",
            None,
            r"m\.csv:2: 4 column\(s\) where the header has 3",
        ),
        (
            "m.csv",
            "video_id;split;label\na;test;1\n",
            None,
            r"m\.csv:1: header .* \(columns are separated by commas\)",
        ),
        (
            "m.json",
            '[{"video_id": "a", "split": "train ", "label": 1}, {"video_id": "b", "split": "Test", "label": 0}]',
            None,
            "video entry 2: unknown split 'Test'",
        ),
        ("m.csv", "video_id,split,label\na,test,maybe\n", None, r"m\.csv:2: label 'maybe' of a must be 0/1"),
        ("m.csv", "video_id,label\na,1\n", None, r"m\.csv:1: header must be 'video_id,split,label"),
        ("m.csv", "video_id,split,label,intervals\na,test,1,5:9\n", None, r"m\.csv:2: intervals '5:9'"),
        ("m.csv", "video_id,split,label,intervals\na,test,0,5-9\n", None, r"m\.csv:2: normal video a has"),
        ("m.csv", "video_id,split,label\na,test,1\na,test,0\n", None, r"m\.csv:3: video a appears again"),
        ("m.json", '[{"video_id": "a", "split": "test", "label": 3}]', None, "video entry 1: label 3 of a"),
        ("m.json", '[{"video_id": "a", "label": 1}]', None, r"m\.json: expected \["),
        ("m.json", '[{"video_id": "a",', None, r"m\.json:1: invalid JSON"),
        ("m.yaml", "", None, r"m\.yaml must be a \.csv or \.json file"),
    ],
)
def test_load_manifest_errors(tmp_path, name, text, split, message):
    with pytest.raises(VadmilError, match=message):
        load_manifest(write(tmp_path, name, text), split=split)


def test_interval_starts_before_frame_zero_are_clipped_with_one_warning(tmp_path, caplog):
    text = "video_id,split,label,intervals\na,test,1,-5-20;30-40\nb,test,1,-1-3\nc,train,1,-2-4\n"
    with caplog.at_level("WARNING", logger="vadmil.data"):
        videos = load_manifest(write(tmp_path, "m.csv", text), split="test")
    assert videos["a"].intervals == ((0, 20), (30, 40)) and videos["b"].intervals == ((0, 3),)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "2 interval(s) start before frame 0" in warning and "clipped" in warning
    data = [{"video_id": "a", "split": "test", "label": 1, "intervals": [[-3, 9]]}]
    assert load_manifest(write(tmp_path, "m.json", json.dumps(data)))["a"].intervals == ((0, 9),)
    # UCF-Crime's "-1 -1" still means "no interval".
    ucf = write(tmp_path, "ucf.txt", "Abuse001_x264.mp4  Abuse  -5  100  -1  -1\n")
    assert load_ucf_crime(ucf)["Abuse001_x264"].intervals == ((0, 100),)
