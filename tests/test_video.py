"""Videos as recorders write them: frame times of a variable frame rate, the annotated copy's
timing, complete files whose frame count OpenCV overstates, cut copies, files without a picture."""

from __future__ import annotations

import csv
import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from predict_helpers import write_clip, write_mp4

from lionfer.inference.annotated_copies import VideoWriter
from lionfer.inference.predict_job import predict_files
from lionfer.inference.predictor import load
from lionfer.inference.video import DamagedVideoError, _shortfall, frames
from lionfer.inference.video_containers import Container, container_facts

OPENCV_CAPTURE = cv2.VideoCapture


def greys(n: int, size=(64, 48)) -> list[Image.Image]:
    """n (at most 12) frames of one grey level each, 20 levels apart, to tell them apart after
    encoding."""
    return [Image.new("RGB", size, (20 + 20 * i,) * 3) for i in range(n)]


def noise(n: int, size=(64, 48)) -> list[Image.Image]:
    """n frames of noise, each as large encoded: a copy cut short keeps a share of them."""
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        for _ in range(n)
    ]


def which_grey(frame: np.ndarray) -> int:
    return round((float(frame.mean()) - 20) / 20)


def write_mkv(path: Path, images: list[Image.Image], fps: float = 10.0) -> Path:
    """A Matroska file (mp4v) of RGB frames, as OpenCV writes it: its Segment's size and its
    duration stated."""
    return write_clip(path, images, fps, codec="mp4v")


def decoder_times(monkeypatch, msec: list[float]) -> None:
    """Make OpenCV's decoder report msec[k] as the time of the k-th frame read, as it does for a
    video of variable frame rate (OpenCV's writer makes constant-rate files only)."""

    class Capture:
        def __init__(self, *args):
            self._capture, self._read = OPENCV_CAPTURE(*args), 0

        def grab(self):
            ok = self._capture.grab()
            self._read += ok
            return ok

        def read(self):
            ok, image = self._capture.read()
            self._read += ok
            return ok, image

        def get(self, prop):
            if prop == cv2.CAP_PROP_POS_MSEC:
                return msec[self._read - 1]
            return self._capture.get(prop)

        def isOpened(self):
            return self._capture.isOpened()

        def release(self):
            self._capture.release()

    monkeypatch.setattr(cv2, "VideoCapture", Capture)


def times(path: Path, stride: int = 1) -> list[float | None]:
    return [time_s for _, time_s, _ in frames(path, stride)]


@pytest.mark.parametrize(
    ("suffix", "write"), [(".avi", write_clip), (".mp4", write_mp4), (".mkv", write_mkv)]
)
def test_a_constant_rate_videos_times_are_its_frame_index_over_its_rate(tmp_path, suffix, write):
    path = write(tmp_path / f"clip{suffix}", greys(12), 30.0)
    assert times(path) == [index / 30.0 for index in range(12)]  # exactly, as they always were
    assert times(path, stride=5) == [0.0, 5 / 30.0, 10 / 30.0]


def test_a_variable_rate_video_is_timed_by_its_decoder(tmp_path, monkeypatch):
    path = write_clip(tmp_path / "clip.avi", greys(6), fps=10.0)
    decoder_times(monkeypatch, [0.0, 100.0, 200.0, 500.0, 900.0, 1000.0])  # a slow stretch
    assert times(path) == pytest.approx([0.0, 0.1, 0.2, 0.5, 0.9, 1.0])
    assert times(path, stride=2) == pytest.approx([0.0, 0.2, 0.9])  # skipped frames are timed too


def test_reading_on_from_a_frame_gives_a_whole_reads_frames_from_it(tmp_path, monkeypatch):
    """A job going on where it stopped reads a video from frame `start`: the frames before it
    are passed over, so indices, times (a variable rate's too) and pictures are a whole read's;
    a cut copy is still damaged, after the same frame."""
    path = write_clip(tmp_path / "clip.avi", greys(6), fps=10.0)
    decoder_times(monkeypatch, [0.0, 100.0, 200.0, 500.0, 900.0, 1000.0])
    whole = [(i, t, which_grey(np.asarray(im))) for i, t, im in frames(path, 2)]
    for start in (0, 1, 2, 3, 5, 6, 9):
        tail = [(i, t, which_grey(np.asarray(im))) for i, t, im in frames(path, 2, start)]
        assert tail == [w for w in whole if w[0] >= start]
    with pytest.raises(ValueError, match="first frame must be 0 or more"):
        next(frames(path, 1, -1))
    monkeypatch.undo()
    cut = _cut(write_clip(tmp_path / "long.avi", noise(12), fps=10.0))
    with pytest.raises(DamagedVideoError) as whole_read:
        list(frames(cut))
    with pytest.raises(DamagedVideoError) as read_on:
        assert [i for i, _, _ in frames(cut, 1, 3)] == list(range(3, whole_read.value.frame))
    assert read_on.value.frame == whole_read.value.frame


def test_a_frame_without_a_decoder_time_carries_the_last_one_on_at_the_frame_rate(
    tmp_path, monkeypatch
):
    path = write_clip(tmp_path / "clip.avi", greys(8), fps=10.0)
    decoder_times(monkeypatch, [0.0] * 8)  # no time stamps (a raw .h264 stream): index / fps
    assert times(path) == [index / 10.0 for index in range(8)]
    # none, negative, good and ahead of the rate, not after the frame before, 0, good again
    decoder_times(monkeypatch, [0.0, 100.0, float("nan"), -5.0, 450.0, 450.0, 0.0, 800.0])
    assert times(path) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.45, 0.55, 0.65, 0.8])


def _annotated(tmp_path: Path, checkpoint: Path, clip: Path, job: str, stride: int = 1):
    """(the annotated copy of clip's frames as grey indices, its frame rate, time_s written)."""
    predictor = load(checkpoint, detector=lambda image: [])
    folder, out = tmp_path / f"annotated_{job}", tmp_path / f"{job}.csv"
    predict_files(predictor, [clip], out, frame_stride=stride, annotate=folder, progress=False)
    (copy,) = folder.glob("*.mp4")
    capture, shown = OPENCV_CAPTURE(str(copy)), []
    while (read := capture.read())[0]:
        shown.append(which_grey(read[1]))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    with out.open(newline="") as f:
        written = [float(row["time_s"]) for row in csv.DictReader(f)]
    return shown, fps, written


def test_an_annotated_copy_keeps_a_variable_rate_videos_timing(tmp_path, checkpoint, monkeypatch):
    clip = write_clip(tmp_path / "clip.avi", greys(7), fps=10.0)
    assert _annotated(tmp_path, checkpoint, clip, "even")[:2] == ([0, 1, 2, 3, 4, 5, 6], 10.0)
    # frames 2 and 3 come early (their places are taken), then a pause before 5 and 6
    decoder_times(monkeypatch, [0.0, 100.0, 120.0, 140.0, 300.0, 500.0, 900.0])
    shown, fps, written = _annotated(tmp_path, checkpoint, clip, "uneven")
    assert written == [0.0, 0.1, 0.12, 0.14, 0.3, 0.5, 0.9]
    assert fps == 10.0 and shown == [0, 1, 3, 4, 4, 5, 5, 5, 5, 6]  # each frame at its time
    shown, fps, _ = _annotated(tmp_path, checkpoint, clip, "stride", stride=2)  # 0, 2, 4, 6
    assert fps == 5.0 and shown == [0, 2, 4, 4, 6]


def _trimmed(path: Path, hidden: int, fps: float) -> Path:
    """An MP4 written by OpenCV trimmed as a phone gallery trims without re-encoding: its edit
    list shows all but the first `hidden` frames, which stay in the file."""
    data = bytearray(path.read_bytes())
    mdhd, elst = data.index(b"mdhd"), data.index(b"elst")
    media_scale = int.from_bytes(data[mdhd + 16 : mdhd + 20], "big")
    movie_scale = int.from_bytes(data[data.index(b"mvhd") + 16 : data.index(b"mvhd") + 20], "big")
    shown = int.from_bytes(data[elst + 12 : elst + 16], "big") - round(hidden * movie_scale / fps)
    data[elst + 12 : elst + 16] = shown.to_bytes(4, "big")  # the edit's duration
    data[elst + 16 : elst + 20] = round(hidden * media_scale / fps).to_bytes(4, "big")  # its start
    trimmed = path.with_name(f"trimmed_{path.name}")
    trimmed.write_bytes(bytes(data))
    return trimmed


def _cut(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    cut = path.with_name(f"cut_{path.name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def test_a_video_trimmed_by_an_edit_list_is_whole_and_its_cut_copy_damaged(tmp_path):
    trimmed = _trimmed(write_mp4(tmp_path / "clip.mp4", noise(30), fps=10.0), hidden=7, fps=10.0)
    assert cv2.VideoCapture(str(trimmed)).get(cv2.CAP_PROP_FRAME_COUNT) == 30  # hidden ones too
    read = times(trimmed)  # no DamagedVideoError: the 23 frames shown are the whole video
    assert len(read) == 23 and read[-1] == pytest.approx(2.2)
    assert container_facts(trimmed).video_s == pytest.approx(2.3)
    with pytest.raises(DamagedVideoError, match=r"of the 2.30 s its header declares \(truncated"):
        times(_cut(trimmed, 0.8))


def _transport_stream(path: Path, images: list[Image.Image], fps: float = 10.0) -> Path:
    """An MPEG-2 video in an MPEG transport stream, as recorders and OBS write them."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MPEG"), fps, images[0].size)
    for image in images:
        writer.write(np.ascontiguousarray(np.asarray(image)[:, :, ::-1]))
    writer.release()
    return path


def _motion_jpeg(path: Path, images: list[Image.Image]) -> Path:
    """An IP camera's motion JPEG: JPEG after JPEG."""
    with path.open("wb") as f:
        for image in images:
            image.save(f, format="JPEG")
    return path


def test_a_transport_stream_or_motion_jpeg_cut_inside_a_packet_or_frame_is_damaged(tmp_path):
    """Neither states a duration (OpenCV's estimate shrinks with the file), so their ends say
    whether they are whole: a stream must end with a whole packet, a motion JPEG with a JPEG's
    end marker. A stream cut between packets cannot be told from a whole one."""
    stream = _transport_stream(tmp_path / "rec.ts", noise(12))
    data = stream.read_bytes()
    assert container_facts(stream) == Container("ts", True) and len(times(stream)) == 12
    whole_packets = stream.with_name("packets.ts")
    whole_packets.write_bytes(data[: len(data) // 2 // 188 * 188])
    assert container_facts(whole_packets).whole and times(whole_packets)  # no error
    inside = stream.with_name("inside.ts")
    inside.write_bytes(data[: len(data) // 2 // 188 * 188 + 77])
    garbage = stream.with_name("garbage.ts")
    garbage.write_bytes(data[: 20 * 188] + bytes(range(256)) * 40)
    for cut in (inside, garbage):
        with pytest.raises(DamagedVideoError, match="ends inside a packet of its stream"):
            times(cut)
    jpeg = _motion_jpeg(tmp_path / "cam.mjpeg", noise(6))
    assert container_facts(jpeg) == Container("mjpeg", True) and len(times(jpeg)) == 6
    with pytest.raises(DamagedVideoError, match="ends inside a JPEG frame"):
        times(_cut(jpeg, 0.6))


def test_a_ts_file_that_is_no_transport_stream_named_by_its_path_says_so(tmp_path, checkpoint):
    script = tmp_path / "app.ts"
    script.write_text("export const answer: number = 42;\n" * 40)
    (tmp_path / "empty.ts").write_bytes(b"")
    table = load(checkpoint).predict([script, tmp_path / "empty.ts"], cropped=True)
    assert table.error.tolist() == [
        f"unreadable: {script} is not an MPEG transport stream, the only .ts files read as videos "
        "(its first bytes are not a stream's packets; TypeScript files are named .ts too)",
        f"empty video: video file {tmp_path / 'empty.ts'} is empty (0 bytes)",
    ]


def test_the_summary_counts_one_video_frame_as_one(tmp_path, checkpoint):
    clip = _motion_jpeg(tmp_path / "still.mjpeg", noise(1))
    report = predict_files(load(checkpoint), [str(clip)], tmp_path / "p.csv", cropped=True,
                           progress=False)  # fmt: skip
    assert "from 0 images and 1 video (1 video frame read): 1 row in" in report.summary()


def test_a_matroska_file_whose_audio_runs_on_is_whole_and_its_cut_copy_damaged(tmp_path):
    """An audio track longer than the video makes the container's duration, and OpenCV's frame
    count (that duration times the rate), longer than the video: the file is whole all the same."""
    path = write_mkv(tmp_path / "clip.mkv", noise(30), fps=10.0)
    data = bytearray(path.read_bytes())
    duration = data.index(b"\x44\x89\x88") + 3  # Info's Duration: an 8-byte float, in ms
    assert struct.unpack(">d", data[duration : duration + 8]) == (3000.0,)
    data[duration : duration + 8] = struct.pack(">d", 4000.0)  # as a 4 s audio track makes it
    path.write_bytes(bytes(data))
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) == 40
    assert len(times(path)) == 30  # no DamagedVideoError
    with pytest.raises(DamagedVideoError, match=r"of the 4.00 s its header declares \(truncated"):
        times(_cut(path))


def test_a_shortfall_is_damage_only_where_the_file_says_so():
    """Decoding that stops at 3 s against what the container states (10 fps)."""
    other, whole, cut = Container(), Container("matroska", True), Container("matroska", False)
    assert _shortfall(other, 3.0, 40, 10.0) == ""  # 1 s short of an estimated 4 s: no clear margin
    assert "of the 6.00 s its header declares" in _shortfall(other, 3.0, 60, 10.0)
    assert _shortfall(whole, 3.0, 60, 10.0) == ""  # an audio track running on
    assert "(truncated file)" in _shortfall(cut, 3.0, 40, 10.0)
    assert "ends short of the size its header declares" in _shortfall(cut, 3.0, 0, 10.0)
    video = Container("iso", True, video_s=3.15)  # the video track's own duration
    assert _shortfall(video, 3.0, 90, 10.0) == ""  # within two frames, however many are counted
    assert "of the 3.50 s" in _shortfall(Container("iso", True, video_s=3.5), 3.0, 35, 10.0)
    assert "of the 3.50 s" in _shortfall(Container("avi", True), 3.0, 35, 10.0)


def test_a_file_with_no_video_track_says_so(tmp_path, checkpoint):
    path = write_mp4(tmp_path / "clip.mp4", greys(3), fps=10.0)
    data = path.read_bytes()
    handler = data.index(b"vide", data.index(b"hdlr"))
    sound = tmp_path / "voice.m4a.mp4"  # a sound recording named as a video
    sound.write_bytes(data[:handler] + b"soun" + data[handler + 4 :])
    (error,) = load(checkpoint, detector=lambda image: []).predict(sound)["error"]
    assert error == (
        f"empty video: video {sound} holds no video track, only audio (a sound recording, or a "
        "video whose picture was removed): there is no frame to predict on"
    )


def test_a_video_copy_that_cannot_be_made_says_why_without_blaming_codecs(tmp_path):
    writer = VideoWriter(tmp_path / ("v" * 254), 10.0)  # + .mp4: 258 bytes, a name too long
    with pytest.raises(OSError, match="too long"):
        writer.write(Image.new("RGB", (16, 16)))


def test_a_video_and_an_annotate_folder_named_in_latin_1_are_read_and_written(tmp_path, checkpoint):
    # OpenCV crashes the process on a str holding such a name: the child's crash fails the test
    video = Path(os.fsdecode(os.fsencode(tmp_path) + b"/v\xe9.mp4"))
    write_mp4(tmp_path / "v.mp4", greys(3), fps=10.0).rename(video)
    gif = tmp_path / "anim.gif"
    greys(3)[0].save(gif, save_all=True, append_images=greys(3)[1:], duration=100)
    folder, out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/an\xe9")), tmp_path / "p.csv"
    child = (
        "import sys\n"
        "from lionfer.inference.predict_job import predict_files\n"
        "from lionfer.inference.predictor import load\n"
        "model, video, gif, out, folder = sys.argv[1:]\n"
        "predictor = load(model, detector=lambda image: [])\n"
        "predict_files(predictor, [video, gif], out, annotate=folder, progress=False)\n"
    )
    args = [checkpoint, video, gif, out, folder]
    done = subprocess.run([sys.executable, "-c", child, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    named = [(row["source"].rpartition("/")[2], row["frame"], row["error"]) for row in rows]
    assert named == [
        *[("v\\xe9.mp4", str(frame), "no face found") for frame in range(3)],  # read whole
        *[("anim.gif", str(frame), "no face found") for frame in range(3)],
    ]
    copies = sorted(path.name for path in folder.iterdir())
    assert copies == ["anim.gif.mp4", os.fsdecode(b"v\xe9.mp4.mp4")]
    assert times(folder / copies[1]) == [0.0, 0.1, 0.2]  # the video's annotated copy


def test_a_video_whose_relative_name_holds_a_colon_is_read_and_annotated(
    tmp_path, checkpoint, monkeypatch
):
    """FFmpeg reads a name with a colon before its first slash as a protocol (12:30:00.mp4, a
    camera's cam:1/ folder): named relative to the working folder, such a video is read whole,
    and its annotated copy is written into a folder named so too."""
    monkeypatch.chdir(tmp_path)
    Path("cam:1").mkdir()
    for clip in (Path("12:30:00.mp4"), Path("cam:1") / "a.mp4"):
        write_clip(tmp_path / clip, greys(4), fps=10.0, codec="mp4v")
        assert [which_grey(np.asarray(im)) for _, _, im in frames(clip)] == [0, 1, 2, 3]
    predictor = load(checkpoint, detector=lambda image: [])
    report = predict_files(
        predictor, [Path("cam:1")], Path("p.csv"), annotate=Path("ann:1"), progress=False
    )
    assert report.counts["unreadable"] == 0, report.counts
    (copy,) = Path("ann:1").glob("*.mp4")
    assert OPENCV_CAPTURE(str(copy.resolve())).get(cv2.CAP_PROP_FRAME_COUNT) == 4
