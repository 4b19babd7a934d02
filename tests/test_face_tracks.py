"""FaceTracker on fake detections: stable ids, the max-missing-frames rule, matching by overlap then distance."""

import pytest

from hcl.features.face_tracks import FaceTracker, TrackerConfig, iou


def box(cx, cy, size=0.2):
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def test_two_faces_keep_their_ids_while_they_move():
    tr = FaceTracker()
    ids = tr.step([box(0.25, 0.5), box(0.75, 0.5)], 0.0)
    assert ids == [1, 2]
    for k in range(1, 20):  # both drift 1 % of the frame per step, the left one also grows
        left, right = box(0.25 + 0.01 * k, 0.5, 0.2 + 0.002 * k), box(0.75 - 0.01 * k, 0.5 + 0.005 * k)
        assert tr.step([left, right], k / 10) == [1, 2]
        # the detector's order carries no meaning: ids follow the faces
        assert tr.step([right, left], k / 10 + 0.05) == [2, 1]


def test_best_overlap_wins_between_close_faces():
    tr = FaceTracker()
    tr.step([box(0.3, 0.5), box(0.45, 0.5)], 0.0)  # two faces that overlap each other
    # each new box is near both tracks; the greedy match pairs each with its own (IoU 0.9 first)
    assert tr.step([box(0.44, 0.5), box(0.31, 0.5)], 0.1) == [2, 1]


def test_missing_frames_keep_the_id_up_to_the_limit():
    tr = FaceTracker(TrackerConfig(max_missing_frames=3))
    tr.step([box(0.3, 0.5), box(0.7, 0.5)], 0.0)
    for k in range(3):  # the right face is not found for 3 frames (a blink of the detector)
        assert tr.step([box(0.3, 0.5)], 0.1 * (k + 1)) == [1]
    assert tr.step([box(0.3, 0.5), box(0.7, 0.5)], 0.4) == [1, 2]
    for k in range(4):  # now for 4 frames: its track is dropped
        tr.step([box(0.3, 0.5)], 0.5 + 0.1 * k)
    assert [t.id for t in tr.tracks] == [1]
    assert tr.step([box(0.3, 0.5), box(0.7, 0.5)], 1.0) == [1, 3]  # a new id; ids are never reused


def test_fast_move_matches_by_centre_distance_but_not_a_jump():
    tr = FaceTracker(TrackerConfig(max_centre_shift=0.75))
    tr.step([box(0.3, 0.5, 0.2)], 0.0)
    assert iou(box(0.3, 0.5, 0.2), box(0.44, 0.5, 0.2)) < TrackerConfig().min_iou
    assert tr.step([box(0.44, 0.5, 0.2)], 0.1) == [1]  # 0.7 face sizes: the same face, moved fast
    assert tr.step([box(0.9, 0.5, 0.2)], 0.2) == [2]  # 2.3 face sizes away: someone else


def test_a_new_face_gets_a_new_id_and_old_ones_stay():
    tr = FaceTracker()
    tr.step([box(0.2, 0.5)], 0.0)
    assert tr.step([box(0.2, 0.5), box(0.8, 0.5)], 0.1) == [1, 2]
    assert tr.step([box(0.8, 0.5), box(0.5, 0.2), box(0.2, 0.5)], 0.2) == [2, 3, 1]
    assert tr.step([], 0.3) == []


def test_bad_input_is_refused():
    tr = FaceTracker()
    tr.step([box(0.2, 0.5)], 1.0)
    with pytest.raises(ValueError, match="time order"):
        tr.step([box(0.2, 0.5)], 0.5)
    with pytest.raises(ValueError, match="x0 <= x1"):
        tr.step([(0.5, 0.5, 0.2, 0.9)], 2.0)
    with pytest.raises(ValueError, match="min_iou"):
        TrackerConfig(min_iou=0.0)
