"""Frame sources, the newest-frame grabber, and the virtual camera."""
from __future__ import annotations

import threading
import time
from typing import Iterator

import cv2
import numpy as np
import pytest

from drivers import qrdecode
from drivers.camera import (CameraError, EndOfStream, FrameGrabber, FrameSource, ImageFileSource,
                            V4L2Source, VideoFileSource, open_source)
from sim import camera as simcam
from sim.camera import LEVELS, VirtualCamera, sample_text
from waiting import wait_for


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.name.startswith("grabber")]
    assert not leaked, f"grabber threads left running: {leaked}"


def number(frame) -> int:
    return int(frame.image[0])


class CountingSource(FrameSource):
    """Numbered frames 1, 2, 3 ...; free-running, or one per permit when ``gated``."""

    name = "counting"

    def __init__(self, gated: bool = False, limit: int | None = None):
        self.gated = gated
        self.limit = limit
        self.produced = 0
        self.permits = threading.Semaphore(0)
        self.waiting = threading.Event()     # blocked in read(), everything before published
        self.closed = threading.Event()

    def open(self) -> None:
        self.closed.clear()

    def read(self) -> np.ndarray:
        if self.limit is not None and self.produced >= self.limit:
            raise EndOfStream("counting: done")
        if self.gated:
            self.waiting.set()
            while not self.permits.acquire(timeout=0.01):
                if self.closed.is_set():
                    raise CameraError("closed")
            self.waiting.clear()
        self.produced += 1
        return np.array([self.produced])

    def close(self) -> None:
        self.closed.set()

    def release(self, n: int) -> None:
        """Let ``n`` frames through and wait until the grabber published them all."""
        target = self.produced + n
        self.waiting.clear()
        for _ in range(n):
            self.permits.release()
        wait_for(lambda: self.produced == target and self.waiting.is_set())


def stop_gated(grabber: FrameGrabber, src: CountingSource) -> None:
    src.closed.set()          # unblocks read(); the grabber sees a failure and exits on stop
    grabber.stop()


def test_consumer_gets_the_newest_frame_and_the_rest_are_dropped() -> None:
    src = CountingSource(gated=True)
    grabber = FrameGrabber(src, backoff_min=0.001, backoff_max=0.01).start()
    try:
        assert grabber.latest() is None
        last = 0
        for burst in (1, 5, 3, 20, 1):
            src.release(burst)
            frame = grabber.latest(after=last)
            assert frame is not None
            assert frame.counter == src.produced == number(frame)   # the newest one, not the next
            last = frame.counter
            assert grabber.latest(after=last) is None               # nothing newer yet
            assert grabber.wait_newer(after=last, timeout=0.02) is None
    finally:
        stop_gated(grabber, src)


def test_consumer_never_goes_back_in_time_against_a_fast_source() -> None:
    src = CountingSource(limit=20000)
    seen = []
    with FrameGrabber(src) as grabber:
        last = 0
        while not grabber.ended or grabber.latest(after=last) is not None:
            frame = grabber.wait_newer(after=last, timeout=0.5)
            if frame is None:
                continue
            assert frame.counter > last and number(frame) == frame.counter
            seen.append(frame.counter)
            last = frame.counter
            time.sleep(0.0005)       # a consumer slower than the source
        assert grabber.error == "counting: done"
    assert seen[-1] == 20000                       # the last produced frame is the one left
    assert seen == sorted(set(seen))


def test_timestamps_are_monotonic_capture_times() -> None:
    src = CountingSource(gated=True)
    grabber = FrameGrabber(src).start()
    try:
        t0 = time.monotonic()
        src.release(1)
        a = grabber.latest()
        src.release(1)
        b = grabber.latest()
        assert a is not None and b is not None
        assert t0 <= a.ts <= b.ts <= time.monotonic()
    finally:
        stop_gated(grabber, src)


class FlakySource(FrameSource):
    """Fails to open twice, gives 3 frames, is 'unplugged', comes back, hits a driver bug, comes
    back again. It waits at ``gates`` (open call 3, read 5) so the test can see each error."""

    name = "flaky"

    def __init__(self) -> None:
        self.open_calls = 0
        self.reads = 0
        self.closes = 0
        self.is_open = False
        self.gates = {("open", 3): threading.Event(), ("read", 5): threading.Event()}

    def _gate(self, key: tuple[str, int]) -> None:
        if key in self.gates:
            self.gates[key].wait(5)

    def open(self) -> None:
        self.open_calls += 1
        self._gate(("open", self.open_calls))
        if self.open_calls <= 2:
            raise CameraError("flaky: cannot open")
        self.is_open = True

    def read(self) -> np.ndarray:
        assert self.is_open, "read on a closed source"
        self.reads += 1
        self._gate(("read", self.reads))
        if self.reads == 4:
            raise CameraError("flaky: no frame (unplugged)")
        if self.reads == 6:
            raise RuntimeError("driver bug")          # not a CameraError: handled the same
        time.sleep(0.001)
        return np.array([self.reads])

    def close(self) -> None:
        self.closes += 1
        self.is_open = False


def test_failure_is_reported_and_the_camera_reopened() -> None:
    src = FlakySource()
    with FrameGrabber(src, backoff_min=0.001, backoff_max=0.005) as grabber:
        wait_for(lambda: src.open_calls == 3)           # two failed opens, waiting in the third
        assert grabber.error == "flaky: cannot open" and grabber.latest() is None
        src.gates[("open", 3)].set()
        wait_for(lambda: src.reads == 5)                # frames 1-3, the unplug, reopened
        assert grabber.error == "flaky: no frame (unplugged)"
        assert grabber.latest().counter == 3 and src.open_calls == 4 and src.closes == 1
        src.gates[("read", 5)].set()
        wait_for(lambda: grabber.latest().counter >= 6)
        assert grabber.error is None                      # frames flow again
        assert grabber.failures == 4                      # two opens, the unplug, the driver bug
        assert grabber.opens == 3
        # The counter keeps counting across reopens; no frame for the failed reads 4 and 6.
        frame = grabber.latest()
        assert number(frame) == frame.counter + 2
    assert src.closes == grabber.opens                    # every successful open was closed


def test_missing_device_is_reported_not_raised() -> None:
    src = open_source("/dev/video-does-not-exist")
    assert isinstance(src, V4L2Source)
    with pytest.raises(CameraError, match="no such device"):
        src.open()
    with FrameGrabber(src, backoff_min=0.001, backoff_max=0.005) as grabber:
        wait_for(lambda: grabber.failures >= 3)
        assert "no such device" in (grabber.error or "")
        assert grabber.latest() is None


def test_stall_is_reported() -> None:
    src = CountingSource(gated=True)
    grabber = FrameGrabber(src, stall_after=0.05).start()
    try:
        src.release(1)
        wait_for(lambda: grabber.error is not None)
        assert "no frame for" in grabber.error
    finally:
        stop_gated(grabber, src)


def write_pngs(tmp_path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        p = str(tmp_path / f"f{i}.png")
        cv2.imwrite(p, np.full((24, 32, 3), 40 * i + 10, np.uint8))
        paths.append(p)
    return paths


def test_image_files_play_once_then_end(tmp_path) -> None:
    paths = write_pngs(tmp_path, 3)
    src = ImageFileSource(paths, fps=0, loop=False)
    src.open()
    assert [int(src.read()[0, 0, 0]) for _ in range(3)] == [10, 50, 90]
    with pytest.raises(EndOfStream):
        src.read()
    with FrameGrabber(ImageFileSource(paths, fps=0, loop=False)) as grabber:
        wait_for(lambda: grabber.ended)
        assert int(grabber.latest().image[0, 0, 0]) == 90
        assert "all images played" in grabber.error


def test_image_files_loop_and_a_bad_file_is_a_camera_error(tmp_path) -> None:
    paths = write_pngs(tmp_path, 2)
    src = ImageFileSource(paths, fps=0)
    src.open()
    assert [int(src.read()[0, 0, 0]) for _ in range(4)] == [10, 50, 10, 50]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    src = ImageFileSource([str(bad)], fps=0)
    src.open()
    with pytest.raises(CameraError, match="not a readable image"):
        src.read()
    with pytest.raises(CameraError, match="no such file"):
        ImageFileSource([str(tmp_path / "gone.png")]).open()


def test_video_file_plays_and_loops(tmp_path) -> None:
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 50 * i + 20, np.uint8))
    writer.release()
    once = VideoFileSource(path, fps=0, loop=False)
    once.open()
    levels = [int(once.read().mean()) for _ in range(4)]
    assert levels == sorted(levels) and levels[0] < 40 < 150 < levels[-1]
    with pytest.raises(EndOfStream):
        once.read()
    once.close()
    looping = VideoFileSource(path, fps=0)
    looping.open()
    assert [abs(int(looping.read().mean()) - levels[i % 4]) <= 3 for i in range(6)] == [True] * 6
    looping.close()
    (tmp_path / "junk.avi").write_bytes(b"\x00" * 64)
    with pytest.raises(CameraError):
        VideoFileSource(str(tmp_path / "junk.avi")).open()


def test_open_source_picks_the_backend(tmp_path) -> None:
    paths = write_pngs(tmp_path, 2)
    assert isinstance(open_source("0"), V4L2Source) and open_source(2).device == 2
    assert isinstance(open_source(str(tmp_path / "*.png")), ImageFileSource)
    assert open_source(",".join(paths)).paths == paths
    assert isinstance(open_source(str(tmp_path / "clip.mp4")), VideoFileSource)
    with pytest.raises(CameraError, match="no files match"):
        open_source(str(tmp_path / "*.jpg"))
    with pytest.raises(CameraError):
        open_source(f"{paths[0]},{tmp_path / 'clip.mp4'},{tmp_path / 'b.mp4'}")


# --- the virtual camera ---------------------------------------------------------------------

TEXTS = [sample_text(np.random.default_rng(i)) for i in range(2)]


def test_virtual_camera_is_deterministic() -> None:
    a = VirtualCamera(TEXTS, seed=5, show_frames=3, gap_frames=2, realtime=False)
    b = VirtualCamera(TEXTS, seed=5, show_frames=3, gap_frames=2, realtime=False)
    c = VirtualCamera(TEXTS, seed=6, show_frames=3, gap_frames=2, realtime=False)
    a.open()
    frames = [a.read() for _ in range(10)]
    for i in (7, 0, 3, 9):                       # random access gives the same pictures
        assert np.array_equal(b.frame(i), frames[i])
    assert frames[0].shape == (480, 640, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(c.frame(3), frames[3])
    assert not np.array_equal(frames[2], frames[3])   # the phone moves and the sensor is noisy


def test_virtual_camera_presentations() -> None:
    cam = VirtualCamera(TEXTS, conditions=LEVELS["clean"], seed=1, show_frames=4, gap_frames=3,
                        realtime=False, loop=False)
    expected = [None] * 3 + [TEXTS[0]] * 4 + [None] * 3 + [TEXTS[1]] * 4
    assert [cam.text_at(i) for i in range(14)] == expected
    cam.open()
    got = []
    with pytest.raises(EndOfStream):
        while True:
            texts = qrdecode.decode(cam.read()).texts
            got.append(texts[0] if texts else None)
    assert got == expected


def test_virtual_camera_shakes_between_frames() -> None:
    cam = VirtualCamera(TEXTS, conditions=LEVELS["moderate"], seed=2, show_frames=10, gap_frames=0,
                        realtime=False)
    cam.frame(0)
    pres = cam._cache[1]
    poses = [pres.pose(i) for i in range(10)]
    assert len({(p.cx, p.cy) for p in poses}) == 10
    # Hand shake, not teleporting: neighbouring frames are a few pixels apart.
    steps = [np.hypot(b.cx - a.cx, b.cy - a.cy) for a, b in zip(poses, poses[1:])]
    assert max(steps) < 5 * LEVELS["moderate"].shake_px + 5


def test_virtual_camera_makes_up_texts_when_none_given() -> None:
    cam = VirtualCamera(seed=3, show_frames=2, gap_frames=1, realtime=False)
    t1, t2 = cam.text_at(1), cam.text_at(4)
    assert t1 and t2 and t1 != t2 and t1.startswith("SDHC1:")
    assert cam.text_at(1) == t1


def test_virtual_camera_through_the_grabber() -> None:
    cam = VirtualCamera(TEXTS, conditions=LEVELS["clean"], seed=4, show_frames=2, gap_frames=1,
                        realtime=False, loop=False)
    with FrameGrabber(cam) as grabber:
        wait_for(lambda: grabber.ended)
        last = grabber.latest()
    assert last.counter == 6
    assert qrdecode.decode(last.image).texts == [TEXTS[1]]


def test_sim_source_spec() -> None:
    cam = simcam.open_source("sim:seed=9,level=hard,show=5,gap=2")
    assert isinstance(cam, VirtualCamera)
    assert (cam.seed, cam.cond, cam.show_frames, cam.gap_frames) == (9, LEVELS["hard"], 5, 2)
    assert isinstance(simcam.open_source("sim"), VirtualCamera)
    assert isinstance(simcam.open_source("/dev/video0"), V4L2Source)
    for bad in ("sim:level=extreme", "sim:speed=3", "sim:seed", "sim:show=0"):
        with pytest.raises(CameraError):
            simcam.open_source(bad)
