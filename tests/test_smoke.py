"""The shortest path through the whole runtime: writer -> ring -> daemon -> client."""

from ai_model_container.contract.client import inference_request
from ruth_model_tools.frame_writer import synthetic_scene


def test_example_model_finds_the_drawn_boxes(example_daemon, make_writer, camera_id):
    writer = make_writer(camera_id, 1280, 720)
    image, boxes = synthetic_scene(5, 1280, 720)
    frame_id = writer.write_bgr(image)
    with example_daemon.client() as client:
        response = client.infer(inference_request(example_daemon.model_id, camera_id, frame_id, 1280, 720))
    assert response.error_code is None, response.error
    assert (response.camera_id, response.frame_id) == (camera_id, frame_id)
    found = sorted(tuple(d.bbox) for d in response.detections)
    expected = sorted((b.x_min, b.y_min, b.x_max, b.y_max) for b in boxes)
    assert len(found) == len(expected)
    for got, want in zip(found, expected):
        assert all(abs(g - w) <= 8 for g, w in zip(got, want)), (got, want)
