"""The image and video files practitioners have, through predict: float TIFFs, JPEGs over PIL's
pixel limit, phone and camcorder video containers, linked folders and broken links."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from predict_helpers import faces, scene, write_clip, write_mp4

from lionfer.data.faces import Face
from lionfer.data.images import ImageError, open_image, open_photo
from lionfer.inference.annotated_copies import BOX_COLOUR
from lionfer.inference.predict_job import predict_files
from lionfer.inference.predictor import InputError, collect_sources, load
from lionfer.inference.sources import ignored_kinds
from lionfer.inference.video import clip_fps, image_frames, is_animated_image, is_video_file


def test_a_float_tiff_in_0_to_1_is_read_as_its_grey_levels(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F").save(path)
    np.testing.assert_array_equal(np.asarray(open_image(path))[0, :, 0], [0, 128, 255])
    Image.fromarray(np.array([[0.0, 128.0, 255.0]], dtype=np.float32), mode="F").save(path)
    np.testing.assert_array_equal(np.asarray(open_image(path))[0, :, 0], [0, 128, 255])


def _jpeg(path: Path, size=(120, 80)) -> Path:
    image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    image[:, : size[0] // 2] = (200, 40, 40)  # a red left half, to follow through the scaling
    Image.fromarray(image).save(path, quality=95)
    return path


def test_a_jpeg_over_pils_pixel_limit_is_decoded_at_reduced_scale(tmp_path, monkeypatch):
    path = _jpeg(tmp_path / "phone.jpg")  # 120×80 = 9,600 px
    png = tmp_path / "phone.png"
    Image.open(path).save(png)
    plain, scale = open_photo(path)
    assert scale == 1 and plain.tobytes() == open_image(path).tobytes()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # PIL would refuse: more than twice
    with pytest.raises(ImageError, match="too large to decode safely.*downscale it"):
        open_image(path)
    image, scale = open_photo(path)  # 1/2 would be 2,400 px: 1/4 is the largest that fits
    assert (scale, image.size) == (4, (30, 20))
    assert tuple(np.asarray(image)[10, 5]) == pytest.approx((200, 40, 40), abs=12)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # over it, under twice it: PIL warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_photo(path)[0].size == (60, 40)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with pytest.raises(ImageError, match="too large"):  # other formats: PIL's limit stands
        open_photo(png)


def test_outside_the_main_thread_a_photos_warning_is_shown_once(tmp_path):
    """named_warnings folds a file's repeated warning only in the main thread: elsewhere the
    photo must be opened once (open_photo opened a JPEG for its size, then again to read it)."""
    path = tmp_path / "corrupt_exif.jpg"
    bad_exif = b"Exif\x00\x00II*\x00" + (0x7FFFFFF0).to_bytes(4, "little") + bytes(8)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path, exif=bad_exif)
    sizes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = threading.Thread(target=lambda: sizes.append(open_photo(path)[0].size))
        reader.start()
        reader.join()
    assert sizes == [(8, 8)]
    assert [str(w.message).split(".")[0] for w in caught] == ["Corrupt EXIF data"]


def test_boxes_of_a_reduced_jpeg_are_in_the_files_pixels(tmp_path, checkpoint, monkeypatch):
    path = _jpeg(tmp_path / "phone.jpg")
    seen = []

    def one_face(image):
        seen.append(image.size)
        return [Face((4.0, 2.0, 10.0, 12.0), 0.9, None, "stub")]

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    predictor = load(checkpoint, detector=one_face)
    row = predictor.predict(path).iloc[0]
    assert seen == [(30, 20)] and pd.isna(row.error)
    assert (row.x, row.y, row.w, row.h) == (16.0, 8.0, 40.0, 48.0)
    cropped = predictor.predict(path, cropped=True).iloc[0]
    assert (cropped.x, cropped.y, cropped.w, cropped.h) == (0.0, 0.0, 120.0, 80.0)
    predict_files(
        predictor, [str(path)], tmp_path / "p.csv", annotate=tmp_path / "ann", progress=False
    )
    drawn = np.asarray(Image.open(tmp_path / "ann" / "phone.jpg"))
    assert drawn.shape[:2] == (20, 30)  # the image as decoded, its box where the face was found
    assert np.abs(drawn[8, 4].astype(int) - BOX_COLOUR).max() < 60


def test_phone_and_camcorder_video_containers_are_videos(tmp_path, checkpoint):
    assert all(is_video_file(f"clip{s}") for s in (".3gp", ".3G2", ".mts", ".M2TS", ".vob"))
    path = tmp_path / "phone.3gp"
    frame = scene(faces()[:1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, frame.size)
    assert writer.isOpened()
    for _ in range(3):
        writer.write(np.ascontiguousarray(np.asarray(frame)[:, :, ::-1]))
    writer.release()
    table = load(checkpoint).predict([tmp_path], cropped=True)
    assert table.frame.tolist() == [0, 1, 2] and table.time_s.tolist() == [0.0, 0.1, 0.2]
    assert table.error.isna().all()


def test_the_video_kinds_opencv_reads_are_videos_by_path_and_in_folders(tmp_path, checkpoint):
    """A camcorder's .mxf or .dv, a CCTV recorder's raw .h264, an old .divx, ... given by its path
    is read as a video, not called a corrupt image; a folder's files of other kinds are named by
    extension where they are counted."""
    kinds = ".mxf .dv .divx .y4m .f4v .qt .h264 .264 .h265 .265 .HEVC .mjpeg .MJPG".split()
    assert all(is_video_file(f"rec{suffix}") for suffix in kinds)
    folder = tmp_path / "recordings"
    folder.mkdir()
    shown = [scene(faces()[:1])] * 3
    write_clip(tmp_path / "old.avi", shown).rename(folder / "old.divx")  # an AVI
    write_mp4(tmp_path / "cam.mp4", shown).rename(folder / "cam.qt")  # QuickTime's name
    (folder / "app.ts").write_text("export const x: number = 1;\n" * 20)  # TypeScript
    (folder / "notes.txt").write_text("not a video")
    writer = cv2.VideoWriter(str(folder / "dvb.ts"), cv2.VideoWriter_fourcc(*"MPEG"), 10.0,
                             shown[0].size)  # fmt: skip
    for frame in shown:  # an MPEG transport stream, as recorders and OBS write them
        writer.write(np.ascontiguousarray(np.asarray(frame)[:, :, ::-1]))
    writer.release()
    assert is_video_file(folder / "dvb.ts") and not is_video_file(folder / "app.ts")
    blu_ray = (bytes(4) + b"\x47" + bytes(187)) * 3  # each packet after a 4-byte time stamp
    (tmp_path / "bd.ts").write_bytes(blu_ray)
    (tmp_path / "cut.ts").write_bytes((folder / "dvb.ts").read_bytes()[100:])  # cut anywhere
    (tmp_path / "one.ts").write_bytes(b"\x47" + bytes(800))  # a first sync byte is not enough
    assert all(is_video_file(tmp_path / name) for name in ("bd.ts", "cut.ts"))
    assert not is_video_file(tmp_path / "one.ts")
    motion = b""  # an IP camera's motion JPEG stream: JPEG after JPEG
    for frame in shown:
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG")
        motion += buffer.getvalue()
    (folder / "ipcam.mjpeg").write_bytes(motion)
    predictor = load(checkpoint, detector=lambda image: [])
    clips = ["old.divx", "cam.qt", "dvb.ts", "ipcam.mjpeg"]
    table = predictor.predict([folder / name for name in clips])
    assert table.frame.tolist() == [0, 1, 2] * 4
    assert (table.error == "no face found").all()  # read, frame by frame
    summary = predict_files(predictor, [folder], tmp_path / "p.csv", progress=False).summary()
    assert "0 images and 4 videos" in summary
    assert (
        "ignored 2 files in folders or globs, neither images nor videos (.ts 1, .txt 1)" in summary
    )
    many = Counter({".a": 1, ".b": 3, "": 2, ".c": 1, ".d": 1, ".e": 1, ".f": 1})
    assert ignored_kinds(many) == ".b 3, no extension 2, .a 1, .c 1, .d 1, 2 more kinds"
    # a name ending in a space ("photo.jpg ") is no .jpg: its extension is shown quoted
    assert ignored_kinds(Counter({".jpg ": 1, ".txt": 1})) == "'.jpg ' 1, .txt 1"


def test_a_linked_folder_inside_an_input_folder_is_searched_and_a_loop_ends(tmp_path):
    photos, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    photos.mkdir()
    elsewhere.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    Image.new("RGB", (8, 8)).save(elsewhere / "b.png")
    (photos / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "back").symlink_to(photos, target_is_directory=True)  # a loop
    sources, ignored, _ = collect_sources([photos])
    assert [s.name for s in sources] == [str(photos / "a.png"), str(photos / "linked" / "b.png")]
    assert not ignored


def test_a_broken_link_is_a_row_naming_its_missing_target(tmp_path, checkpoint):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(faces()[0]).save(folder / "a.png")
    (folder / "gone.jpg").symlink_to(tmp_path / "moved.jpg")
    (folder / "gone.mp4").symlink_to(tmp_path / "moved.mp4")
    table = load(checkpoint).predict(folder, cropped=True)
    errors = dict(zip(table.source, table.error, strict=True))
    assert pd.isna(errors[str(folder / "a.png")])
    for suffix in (".jpg", ".mp4"):
        link, target = folder / f"gone{suffix}", tmp_path / f"moved{suffix}"
        assert errors[str(link)] == (
            f"unreadable: {link} is a symbolic link to {target}, which does not exist; fix the "
            "link or remove it"
        )
    with pytest.raises(InputError, match="gone.jpg is a symbolic link to .*moved.jpg.*fix the"):
        collect_sources([folder / "gone.jpg"])
    assert os.path.lexists(folder / "gone.jpg")
    globbed = load(checkpoint).predict(str(folder / "*.jpg"), cropped=True)  # a glob keeps it
    assert globbed.source.tolist() == [str(folder / "gone.jpg")]
    assert globbed.error[0].startswith(f"unreadable: {folder / 'gone.jpg'} is a symbolic link")
    (folder / "loop_a.jpg").symlink_to("loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to("loop_a.jpg")
    (folder / "chain.jpg").symlink_to("gone.jpg")
    table = load(checkpoint).predict(folder, cropped=True)
    errors = dict(zip(table.source, table.error, strict=True))
    assert errors[str(folder / "loop_a.jpg")] == (
        f"unreadable: {folder / 'loop_a.jpg'} is a symbolic link in a loop (loop_a.jpg -> "
        "loop_b.jpg -> loop_a.jpg), to no file; fix the link or remove it"
    )
    assert errors[str(folder / "chain.jpg")] == (
        f"unreadable: {folder / 'chain.jpg'} is a symbolic link to gone.jpg -> "
        f"{tmp_path / 'moved.jpg'}, which does not exist; fix the link or remove it"
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_a_row_never_opened_and_an_error_by_its_name(tmp_path, checkpoint):
    """Opening a named pipe to read waits for a writer: a pipe (or a link to one) named as a
    photo or video must be reported, not read, or the job would wait for ever."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(faces()[0]).save(folder / "a.png")
    for name in ("pipe.jpg", "pipe.gif", "pipe.mp4", "pipe.ts", "pipe.txt"):
        os.mkfifo(folder / name)
    (folder / "link.png").symlink_to("pipe.jpg")
    fired, done = [], threading.Event()

    def release():  # after 30 s, a writer at each pipe, each second, ends a read waiting on it
        while not done.wait(30 if not fired else 1):
            fired.append(True)
            for name in ("pipe.jpg", "pipe.gif", "pipe.mp4", "pipe.ts"):
                with contextlib.suppress(OSError):
                    os.close(os.open(folder / name, os.O_WRONLY | os.O_NONBLOCK))

    alarm = threading.Thread(target=release, daemon=True)
    alarm.start()  # should a reader open a pipe after all, the test fails instead of hanging
    try:
        sources, ignored, _ = collect_sources([folder])
        assert [Path(s.name).name for s in sources] == [
            "a.png",
            "link.png",
            "pipe.gif",
            "pipe.jpg",
            "pipe.mp4",
            "pipe.ts",  # a .ts that cannot be looked into: a video, whose reader says why
        ] and ignored == Counter({".txt": 1})  # a pipe without a media name is counted, not lost
        table = load(checkpoint).predict(folder, cropped=True)
    finally:
        done.set()
    assert not fired, "a named pipe was opened"
    errors = dict(zip(table.source.map(lambda s: Path(s).name), table.error, strict=True))
    assert pd.isna(errors["a.png"])
    assert errors["pipe.jpg"] == (
        f"unreadable: {folder / 'pipe.jpg'} is a named pipe (FIFO), not a regular file: give "
        "image files"
    )
    assert errors["pipe.mp4"].endswith(
        "is a named pipe (FIFO), not a regular file: give video files"
    )
    assert "pipe.gif is a named pipe" in errors["pipe.gif"]
    assert errors["pipe.ts"].endswith("named pipe (FIFO), not a regular file: give video files")
    assert "link.png is a named pipe (FIFO) through a symbolic link" in errors["link.png"]
    with pytest.raises(InputError, match=r"pipe.jpg is a named pipe \(FIFO\), not a regular file"):
        collect_sources([folder / "pipe.jpg"])
    with pytest.raises(InputError, match="null is a device, not a regular file"):
        collect_sources(["/dev/null"])


def test_prepare_crops_a_jpeg_over_pils_pixel_limit_at_its_listed_box(tmp_path, monkeypatch):
    from lionfer.data.base import ImageSet
    from lionfer.data.prepare import _crops

    path = _jpeg(tmp_path / "phone.jpg", size=(400, 240))  # red left half
    images = ImageSet(images=[str(path)], labels=[0], boxes=[(40, 40, 160, 160)])  # in the red
    whole = _crops(images, 0, 32, "haar", "largest", 8)[0][0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # 96,000 px: read at 1/4
    reduced = _crops(images, 0, 32, "haar", "largest", 8)[0][0]
    assert whole.size == reduced.size == (32, 32)
    difference = np.abs(np.asarray(whole, float) - np.asarray(reduced, float)).mean()
    assert difference < 10 and tuple(np.asarray(reduced)[16, 16]) == pytest.approx(
        (200, 40, 40), abs=12
    )


def test_a_cameras_raw_photos_are_named_with_what_to_do(tmp_path, checkpoint):
    folder = tmp_path / "shoot"
    folder.mkdir()
    _jpeg(folder / "IMG_0002.jpg")  # a camera saving RAW + JPEG: the JPEG is read
    (folder / "IMG_0002.CR2").write_bytes(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(64))
    (folder / "DSC_0003.NEF").write_bytes(b"MM\x00*" + bytes(64))
    Image.new("RGB", (40, 30), (90, 60, 30)).save(folder / "IMG_0004.dng", format="TIFF")
    (folder / "notes.txt").write_text("not a photo")
    sources, ignored, raw = collect_sources([folder])
    assert [s.path.name for s in sources] == ["IMG_0002.jpg"]
    assert (ignored, raw) == ({".cr2": 1, ".nef": 1, ".dng": 1, ".txt": 1}, 3)
    predictor = load(checkpoint, detector=lambda image: [])
    report = predict_files(predictor, [str(folder)], tmp_path / "p.csv", progress=False)
    assert (
        "ignored 4 files in folders or globs, neither images nor videos (.cr2 1, .dng 1, .nef 1, "
        ".txt 1), 3 of them camera RAW photos "
        "(.cr2, .nef, .arw, .dng, ...), which lionfer does not read: export them as JPEG or PNG"
        in report.summary()
    )
    # given by its path, a RAW photo gets a row that says so, even one PIL could open (a DNG's
    # TIFF preview is no photo to judge a face by)
    table = predictor.predict([folder / "DSC_0003.NEF", folder / "IMG_0004.dng"])
    assert all("a camera RAW photo, which lionfer does not decode" in e for e in table.error)
    with pytest.raises(ImageError, match="camera RAW photo"):
        open_image(folder / "IMG_0004.dng")
    only_raw = tmp_path / "raw_only"
    only_raw.mkdir()
    (only_raw / "a.ARW").write_bytes(b"II*\x00")
    with pytest.raises(
        InputError, match=r"1 other file \(.arw 1\), 1 of them a camera RAW photo .*: export it as"
    ):
        collect_sources([only_raw])


def test_an_animated_images_frame_rate_counts_its_last_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(3)]
    uneven = tmp_path / "uneven.gif"
    frames[0].save(uneven, save_all=True, append_images=frames[1:], duration=[100, 200, 300])
    assert clip_fps(uneven) == pytest.approx(3 / 0.6)  # 3 frames in 0.6 s
    even = tmp_path / "even.gif"
    frames[0].save(even, save_all=True, append_images=frames[1:], duration=250)
    assert clip_fps(even) == pytest.approx(4.0)
    pages = tmp_path / "pages.tif"  # pages have no duration
    frames[0].save(pages, save_all=True, append_images=frames[1:])
    assert clip_fps(pages) is None


def test_an_animated_webps_frame_rate_is_its_own(tmp_path):
    """Pillow's WebP reader gives a frame's duration once the frame is decoded."""
    frames = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(3)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=200)
    assert clip_fps(path) == pytest.approx(5.0)


def test_pils_warnings_on_an_animated_image_name_the_file(tmp_path, monkeypatch):
    frames = [Image.new("RGB", (12, 12), (40 * i, 0, 0)) for i in range(2)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 144 px: a warning, not yet an error
    with pytest.warns(Image.DecompressionBombWarning) as caught:
        assert is_animated_image(path)
        assert len(list(image_frames(path))) == 2
    assert caught and all(str(w.message).startswith(f"{path}: Image size") for w in caught)
