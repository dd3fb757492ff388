"""FrameReader.newest_frame, the agents' poll: newest id and capture time under the slot's seqlock."""

import numpy as np
from testkit import unique_id

from ai_model_container.contract.frame_reader import FrameReader
from ai_model_container.contract.shm_layout import write_u64
from ruth_model_tools.frame_writer import FrameWriter


def test_newest_frame_reports_the_last_write_and_zero_while_its_slot_is_rewritten():
    writer = FrameWriter(unique_id("cam"), 64, 48, 4)
    reader = FrameReader()
    try:
        assert reader.newest_frame(writer.camera_id)[1:] == (0, 0)
        image = np.zeros((48, 64, 3), np.uint8)
        frame_ids = [writer.write_bgr(image) for _ in range(6)]
        header, frame_id, timestamp_ns = reader.newest_frame(writer.camera_id)
        assert (frame_id, header.width, header.height) == (frame_ids[-1], 64, 48) and timestamp_ns > 0
        offset = header.record_offset(header.slot_index(frame_id))
        write_u64(writer._buffer, offset, 7)  # an odd sequence: the writer is inside this slot
        assert reader.newest_frame(writer.camera_id) == (header, frame_id, 0)
    finally:
        writer.close()
