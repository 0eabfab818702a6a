"""`lionfer predict` end to end: the predictions file, skip report, resume, refusal, annotation."""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from predict_helpers import blank, faces, make_checkpoint, scene, write_clip

from lionfer.cli import main
from lionfer.data.faces import Face
from lionfer.inference import predict_job
from lionfer.inference import predictions_file as predictions
from lionfer.inference import predictor as P
from lionfer.inference.predict_job import predict_files
from lionfer.inference.predictor import InputError, columns, load
from lionfer.labels import CLASS_NAMES


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder as users have them: two group photos, a face-less image, a corrupt file, a
    non-image, and a 6-frame clip whose frames 0 and 3 show no face."""
    root = tmp_path_factory.mktemp("photos")
    scene(faces()).save(root / "a_group.png")
    scene(faces((5, 6))).save(root / "b_group.jpg")
    blank().save(root / "c_wall.png")
    (root / "d_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "notes.txt").write_text("not an image")
    frames = [blank((320, 160)) if i % 3 == 0 else scene(faces()) for i in range(6)]
    write_clip(root / "e_clip.avi", frames, fps=5.0)
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_predict_over_a_folder_finishes_with_a_skip_report(capsys, tmp_path, checkpoint, photos):
    out = tmp_path / "preds.csv"
    code, stdout, err = run(capsys, "predict", checkpoint, photos, "--out", out, "--detector",
                            "haar", "--no-progress")  # fmt: skip
    assert code == 0, err
    rows = read_rows(out)
    assert list(rows[0]) == columns(CLASS_NAMES)
    by_source = {}
    for row in rows:
        by_source.setdefault(Path(row["source"]).name, []).append(row)
    assert [r["face"] for r in by_source["a_group.png"]] == ["0", "1"]
    assert by_source["c_wall.png"][0]["error"] == "no face found"
    assert by_source["d_broken.jpg"][0]["error"].startswith("unreadable:")
    assert (
        by_source["d_broken.jpg"][0]["label"] == "" and by_source["d_broken.jpg"][0]["p_fear"] == ""
    )
    clip = by_source["e_clip.avi"]
    assert [r["frame"] for r in clip] == ["0", "1", "1", "2", "2", "3", "4", "4", "5", "5"]
    assert [r["time_s"] for r in clip][:2] == ["0.0", "0.2"]
    for row in rows:
        if not row["error"]:
            probs = [float(row[f"p_{n.lower()}"]) for n in CLASS_NAMES]
            assert row["label"] == CLASS_NAMES[int(np.argmax(probs))]
            assert abs(sum(probs) - 1) < 1e-4
    assert "12 faces from 4 images and 1 video (6 video frames read)" in stdout
    assert "skipped inputs: no face found 1, unreadable 1" in stdout
    assert "video frames without a face: 2" in stdout
    assert "ignored 1 file in folders or globs, neither images nor videos (.txt 1)" in stdout


def test_times_are_written_to_the_microsecond_and_other_numbers_to_6_digits(tmp_path):
    """6 significant digits gave a time stamp 0.1 s steps from 10,000 s (2 h 47 min) on: three
    consecutive frames of a 29.97 fps video shared one."""
    names = ["source", "frame", "time_s", "face", "x", "score", "label", "p_a", "error"]
    times = [10790.0 + k * 1001 / 30000 for k in range(4)]  # frames 323,376 to 323,379
    rows = [
        {"source": "cctv.mp4", "frame": 323376 + k, "time_s": t, "face": 0, "x": 1234.56789,
         "score": 0.99999912, "label": "a", "p_a": 0.123456789, "error": None}
        for k, t in enumerate(times)
    ]  # fmt: skip
    for fmt in ("csv", "jsonl"):
        path = tmp_path / f"p.{fmt}"
        file = predictions.PredictionsFile(path, fmt, names, {}, overwrite=True)
        file.write(rows)
        file.close()
        if fmt == "csv":
            written = read_rows(path)
        else:
            written = [json.loads(line) for line in path.read_text().splitlines()]
        assert [float(r["time_s"]) for r in written] == [round(t, 6) for t in times]
        assert len({r["time_s"] for r in written}) == 4
        others = [str(written[0][k]) for k in ("x", "score", "p_a")]
        assert others == ["1234.57", "0.999999", "0.123457"]  # as they always were


def test_jsonl_rows_have_the_same_columns_and_null_for_skips(tmp_path, checkpoint, photos):
    out = tmp_path / "preds.jsonl"
    predictor = load(checkpoint, detector="haar")
    predict_files(predictor, [str(photos / "a_group.png"), str(photos / "c_wall.png")], out,
                  progress=False)  # fmt: skip
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [list(r) for r in records] == [columns(CLASS_NAMES)] * 3
    assert records[2]["label"] is None and records[2]["p_fear"] is None
    assert records[2]["error"] == "no face found" and records[0]["error"] is None


def test_an_interrupted_job_resumes_where_it_stopped(tmp_path, checkpoint, photos, monkeypatch):
    predictor = load(checkpoint, detector="haar", batch_size=2)
    inputs = [str(photos / name) for name in ("a_group.png", "c_wall.png", "e_clip.avi")]
    whole = tmp_path / "whole.csv"
    predict_files(predictor, inputs, whole, progress=False)

    out = tmp_path / "preds.csv"
    real_frames, seen = P.Predictor._frames, []

    def counted(self, source, *args):
        seen.append(Path(source.name).name)
        yield from real_frames(self, source, *args)

    def interrupted(self, source, *args):
        for i, frame in enumerate(counted(self, source, *args)):
            if source.name.endswith("e_clip.avi") and i == 2:
                raise KeyboardInterrupt  # halfway through the video
            yield frame

    monkeypatch.setattr(P.Predictor, "_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, inputs, out, progress=False)
    assert len(read_rows(out)) >= 3  # the finished images' rows were flushed
    monkeypatch.setattr(P.Predictor, "_frames", counted)
    seen.clear()
    report = predict_files(predictor, inputs, out, progress=False)
    assert seen == ["e_clip.avi"]  # only the unfinished input again
    assert report.counts["resumed"] == 2
    assert out.read_text() == whole.read_text()


UNPATCHED_FRAMES = P.Predictor._frames


def _stopped_after(frames: int, clip: str, monkeypatch, starts: list[int]):
    """Predictor._frames that raises KeyboardInterrupt after `frames` frames of `clip`, and
    records the first frame each input is asked to start from in `starts`."""
    real_frames = UNPATCHED_FRAMES

    def stopping(self, source, cropped, stride, keep, start=0):
        starts.append(start)
        for i, frame in enumerate(real_frames(self, source, cropped, stride, keep, start)):
            if frames is not None and source.name.endswith(clip) and i == frames:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(P.Predictor, "_frames", stopping)


@pytest.mark.parametrize("clip, stride", [("e_clip.avi", 1), ("e_clip.avi", 2), ("f.gif", 1)])
def test_a_job_stopped_halfway_through_a_clip_goes_on_from_its_last_mark(
    tmp_path, checkpoint, photos, monkeypatch, clip, stride
):
    """A long video cut off is not read again from its start: the job marks how far its rows
    go (every CHECKPOINT_S seconds; here after every frame) and goes on from the frame after
    the last mark, to the same file and report as a job never stopped."""
    frames = [blank((320, 160)) if i % 3 == 0 else scene(faces()) for i in range(6)]
    frames[0].save(tmp_path / "f.gif", save_all=True, append_images=frames[1:], duration=200)
    source = tmp_path / clip if clip == "f.gif" else photos / clip
    predictor = load(checkpoint, detector="haar", batch_size=2)
    inputs = [str(photos / "a_group.png"), str(source), str(photos / "c_wall.png")]
    whole = tmp_path / "whole.csv"
    expected = predict_files(predictor, inputs, whole, progress=False, frame_stride=stride)

    monkeypatch.setattr(predict_job, "CHECKPOINT_S", 0.0)
    out, starts = tmp_path / "preds.csv", []
    _stopped_after(2, clip, monkeypatch, starts)
    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, inputs, out, progress=False, frame_stride=stride)
    _stopped_after(None, clip, monkeypatch, starts)
    starts.clear()
    report = predict_files(predictor, inputs, out, progress=False, frame_stride=stride)
    # the clip's first two frames were written (a batch) and marked: it goes on from the next
    assert starts == [2 * stride, 0]  # then the last input, from its start
    assert out.read_text() == whole.read_text()
    assert report.went_on == (str(source), starts[0])
    assert report.counts - Counter(resumed=1) == expected.counts
    assert report.skipped == expected.skipped
    assert f"went on with {source} from frame {starts[0]}" in report.summary()


def test_an_annotating_job_reads_a_clip_cut_off_again_from_its_start(
    tmp_path, checkpoint, photos, monkeypatch
):
    """An annotated video is written whole, so with --annotate a clip cut off is read again from
    its start (its marks and rows go), and the job marks none: a later job without --annotate
    cannot go on from a mark whose rows were dropped."""
    clip = photos / "e_clip.avi"
    predictor = load(checkpoint, detector="haar", batch_size=2)
    inputs = [str(photos / "a_group.png"), str(clip)]
    whole = tmp_path / "whole.csv"
    predict_files(predictor, inputs, whole, progress=False)
    monkeypatch.setattr(predict_job, "CHECKPOINT_S", 0.0)
    out, folder, starts = tmp_path / "preds.csv", tmp_path / "boxes", []
    _stopped_after(2, "e_clip.avi", monkeypatch, starts)
    with pytest.raises(KeyboardInterrupt):  # marks after frames 1: no --annotate
        predict_files(predictor, inputs, out, progress=False)
    starts.clear()
    _stopped_after(4, "e_clip.avi", monkeypatch, starts)
    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, inputs, out, annotate=folder, progress=False)
    assert starts == [0]  # from its start
    progress = (tmp_path / "preds.csv.progress").read_text().splitlines()
    assert not any('"partial"' in line for line in progress)
    starts.clear()
    _stopped_after(None, "e_clip.avi", monkeypatch, starts)
    report = predict_files(predictor, inputs, out, annotate=folder, progress=False)
    assert starts == [0] and report.went_on is None
    assert out.read_text() == whole.read_text()
    video = cv2.VideoCapture(str(report.annotated[0]))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 6  # the annotated copy is whole
    video.release()


def test_marks_fall_at_the_end_of_a_batch(tmp_path, checkpoint, monkeypatch):
    """A job going on from a mark batches the frames after it as an uninterrupted job did (the
    probabilities of a face depend, in their last digits, on the faces beside it in a batch):
    with batches of 4 faceless frames, every mark is after a fourth frame."""
    clip = write_clip(tmp_path / "wall.avi", [blank((64, 48))] * 11)
    monkeypatch.setattr(predict_job, "CHECKPOINT_S", 0.0)
    out = tmp_path / "p.csv"
    predict_files(load(checkpoint, detector="haar", batch_size=4), [str(clip)], out,
                  progress=False)  # fmt: skip
    marks = [json.loads(line) for line in (tmp_path / "p.csv.progress").read_text().splitlines()]
    assert [m["next_frame"] for m in marks if "partial" in m] == [4, 8, 11]


def test_a_job_stopped_while_cutting_back_its_files_resumes_without_a_gap(
    tmp_path, checkpoint, photos, monkeypatch
):
    """Stopped after --out was cut back to its last finished input but before its progress file
    lost the marks after it, a job must not go on from a mark whose rows are gone (the file
    would be padded with zero bytes up to the mark's offset)."""
    predictor = load(checkpoint, detector="haar", batch_size=2)
    inputs = [str(photos / "a_group.png"), str(photos / "e_clip.avi")]
    whole = tmp_path / "whole.csv"
    predict_files(predictor, inputs, whole, progress=False)
    monkeypatch.setattr(predict_job, "CHECKPOINT_S", 0.0)
    out = tmp_path / "preds.csv"
    _stopped_after(4, "e_clip.avi", monkeypatch, [])
    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, inputs, out, progress=False)
    lines = (tmp_path / "preds.csv.progress").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert "partial" in records[-1] and "source" in records[1]
    with out.open("r+b") as f:  # where the resume with --annotate was stopped
        f.truncate(records[1]["offset"])
    starts = []
    _stopped_after(None, "e_clip.avi", monkeypatch, starts)
    predict_files(predictor, inputs, out, progress=False)
    assert starts == [0] and out.read_bytes() == whole.read_bytes()


def test_a_json_lines_job_stopped_before_its_first_row_resumes_over_its_own_copies(
    tmp_path, checkpoint, photos
):
    """Killed before any row was flushed, a JSON lines job leaves an empty --out (no header)
    beside its progress file, and an annotated copy or two: the same command goes on, as a job
    whose copies are its own, instead of refusing them as another job's."""
    predictor = load(checkpoint, detector="haar")
    inputs = [str(photos / "a_group.png"), str(photos / "c_wall.png")]
    out, folder = tmp_path / "p.jsonl", tmp_path / "boxes"
    predict_files(predictor, inputs, out, annotate=folder, progress=False)
    whole = out.read_bytes()
    progress = tmp_path / "p.jsonl.progress"
    progress.write_text(progress.read_text().splitlines(keepends=True)[0])  # as a kill leaves it
    out.write_bytes(b"")
    report = predict_files(predictor, inputs, out, annotate=folder, progress=False)
    assert out.read_bytes() == whole and report.counts["images"] == 2


def test_an_annotated_video_is_named_as_the_copy_only_once_whole(
    tmp_path, checkpoint, photos, monkeypatch
):
    """A video's copy is written as NAME.partial.mp4 and renamed once whole, before its input
    counts as done: a job stopped halfway never leaves a cut copy under the copy's name."""
    predictor = load(checkpoint, detector="haar", batch_size=2)
    inputs = [str(photos / "a_group.png"), str(photos / "e_clip.avi")]
    out, folder = tmp_path / "p.csv", tmp_path / "boxes"
    _stopped_after(4, "e_clip.avi", monkeypatch, [])
    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, inputs, out, annotate=folder, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["a_group.png", "e_clip.avi.partial.mp4"]
    real_finished = predictions.PredictionsFile.finished

    def stopped_when_recorded(self, source, *args):
        if source.endswith("e_clip.avi"):
            raise KeyboardInterrupt  # the job stops as the video's input is recorded as done
        return real_finished(self, source, *args)

    _stopped_after(None, "e_clip.avi", monkeypatch, [])
    monkeypatch.setattr(predictions.PredictionsFile, "finished", stopped_when_recorded)
    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, inputs, out, annotate=folder, progress=False)
    video = cv2.VideoCapture(str(folder / "e_clip.avi.mp4"))  # already whole, and named
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 6
    video.release()


def test_a_resumed_job_with_annotate_counts_the_copies_earlier_runs_did_not_make(
    tmp_path, checkpoint, photos, monkeypatch
):
    predictor = load(checkpoint, detector="haar", batch_size=2)
    inputs = [str(photos / "a_group.png"), str(photos / "e_clip.avi")]
    out = tmp_path / "p.csv"
    _stopped_after(2, "e_clip.avi", monkeypatch, [])
    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, inputs, out, progress=False)  # no --annotate
    _stopped_after(None, "e_clip.avi", monkeypatch, [])
    report = predict_files(predictor, inputs, out, annotate=tmp_path / "boxes", progress=False)
    assert (
        "no annotated copy of 1 input finished by an earlier run without --annotate; pass "
        "--overwrite to predict everything again with copies"
    ) in report.summary()


def test_a_clip_changed_after_its_last_mark_is_refused(tmp_path, checkpoint, photos, monkeypatch):
    clip = tmp_path / "clip.avi"
    shutil.copy(photos / "e_clip.avi", clip)
    predictor = load(checkpoint, detector="haar", batch_size=2)
    monkeypatch.setattr(predict_job, "CHECKPOINT_S", 0.0)
    _stopped_after(2, "clip.avi", monkeypatch, [])
    out = tmp_path / "preds.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, [str(clip)], out, progress=False)
    written = out.read_bytes()
    os.utime(clip, ns=(10**9, 10**9))
    with pytest.raises(InputError, match=r"1 input changed since.*clip.avi;.*--overwrite"):
        predict_files(predictor, [str(clip)], out, progress=False)
    assert out.read_bytes() == written


def test_rows_of_an_input_cut_off_halfway_are_dropped_on_resume(tmp_path, checkpoint, photos):
    predictor = load(checkpoint, detector="haar")
    out = tmp_path / "preds.csv"
    predict_files(predictor, [str(photos / "a_group.png")], out, progress=False)
    finished = out.read_text()
    with out.open("a") as f:
        f.write(
            f"{photos / 'b_group.jpg'},0,,0,1,2,3,4,5,Fear"
        )  # a torn row of an unfinished input
    predict_files(predictor, [str(photos / "a_group.png")], out, progress=False)
    assert out.read_text() == finished


def test_a_progress_line_torn_by_a_kill_is_dropped_not_joined_to_the_next(
    tmp_path, checkpoint, photos
):
    """A job killed while writing a progress line leaves half a line; a resume drops it, so the
    next finished input's line is a line of its own and a third run finds every input done."""
    predictor = load(checkpoint, detector="haar")
    inputs = [str(photos / "a_group.png"), str(photos / "c_wall.png")]
    out, progress = tmp_path / "preds.csv", tmp_path / "preds.csv.progress"
    predict_files(predictor, inputs, out, progress=False)
    whole = out.read_text()
    lines = progress.read_text().splitlines(keepends=True)
    progress.write_text("".join(lines[:2]) + lines[2][:25])  # c_wall.png's line, torn
    assert predict_files(predictor, inputs, out, progress=False).counts["resumed"] == 1
    assert predict_files(predictor, inputs, out, progress=False).counts["resumed"] == 2
    assert out.read_text() == whole


def test_a_users_file_is_never_overwritten_silently(capsys, tmp_path, checkpoint, photos):
    out = tmp_path / "results.csv"
    out.write_text("name,score\nalice,3\n")
    code, _, err = run(capsys, "predict", checkpoint, photos / "a_group.png", "--out", out,
                       "--no-progress")  # fmt: skip
    assert code == 2 and "is not a lionfer predictions file" in err and "--overwrite" in err
    assert out.read_text() == "name,score\nalice,3\n"
    code, _, err = run(capsys, "predict", checkpoint, photos / "a_group.png", "--out", out,
                       "--detector", "haar", "--overwrite", "--no-progress")  # fmt: skip
    assert code == 0 and read_rows(out)[0]["source"].endswith("a_group.png")


def test_detection_options_with_cropped_inputs_are_refused(capsys, tmp_path, checkpoint, photos):
    out = tmp_path / "faces.csv"
    for options, named in (
        (["--detector", "haar"], "--detector set how"),
        (["--face-size", "96"], "--face-size set how"),
        (["--detector", "mtcnn", "--face-size", "64"], "--detector and --face-size set how"),
    ):
        code, _, err = run(capsys, "predict", checkpoint, photos / "a_group.png", "--out", out,
                           "--cropped", *options, "--no-progress")  # fmt: skip
        assert code == 2 and named in err and "--cropped takes each input as a face" in err
        assert not out.exists()
    code, _, _ = run(capsys, "predict", checkpoint, photos / "a_group.png", "--out", out,
                     "--cropped", "--no-progress")  # fmt: skip
    assert code == 0 and len(read_rows(out)) == 1  # the whole picture, one face


def test_faces_too_small_to_carry_detail_are_counted_in_the_report(capsys, tmp_path, checkpoint):
    crops = tmp_path / "crops"
    crops.mkdir()
    for name, size in (("dot", (1, 1)), ("sliver", (40, 15)), ("edge", (16, 16)), ("ok", (64, 48))):
        Image.new("RGB", size, (120, 90, 80)).save(crops / f"{name}.png")
    out = tmp_path / "faces.csv"
    code, stdout, err = run(capsys, "predict", checkpoint, crops, "--out", out, "--cropped",
                            "--no-progress")  # fmt: skip
    assert code == 0, err
    assert len(read_rows(out)) == 4  # predicted all the same
    assert "2 faces smaller than 16 px on a side (their rows' w and h)" in stdout
    # the same job run again counts what its earlier run read
    code, stdout, err = run(capsys, "predict", checkpoint, crops, "--out", out, "--cropped",
                            "--no-progress")  # fmt: skip
    assert code == 0 and "already complete from an earlier run: 4 inputs" in stdout, err
    assert "2 faces smaller than 16 px" in stdout
    for name in ("dot", "sliver"):
        (crops / f"{name}.png").unlink()
    code, stdout, _ = run(capsys, "predict", checkpoint, crops, "--out", out, "--cropped",
                          "--overwrite", "--no-progress")  # fmt: skip
    assert code == 0 and "smaller than" not in stdout


def test_small_faces_a_detector_finds_are_counted_by_their_boxes(tmp_path, checkpoint, photos):
    def mine(image):  # one face under 16 px on a side, one at 16
        return [Face((5, 5, 40, 12), 0.9, None, "mine"), Face((60, 20, 16, 16), 0.8, None, "mine")]

    report = predict_files(load(checkpoint, detector=mine), [str(photos / "a_group.png")],
                           tmp_path / "faces.csv", progress=False)  # fmt: skip
    assert report.counts["faces"] == 2 and report.counts["small_faces"] == 1
    assert "1 face smaller than 16 px on a side" in report.summary()


def test_a_users_progress_named_file_is_never_overwritten(tmp_path, checkpoint, photos):
    predictor = load(checkpoint, detector="haar")
    out = tmp_path / "faces.csv"
    mine = tmp_path / "faces.csv.progress"
    mine.write_text("my notes on the progress of the shoot\n")
    with pytest.raises(InputError, match="faces.csv.progress.*is not lionfer's.*--overwrite"):
        predict_files(predictor, [str(photos / "a_group.png")], out, progress=False)
    assert mine.read_text() == "my notes on the progress of the shoot\n" and not out.exists()
    out.write_text("")  # an empty --out is started again, its progress file checked the same
    with pytest.raises(InputError, match="is not lionfer's"):
        predict_files(predictor, [str(photos / "a_group.png")], out, progress=False)
    mine.unlink()
    predict_files(predictor, [str(photos / "a_group.png")], out, progress=False)
    out.unlink()  # a progress file left by lionfer is replaced
    predict_files(predictor, [str(photos / "a_group.png")], out, progress=False)


def test_resuming_with_other_settings_or_without_progress_is_refused(tmp_path, checkpoint, photos):
    predictor = load(checkpoint, detector="haar")
    out = tmp_path / "preds.csv"
    predict_files(predictor, [str(photos / "a_group.png")], out, progress=False)
    with pytest.raises(InputError, match="other settings.*frame_stride"):
        predict_files(predictor, [str(photos)], out, frame_stride=2, progress=False)
    other = load(make_checkpoint(tmp_path / "other.pt", seed=5), detector="haar")
    with pytest.raises(InputError, match="other settings.*model"):
        predict_files(other, [str(photos)], out, progress=False)
    Path(f"{out}.progress").unlink()
    with pytest.raises(InputError, match="preds.csv.progress.*is missing"):
        predict_files(predictor, [str(photos)], out, progress=False)


def test_resuming_after_an_input_changed_is_refused(tmp_path, checkpoint, photos):
    """A photo replaced under its name since it was predicted: resuming would keep the rows of
    the old one."""
    predictor = load(checkpoint, detector="haar")
    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in ("a_group.png", "c_wall.png"):
        (folder / name).write_bytes((photos / name).read_bytes())
    out = tmp_path / "preds.csv"
    predict_files(predictor, [str(folder)], out, progress=False)
    report = predict_files(predictor, [str(folder)], out, progress=False)  # unchanged: resumed
    assert "already complete from an earlier run: 2 inputs" in report.summary()
    written = out.read_bytes()
    (folder / "c_wall.png").write_bytes((photos / "b_group.jpg").read_bytes())
    with pytest.raises(InputError, match=r"1 input changed since.*c_wall.png;.*--overwrite"):
        predict_files(predictor, [str(folder)], out, progress=False)
    assert out.read_bytes() == written
    os.utime(folder / "c_wall.png", ns=(0, 0))  # the same bytes at another time: refused too
    (folder / "c_wall.png").write_bytes((photos / "c_wall.png").read_bytes())
    os.utime(folder / "c_wall.png", ns=(10**9, 10**9))
    with pytest.raises(InputError, match="changed since"):
        predict_files(predictor, [str(folder)], out, progress=False)
    report = predict_files(predictor, [str(folder)], out, overwrite=True, progress=False)
    assert report.counts["resumed"] == 0 and report.counts["images"] == 2


def test_another_jobs_progress_file_is_no_out_even_with_overwrite(tmp_path, checkpoint, photos):
    predictor = load(checkpoint, detector="haar")
    out = tmp_path / "preds.csv"
    predict_files(predictor, [str(photos / "a_group.png")], out, progress=False)
    progress = Path(f"{out}.progress")
    kept = progress.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(
            InputError, match="is the progress file of the predictions in preds.csv"
        ):
            predict_files(predictor, [str(photos / "a_group.png")], progress, fmt="csv",
                          overwrite=overwrite, progress=False)  # fmt: skip
    assert progress.read_bytes() == kept
    report = predict_files(predictor, [str(photos / "a_group.png")], out, progress=False)
    assert report.summary().endswith(
        "already complete from an earlier run: 1 input (counted above)"
    )


def test_annotate_writes_images_and_a_video(tmp_path, checkpoint, photos):
    predictor = load(checkpoint, detector="haar")
    folder = tmp_path / "annotated"
    inputs = [str(photos / "a_group.png"), str(photos / "d_broken.jpg"), str(photos / "e_clip.avi")]
    predict_files(predictor, inputs, tmp_path / "p.csv", frame_stride=2, annotate=folder,
                  progress=False)  # fmt: skip
    image = folder / "a_group.png"  # below the inputs' common folder, not the absolute path
    drawn = np.asarray(cv2.imread(str(image)))[:, :, ::-1]
    original = np.asarray(scene(faces()))
    assert drawn.shape == original.shape and (drawn != original).any()  # boxes were drawn
    assert not list(folder.rglob("d_broken*"))  # an unreadable input has nothing to draw
    (video,) = folder.rglob("e_clip.avi.*")
    assert video.parent == folder
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3  # frames 0, 2, 4
    capture.release()
    with pytest.raises(InputError, match="every input is inside the --annotate folder"):
        predict_files(predictor, [str(photos / "a_group.png")], tmp_path / "q.csv",
                      annotate=photos.anchor, progress=False)  # fmt: skip


def test_an_animated_image_is_counted_and_annotated_as_a_clip(tmp_path, checkpoint):
    predictor = load(checkpoint, detector="haar")
    shown = [scene(faces()) if i % 2 else blank((320, 160)) for i in range(5)]
    clip = tmp_path / "clip.gif"
    shown[0].save(clip, save_all=True, append_images=shown[1:], duration=200)  # 5 fps
    folder = tmp_path / "annotated"
    report = predict_files(predictor, [str(clip)], tmp_path / "p.csv", frame_stride=2,
                           annotate=folder, progress=False)  # fmt: skip
    assert report.counts["videos"] == 1 and report.counts["images"] == 0
    assert [r["frame"] for r in read_rows(tmp_path / "p.csv")] == ["0", "2", "4"]  # blank frames
    (video,) = folder.rglob("clip.gif.*")
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5 / 2)  # its frame rate, over stride
    capture.release()


def test_an_annotate_folder_that_is_a_file_is_refused_before_any_output(
    capsys, tmp_path, checkpoint, photos
):
    (tmp_path / "annotated").write_text("a file of mine")
    out = tmp_path / "p.csv"
    code, _, err = run(capsys, "predict", checkpoint, photos / "a_group.png", "--out", out,
                       "--annotate", tmp_path / "annotated", "--no-progress")  # fmt: skip
    assert code == 2 and "--annotate" in err and "is a file; give a folder" in err
    assert not out.exists() and (tmp_path / "annotated").read_text() == "a file of mine"


def test_annotated_copies_already_in_the_folder_are_never_replaced_unasked(
    capsys, tmp_path, checkpoint, photos
):
    """A new job refuses to write over an image or a video already in the --annotate folder,
    before any output; --overwrite replaces them, and a job resumed keeps writing its own."""
    folder = tmp_path / "annotated"
    folder.mkdir()
    (folder / "a_group.png").write_text("a file of mine")
    inputs = [photos / "a_group.png", photos / "e_clip.avi"]
    out = tmp_path / "p.csv"
    code, _, err = run(capsys, "predict", checkpoint, *inputs, "--out", out, "--annotate", folder,
                       "--detector", "haar", "--no-progress")  # fmt: skip
    assert code == 2 and "already holds" in err and "a_group.png" in err and "--overwrite" in err
    assert not out.exists() and (folder / "a_group.png").read_text() == "a file of mine"
    (folder / "a_group.png").unlink()
    (folder / "e_clip.avi.mp4").write_text("an earlier job's video")
    code, _, err = run(capsys, "predict", checkpoint, *inputs, "--out", out, "--annotate", folder,
                       "--detector", "haar", "--no-progress")  # fmt: skip
    assert code == 2 and "e_clip.avi.mp4" in err and not out.exists()
    code, _, _ = run(capsys, "predict", checkpoint, *inputs, "--out", out, "--annotate", folder,
                     "--detector", "haar", "--no-progress", "--overwrite")  # fmt: skip
    assert code == 0 and (folder / "a_group.png").stat().st_size > 100
    # the same job again resumes (nothing left to do): its own copies are no obstacle
    code, _, _ = run(capsys, "predict", checkpoint, *inputs, "--out", out, "--annotate", folder,
                     "--detector", "haar", "--no-progress")  # fmt: skip
    assert code == 0


def test_a_symbolic_link_is_annotated_at_its_own_path(tmp_path, checkpoint, photos):
    """A link and its target, or a link to a file elsewhere, each keep their own copy where the
    input names them."""
    (tmp_path / "in").mkdir()
    scene(faces()).save(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "link.png").symlink_to(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "far.png").symlink_to(photos / "b_group.jpg")
    folder = tmp_path / "annotated"
    predict_files(load(checkpoint, detector="haar"), [str(tmp_path / "in")], tmp_path / "p.csv",
                  annotate=folder, progress=False)  # fmt: skip
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert written == ["a.png", "far.png", "link.png"]


def test_annotating_a_cut_animation_and_pages_of_other_sizes(tmp_path, checkpoint):
    """A truncated GIF is annotated up to its damage; a TIFF page of another size than the first
    is fitted into the video, not dropped."""
    predictor = load(checkpoint, detector=lambda image: [])
    noise = np.random.default_rng(0)
    shown = [Image.fromarray(noise.integers(0, 256, (60, 80, 3), dtype=np.uint8)) for _ in range(6)]
    shown[0].save(tmp_path / "whole.gif", save_all=True, append_images=shown[1:], duration=100)
    data = (tmp_path / "whole.gif").read_bytes()
    (tmp_path / "cut.gif").write_bytes(data[: len(data) // 2])
    pages = [shown[0], shown[1].resize((40, 30)), shown[2].resize((100, 20))]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    folder = tmp_path / "annotated"
    inputs = [str(tmp_path / "cut.gif"), str(tmp_path / "pages.tif")]
    report = predict_files(predictor, inputs, tmp_path / "p.csv", annotate=folder, progress=False)
    assert report.counts["damaged_videos"] == 1
    read = report.counts["frames"] - 3  # the GIF's frames before the damage
    for name, frames in (("cut.gif", read), ("pages.tif", 3)):
        (video,) = folder.glob(f"{name}.*")
        capture = cv2.VideoCapture(str(video))
        count = 0
        while capture.read()[0]:
            count += 1
        capture.release()
        assert 0 < count == frames


def test_annotated_output_inside_the_inputs_is_never_read_back(
    tmp_path, checkpoint, photos, capsys
):
    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("a_group.png", "b_group.jpg"):
        (shots / name).write_bytes((photos / name).read_bytes())
    folder = shots / "annotated"
    argv = ["predict", checkpoint, shots, "--out", tmp_path / "p.csv", "--annotate", folder,
            "--detector", "haar", "--no-progress"]  # fmt: skip
    code, first, err = run(capsys, *argv)
    assert code == 0, err
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [
        "a_group.png",
        "b_group.jpg",
    ]
    code, again, err = run(capsys, *argv)  # the annotated copies are in the input folder now
    assert code == 0, err
    assert "skipped 2 files inside the --annotate folder" in again
    assert "already complete from an earlier run: 2 inputs" in again
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "a_group.png",
        "b_group.jpg",
    ]  # no annotated/annotated/...
    assert {r["source"] for r in read_rows(tmp_path / "p.csv")} == {
        str(shots / "a_group.png"),
        str(shots / "b_group.jpg"),
    }


def test_annotated_paths_stay_apart_and_relative(tmp_path, checkpoint, monkeypatch):
    """../in/a.png and in/a.png are two files; each keeps its own annotated copy."""
    work = tmp_path / "work"
    (work / "in").mkdir(parents=True)
    (tmp_path / "in").mkdir()
    scene(faces()).save(tmp_path / "in" / "a.png")
    scene(faces((5, 6)), at=((60, 40), (200, 20))).save(work / "in" / "a.png")
    monkeypatch.chdir(work)
    predictor = load(checkpoint, detector="haar")
    folder = tmp_path / "annotated"
    inputs = ["../in/a.png", "in/a.png"]
    predict_files(predictor, inputs, tmp_path / "p.csv", annotate=folder, progress=False)
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert written == ["in/a.png", "work/in/a.png"]  # below their common folder, tmp_path
    first, second = (cv2.imread(str(folder / p)) for p in written)
    assert first.shape == second.shape and (first != second).any()  # neither overwrote the other


def test_another_list_of_inputs_on_an_existing_out_is_refused(capsys, tmp_path, checkpoint, photos):
    out = tmp_path / "p.csv"
    base = ["predict", checkpoint, "--out", out, "--detector", "haar", "--no-progress"]
    code, _, err = run(capsys, *base, photos / "a_group.png", photos / "c_wall.png")
    assert code == 0, err
    before = out.read_text()
    code, _, err = run(capsys, *base, photos / "b_group.jpg")
    assert code == 2 and "another list of inputs (2 inputs then, 1 now)" in err
    assert "--overwrite" in err and out.read_text() == before
    code, stdout, err = run(capsys, *base, photos / "b_group.jpg", "--overwrite")
    assert code == 0 and {r["source"] for r in read_rows(out)} == {str(photos / "b_group.jpg")}


def test_a_resumed_job_reports_the_whole_file(capsys, tmp_path, checkpoint, photos):
    argv = ["predict", checkpoint, photos / "a_group.png", photos / "c_wall.png",
            photos / "e_clip.avi", "--out", tmp_path / "p.csv", "--detector", "haar",
            "--no-progress"]  # fmt: skip
    code, first, err = run(capsys, *argv)
    assert code == 0, err
    code, again, err = run(capsys, *argv)  # nothing left to do
    assert code == 0, err
    rows = len(read_rows(tmp_path / "p.csv"))
    assert f"{rows} rows in" in first and f"{rows} rows in" in again
    assert first.splitlines()[:3] == again.splitlines()[:3]
    assert "already complete from an earlier run: 3 inputs" in again


def test_a_damaged_video_is_reported(capsys, tmp_path, checkpoint, photos):
    data = (photos / "e_clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    code, stdout, err = run(capsys, "predict", checkpoint, tmp_path / "cut.avi", "--out",
                            tmp_path / "p.csv", "--detector", "haar", "--no-progress")  # fmt: skip
    assert code == 0, err
    last = read_rows(tmp_path / "p.csv")[-1]
    assert last["error"].startswith("damaged video: decoding stopped at frame ")
    assert "damaged videos, read up to the damage (see their error rows): 1" in stdout


def test_no_progress_builds_no_progress_bar(tmp_path, checkpoint, photos, monkeypatch):
    def no_bar(*args, **kwargs):
        raise AssertionError("a progress bar was built with progress off")

    monkeypatch.setattr(predict_job, "tqdm", no_bar)
    predict_files(load(checkpoint, detector="haar"), [str(photos / "c_wall.png")],
                  tmp_path / "p.csv", progress=False)  # fmt: skip


def test_label_text_grows_with_the_image():
    from lionfer.inference.annotated_copies import BOX_COLOUR, draw_faces

    def label_height(size: int) -> int:
        """Rows of the caption's background above the box (the box starts at 30% of size)."""
        image = Image.new("RGB", (size, size), (0, 0, 0))
        top = int(size * 0.3)
        drawn = np.asarray(draw_faces(image, [((top, top, top, top), "Happiness 0.93")]))
        return int((drawn[:top] == BOX_COLOUR).all(axis=2).any(axis=1).sum())

    small, large = label_height(200), label_height(2000)
    assert small >= 10 and large >= 4 * small


def test_bad_arguments_exit_2_and_an_interrupt_exits_130(capsys, tmp_path, checkpoint, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "predict", checkpoint, empty, "--out", tmp_path / "p.csv")
    assert code == 2 and "holds no images or videos" in err
    code, _, err = run(capsys, "predict", tmp_path / "none.pt", empty, "--out", tmp_path / "p.csv")
    assert code == 2 and "model not found" in err
    code, _, err = run(capsys, "predict", checkpoint, empty, "--out", tmp_path / "p.txt")
    assert code == 2 and "--format csv|jsonl" in err
    code, _, err = run(capsys, "predict", checkpoint, empty, "--out", tmp_path / "p.csv",
                       "--format", "jsonl")  # fmt: skip
    assert code == 2 and "--format jsonl into p.csv, a csv file's name" in err
    code, _, err = run(capsys, "predict", checkpoint, empty, "--out", tmp_path)
    assert code == 2 and "is a folder" in err
    for option, value, least in (("--batch-size", 0, 1), ("--face-size", 4, 8),
                                 ("--frame-stride", 0, 1)):  # fmt: skip
        code, _, err = run(capsys, "predict", checkpoint, empty, "--out", tmp_path / "p.csv",
                           option, value)  # fmt: skip
        assert code == 2 and f"({option}, " in err and f"at least {least}, got {value}" in err

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_job, "collect_sources", interrupt)
    code, _, err = run(capsys, "predict", checkpoint, empty, "--out", tmp_path / "p.csv")
    assert code == 130 and "run the same command again to resume" in err


def test_an_empty_input_exits_2_and_reads_nothing(capsys, tmp_path, checkpoint, monkeypatch):
    # "" is Path("."): a script's empty variable predicted on everything below the current folder
    scene(faces()).save(tmp_path / "private.png")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "predict", checkpoint, "", "--out", tmp_path / "p.csv")
    assert code == 2 and "input '' is an empty path; give a file, folder or glob" in err, err
    assert not (tmp_path / "p.csv").exists()


def test_embeddings_come_with_each_face_row_and_stay_apart_on_resume(
    capsys, tmp_path, checkpoint, photos
):
    inputs = [photos / "a_group.png", photos / "c_wall.png"]
    out = tmp_path / "preds.csv"
    code, _, err = run(capsys, "predict", checkpoint, *inputs, "--out", out, "--embeddings",
                       "--detector", "haar", "--no-progress")  # fmt: skip
    assert code == 0, err
    rows = read_rows(out)
    names = [f"emb_{k}" for k in range(128)]
    assert list(rows[0]) == columns(CLASS_NAMES, 128)
    assert list(rows[0])[-130:] == ["p_neutral", *names, "error"]
    faces_found = [r for r in rows if not r["error"]]
    assert len(faces_found) == 2 and all(r[names[0]] == "" for r in rows if r["error"])
    vectors = np.array([[float(r[n]) for n in names] for r in faces_found])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # the embedding of each face is the one its crop gets alone
    predictor = load(checkpoint, detector="haar")
    image = Image.open(photos / "a_group.png").convert("RGB")
    alone = predictor.embeddings([P.align(image, f, predictor.face_size) for f in
                                  predictor.detect(image)])  # fmt: skip
    np.testing.assert_allclose(vectors, alone, atol=1e-5)
    frame = predictor.predict(photos / "a_group.png")
    assert "emb_0" not in frame.columns  # only when asked
    with_embeddings = load(checkpoint, detector="haar", embeddings=True).predict(inputs)
    np.testing.assert_allclose(with_embeddings[names].iloc[:2].to_numpy(), vectors, atol=1e-6)
    code, _, err = run(capsys, "predict", checkpoint, *inputs, "--out", out, "--detector", "haar",
                       "--no-progress")  # fmt: skip
    assert code == 2 and "embedding_dim differ" in err  # no rows of another width in one file
    older = tmp_path / "older.csv"  # a file written before embeddings: it resumes without them
    assert run(capsys, "predict", checkpoint, *inputs, "--out", older, "--no-progress")[0] == 0
    progress = Path(f"{older}.progress")
    lines = progress.read_text().splitlines()
    first = json.loads(lines[0])
    del first["settings"]["embedding_dim"]
    progress.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    before = older.read_text()
    assert run(capsys, "predict", checkpoint, *inputs, "--out", older, "--no-progress")[0] == 0
    assert older.read_text() == before


def test_predictions_never_replace_an_input_the_model_or_a_run_file(
    capsys, tmp_path, checkpoint, photos
):
    photo = shutil.copy(photos / "a_group.png", tmp_path / "a.png")
    model = shutil.copy(checkpoint, tmp_path / "model.pt")
    (tmp_path / "link.csv").symlink_to(photo)
    os.link(model, tmp_path / "hard.csv")
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"event": "start", "num_labeled": 3}\n')
    (run_dir / "checkpoints" / "best.pt").write_bytes(b"weights")
    refused = {
        photo: "is one of the inputs",
        tmp_path / "link.csv": "is one of the inputs",
        model: "is the model",
        tmp_path / "hard.csv": "is the model",
        run_dir / "metrics.jsonl": f"is a file of the run in {run_dir} (metrics.jsonl)",
        run_dir / "checkpoints" / "best.pt": f"is a file of the run in {run_dir} (checkpoints)",
    }
    kept = {out: Path(out).read_bytes() for out in refused}
    for out, named in refused.items():
        code, _, err = run(capsys, "predict", model, photo, "--out", out, "--format", "csv",
                           "--overwrite", "--no-progress", "--detector", "haar")  # fmt: skip
        assert code == 2 and named in err and "choose another --out" in err, err
    assert {out: Path(out).read_bytes() for out in refused} == kept
    assert not list(tmp_path.glob("*.progress")) and not list(run_dir.rglob("*.progress"))


def test_a_name_that_is_not_utf8_is_read_and_written_with_its_bytes_escaped(tmp_path, checkpoint):
    """A photo named in Latin-1 (an old zip, CD or Windows share): read, named in the CSV and
    JSONL as caf\\xe9.png (the files stay UTF-8), and the job resumes."""
    folder = tmp_path / "latin1"
    folder.mkdir()
    scene(faces()).save(folder / os.fsdecode(b"caf\xe9.png"))
    predictor = load(checkpoint, detector=lambda image: [])
    for name in ("p.csv", "p.jsonl"):
        out = tmp_path / name
        predict_files(predictor, [folder], out, progress=False)
        if name.endswith(".csv"):
            (row,) = read_rows(out)
        else:
            (row,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert row["source"] == f"{folder}/caf\\xe9.png" and "no face" in row["error"]
        again = predict_files(predictor, [folder], out, progress=False)
        assert again.counts["resumed"] == 1


def test_a_name_holding_a_carriage_return_stays_one_csv_field(tmp_path, checkpoint):
    """A file name may hold a carriage return (Linux allows any byte but / and NUL): its CSV
    field is quoted, so every reader sees one row with the name whole, and the job resumes."""
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["cr\rname.png", "both\r\nends.png", "comma,name.png"]
    for name in names:
        scene(faces()).save(folder / name, format="PNG")
    predictor = load(checkpoint, detector=lambda image: [])
    out = tmp_path / "p.csv"
    predict_files(predictor, [folder], out, progress=False)
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["source"] for row in rows) == sorted(f"{folder}/{name}" for name in names)
    assert all("no face" in row["error"] for row in rows)
    assert predict_files(predictor, [folder], out, progress=False).counts["resumed"] == 3


def test_an_annotated_copy_whose_name_is_too_long_is_refused_before_any_output(
    capsys, tmp_path, checkpoint
):
    """A 252-byte name is a file's, but its copy (+ .tmp while written, or a video's +
    .partial.mp4 while written) is longer than the file system's 255 bytes."""
    image = tmp_path / ("b" * 248 + ".png")
    scene(faces()).save(image)
    clip = write_clip(tmp_path / ("v" * 248 + ".avi"), [blank((64, 48))] * 2)
    out, folder = tmp_path / "p.csv", tmp_path / "annotated"
    for source, needs, most in ((image, 256, 251), (clip, 264, 243)):
        code, _, err = run(capsys, "predict", checkpoint, source, "--out", out, "--annotate",
                           folder, "--detector", "haar", "--no-progress")  # fmt: skip
        assert code == 2 and f"{needs} bytes" in err and f"at most {most} bytes" in err, err
        assert not out.exists()


def test_two_inputs_never_share_an_annotated_copy(tmp_path, checkpoint):
    """`shot` (a JPEG without a suffix, whose copy is written as PNG) and `shot.png`."""
    (tmp_path / "in").mkdir()
    scene(faces()).save(tmp_path / "in" / "shot", format="JPEG")
    blank().save(tmp_path / "in" / "shot.png")
    folder = tmp_path / "annotated"
    inputs = [tmp_path / "in" / "shot", tmp_path / "in" / "shot.png"]
    predict_files(load(checkpoint, detector=lambda image: []), inputs, tmp_path / "p.csv",
                  annotate=folder, progress=False)  # fmt: skip
    sizes = {Image.open(p).size for p in folder.iterdir()}
    assert sizes == {(320, 160), (160, 120)}


def test_standard_input_and_output_are_refused(capsys, tmp_path, checkpoint):
    scene(faces()).save(tmp_path / "a.png")
    code, _, err = run(capsys, "predict", checkpoint, "-", "--out", tmp_path / "p.csv")
    assert code == 2 and "standard input" in err
    code, _, err = run(capsys, "predict", checkpoint, tmp_path / "a.png", "--out", "-",
                       "--format", "csv")  # fmt: skip
    assert code == 2 and "standard output" in err and not Path("-").exists()
