from connector.pipeline.checkpoint import Checkpoint


def test_watermark_never_passes_an_unfinished_record() -> None:
    cp = Checkpoint()
    s = cp.assign("t", 0)
    for off in range(10, 15):
        s.track(off, 1)
    assert s.committable() == 10
    for off in (11, 12, 14):  # out-of-order completion
        s.done(off)
    assert s.committable() == 10
    s.done(10)
    assert s.committable() == 13
    s.done(13)
    assert s.committable() == 15  # nothing pending: one past the highest seen


def test_multi_part_record_is_done_only_when_all_parts_are() -> None:
    s = Checkpoint().assign("t", 0)
    s.track(0, 3)
    s.done(0)
    s.done(0)
    assert s.committable() == 0
    s.done(0)
    assert s.committable() == 1


def test_to_commit_reports_only_moved_watermarks() -> None:
    cp = Checkpoint()
    a, b = cp.assign("t", 0), cp.assign("t", 1)
    a.track(0, 1)
    b.track(5, 1)
    a.done(0)
    assert cp.to_commit() == [("t", 0, 1), ("t", 1, 5)]
    cp.committed("t", 0, 1)
    cp.committed("t", 1, 5)
    assert cp.to_commit() == []
    assert cp.to_commit(only={("t", 1)}) == []


def test_completion_after_revoke_cannot_touch_new_assignment() -> None:
    cp = Checkpoint()
    old = cp.assign("t", 0)
    old.track(3, 2)
    cp.revoke("t", 0)
    new = cp.assign("t", 0)
    new.track(3, 2)
    old.done(3)  # a late completion from the revoked assignment
    new.done(3)
    assert new.pending == {3: 1}
    assert new.committable() == 3
    assert cp.pending_records == 1


def test_untracked_partition_commits_nothing() -> None:
    cp = Checkpoint()
    cp.assign("t", 0)
    assert cp.to_commit() == []
