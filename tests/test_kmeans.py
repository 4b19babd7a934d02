import numpy as np
import pytest
import torch

from hcl.kmeans import KMeansWorkspace, block_assignment, kmeans


def numpy_kmeans(x: np.ndarray, k: int, iters: int):
    """Straightforward reference: one problem, points x (d, T), block initialisation."""
    d = x.shape[0]
    block = np.arange(d) // (d // k)
    centroids = np.stack([x[block == j].mean(axis=0) for j in range(k)])
    assign = block.copy()
    for _ in range(iters):
        dist = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
        assign = dist.argmin(axis=1)
        for j in range(k):
            members = x[assign == j]
            if len(members):  # empty cluster keeps its centroid
                centroids[j] = members.mean(axis=0)
    return assign, centroids


@pytest.mark.parametrize("iters", [0, 1, 3, 10])
def test_matches_numpy_reference(iters):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 128, 8)).astype(np.float64)
    res = kmeans(torch.from_numpy(x), clusters=8, iters=iters)
    for i in range(x.shape[0]):
        assign, centroids = numpy_kmeans(x[i], 8, iters)
        np.testing.assert_array_equal(res.assignment[i].numpy(), assign)
        np.testing.assert_allclose(res.centroids[i].numpy(), centroids, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(res.counts[i].numpy(), np.bincount(assign, minlength=8))


def test_empty_cluster_keeps_previous_centroid():
    # 16 channels, 4 clusters; all points at two locations: two clusters become empty
    x = torch.zeros(1, 16, 2, dtype=torch.float64)
    x[0, :8] = torch.tensor([0.0, 0.0], dtype=torch.float64)
    x[0, 8:] = torch.tensor([10.0, 10.0], dtype=torch.float64)
    x[0, 4:8] += 0.1  # block 1 sits close to block 0, block 3 close to block 2
    x[0, 12:] += 0.1
    res = kmeans(x, clusters=4, iters=5)
    ref_assign, ref_centroids = numpy_kmeans(x[0].numpy(), 4, 5)
    np.testing.assert_array_equal(res.assignment[0].numpy(), ref_assign)
    np.testing.assert_allclose(res.centroids[0].numpy(), ref_centroids)
    assert torch.isfinite(res.centroids).all()


def test_zero_iterations_is_fixed_channel_blocks():
    res = kmeans(torch.randn(3, 128, 8), clusters=8, iters=0)
    expected = block_assignment(128, 8)
    assert torch.equal(res.assignment, expected.expand(3, -1))
    assert torch.equal(res.counts, torch.full((3, 8), 16.0))


def test_workspace_reuses_its_storage():
    ws = KMeansWorkspace(clusters=8, iters=10)
    ws.run(torch.randn(6, 128, 8))
    ptrs = {name: t.data_ptr() for name, t in ws.buffers().items()}
    for _ in range(3):
        out = ws.run(torch.randn(6, 128, 8))
    assert {name: t.data_ptr() for name, t in ws.buffers().items()} == ptrs
    assert out.assignment.data_ptr() == ptrs["assignment"]
    assert ws.allocations == 1
    ws.run(torch.randn(3, 128, 8))  # a new shape allocates its own buffers once
    assert ws.allocations == 2
    ws.run(torch.randn(6, 128, 8))  # the first shape's buffers were kept: same memory, no allocation
    assert ws.allocations == 2
    assert {name: t.data_ptr() for name, t in ws.buffers().items()} == ptrs


def test_each_problem_independent_of_batch():
    x = torch.randn(5, 128, 8)
    batched = kmeans(x, clusters=8, iters=10)
    alone = kmeans(x[2:3], clusters=8, iters=10)
    assert torch.equal(batched.assignment[2], alone.assignment[0])


def test_a_forced_empty_cluster_keeps_its_previous_centroid():
    """Fixed points that leave a cluster empty: channels 10, 30 | 11, 11 | 29, 29 (T = 1, K = 3).
    Block centroids are 20, 11, 29; every channel is nearer 11 or 29 than 20, so cluster 0
    is empty from the first iteration on and must keep its centroid 20 (not 0, not NaN)."""
    x = torch.tensor([10.0, 30.0, 11.0, 11.0, 29.0, 29.0], dtype=torch.float64).reshape(1, 6, 1)
    x = torch.cat([x, (x + 1.0) * 2])  # a second problem: shifted and scaled, same groups
    for iters in (1, 2, 5):
        res = kmeans(x, clusters=3, iters=iters)
        assert res.assignment.tolist() == [[1, 2, 1, 1, 2, 2], [1, 2, 1, 1, 2, 2]]
        assert res.counts.tolist() == [[0.0, 3.0, 3.0], [0.0, 3.0, 3.0]]
        assert res.onehot[:, :, 0].sum() == 0
        np.testing.assert_allclose(res.centroids[0, :, 0].numpy(), [20.0, 32 / 3, 88 / 3])
        np.testing.assert_allclose(res.centroids[1, :, 0].numpy(), [42.0, 2 * 32 / 3 + 2, 2 * 88 / 3 + 2])
        ref_assign, ref_centroids = numpy_kmeans(x[0].numpy(), 3, iters)
        np.testing.assert_array_equal(ref_assign, res.assignment[0].numpy())
        np.testing.assert_allclose(ref_centroids, res.centroids[0].numpy())


def test_an_empty_cluster_stays_empty_in_a_reused_workspace():
    """The keep-previous rule works on the workspace's own buffers: a second run with other
    points in the same workspace starts again from its own block centroids."""
    ws = KMeansWorkspace(clusters=3, iters=3)
    empty = torch.tensor([10.0, 30.0, 11.0, 11.0, 29.0, 29.0]).reshape(1, 6, 1)
    res = ws.run(empty)
    assert res.counts.tolist() == [[0.0, 3.0, 3.0]] and res.centroids[0, 0, 0] == 20.0
    spread = torch.tensor([0.0, 1.0, 10.0, 11.0, 20.0, 21.0]).reshape(1, 6, 1)
    res = ws.run(spread)
    assert res.counts.tolist() == [[2.0, 2.0, 2.0]]
    assert res.centroids[0, :, 0].tolist() == [0.5, 10.5, 20.5]
    assert ws.allocations == 1


def test_buffers_follow_the_input_not_torch_defaults():
    """Every working tensor takes the input's dtype and device, whatever torch's defaults are
    (a float16 default would overflow the squared distances; a meta default has no data)."""
    x = torch.randn(2, 16, 8, dtype=torch.float64) * 100
    expected = kmeans(x, clusters=4, iters=5)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        with torch.device("meta"):
            ws = KMeansWorkspace(clusters=4, iters=5)
            got = ws.run(x)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(got.assignment, expected.assignment)
    assert torch.equal(got.centroids, expected.centroids)
    for name, t in ws.buffers().items():
        assert t.device == x.device, name
        assert t.dtype == (torch.int64 if name == "assignment" else torch.float64), name


def test_a_run_resizes_no_working_tensor():
    """The buffers are made at their final shapes: no `out=` tensor is resized (which
    would allocate on every call and break the fixed memory a CUDA graph replays on)."""
    import warnings

    n, d, t, k = 3, 16, 5, 4
    ws = KMeansWorkspace(clusters=k, iters=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it resizes an out= tensor
        ws.run(torch.randn(n, d, t))
    shapes = {name: tuple(tensor.shape) for name, tensor in ws.buffers().items()}
    assert shapes == {
        "centroids": (n, k, t), "sums": (n, k, t), "dist": (n, d, k), "x_sq": (n, d, 1),
        "c_sq": (n, 1, k), "assignment": (n, d), "onehot": (n, d, k), "counts": (n, k),
    }


def test_block_assignment_needs_equal_blocks():
    assert block_assignment(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match=r"^10 channels cannot be split into 4 equal blocks$"):
        block_assignment(10, 4)
