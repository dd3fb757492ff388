"""The frame reader's promises about shared memory: read-only mappings and remapping on replacement."""

from __future__ import annotations

import numpy as np
import pytest

from ai_model_container.contract.client import inference_request
from ai_model_container.contract.frame_reader import FrameReader
from ai_model_container.contract.schema import ErrorCode, FrameMetadata
from ai_model_container.contract.shm_layout import segment_reference

from .helpers import luma_for, write_flat_frame


def test_frame_view_cannot_be_written_through(make_writer, camera_id):
    writer = make_writer(camera_id, 64, 48)
    frame_id = write_flat_frame(writer)
    attempts = []

    def try_to_write(view):
        nv12 = view.nv12
        assert not nv12.flags.writeable and not view.y.flags.writeable and not view.uv.flags.writeable
        with pytest.raises(ValueError):
            nv12[0, 0] = 0
        with pytest.raises(ValueError):
            nv12.setflags(write=True)  # numpy refuses: the memory underneath is read-only
        with pytest.raises(TypeError):
            memoryview(nv12.base)[0] = 0  # the mapping itself (mmap with PROT_READ)
        attempts.append(int(nv12[0, 0]))
        return view.to_bgr()

    reader = FrameReader()
    bgr = reader.read(segment_reference(camera_id), FrameMetadata(frame_id=frame_id, width=64, height=48), try_to_write)
    assert attempts == [luma_for(frame_id)]
    assert bgr.shape == (48, 64, 3) and bgr.flags.writeable, "the converted copy belongs to the caller"
    assert np.all(writer.slot_pixels(frame_id)[:48] == luma_for(frame_id)), "the ring is untouched"


def test_reader_remaps_a_segment_replaced_with_a_new_resolution(shared_daemon, make_writer, camera_id):
    old = make_writer(camera_id, 64, 48)
    first = write_flat_frame(old)
    with shared_daemon.client() as client:
        response = client.infer(inference_request(shared_daemon.model_id, camera_id, first, 64, 48))
        assert response.error_code is None and (response.metadata["width"], response.metadata["height"]) == (64, 48)
        old.close()
        new = make_writer(camera_id, 128, 96, slot_count=3)  # VAS restarts the camera at another resolution
        frame_id = write_flat_frame(new, salt=5)
        response = client.infer(inference_request(shared_daemon.model_id, camera_id, frame_id, 128, 96))
        assert response.error_code is None, response.error
        assert (response.metadata["width"], response.metadata["height"]) == (128, 96)
        assert response.detections[0].bbox == (0.0, 0.0, 128.0, 96.0)
        assert response.detections[0].attributes["mean_luma"] == luma_for(frame_id, salt=5)
        stale = client.infer(inference_request(shared_daemon.model_id, camera_id, frame_id, 64, 48))
        assert stale.error_code is ErrorCode.FRAME_INVALID and "128x96" in stale.error


def test_reader_keeps_one_mapping_per_camera(make_writer, camera_id):
    writers = [make_writer(f"{camera_id}_{k}", 64, 48) for k in range(3)]
    reader = FrameReader(max_cameras=2)
    for writer in writers:
        frame_id = write_flat_frame(writer)
        mean = reader.read(segment_reference(writer.camera_id), FrameMetadata(frame_id=frame_id, width=64, height=48),
                           lambda view: float(view.y.mean()))
        assert mean == luma_for(frame_id)
    assert reader.cached_cameras == [writers[1].camera_id, writers[2].camera_id], "least recently used goes first"
    assert reader.newest_frame(writers[0].camera_id).frame_id == 1
