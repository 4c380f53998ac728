import numpy as np
import pytest
import torch

from lpe.data.datasets import build
from lpe.models.factory import create_model
from lpe.stages.landscape import Plane, evaluate_plane, grid_axes


def vectors(p=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p, generator=g) for _ in range(3)]


def test_anchors_land_at_their_computed_plane_coordinates():
    w = vectors()
    plane = Plane.through(*w)
    coords = [plane.coordinates(v) for v in w]
    assert coords[0] == (0.0, 0.0)
    assert coords[1][1] == pytest.approx(0.0, abs=1e-6)  # float32 anchors
    assert coords[1][0] == pytest.approx(float((w[1] - w[0]).norm()), rel=1e-6)
    for v, (a, b) in zip(w, coords, strict=True):
        torch.testing.assert_close(plane.point(a, b), v)  # the point is the anchor itself
    assert float(plane.e1.double() @ plane.e2.double()) == pytest.approx(0.0, abs=1e-12)


def test_the_grid_spans_the_anchors_with_the_margin():
    anchors = np.array([[0.0, 0.0], [2.0, 0.0], [0.5, 1.0]])
    a, b = grid_axes(anchors, grid=5, margin=0.25)
    np.testing.assert_allclose(a, np.linspace(-0.5, 2.5, 5))
    np.testing.assert_allclose(b, np.linspace(-0.25, 1.25, 5))


def test_a_grid_below_three_points_is_refused():
    with pytest.raises(ValueError, match="landscape.grid must be >= 3"):
        grid_axes(np.zeros((3, 2)), grid=2, margin=0.1)


def test_collinear_anchors_are_refused():
    w0, w1, _ = vectors()
    with pytest.raises(ValueError, match="collinear"):
        Plane.through(w0, w1, w0 + 2 * (w1 - w0))


def test_the_grid_point_at_an_anchor_reproduces_that_anchors_nll():
    model = create_model("vit_mini_t", 10, (1, 1, 40), seed=0)
    splits = build("mnist1d", train=10, val=10, test=40, seed=0)
    x, y = splits.x["test"], splits.y["test"]
    w0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    g = torch.Generator().manual_seed(1)
    anchors_w = [w0, w0 + 0.02 * torch.randn(w0.shape, generator=g),
                 w0 + 0.02 * torch.randn(w0.shape, generator=g)]  # fmt: skip
    plane = Plane.through(*anchors_w)
    coords = np.array([plane.coordinates(w) for w in anchors_w])
    cpu = torch.device("cpu")
    for k, (a, b) in enumerate(coords):
        nll, kl, anchor_nll = evaluate_plane(
            model, plane, anchors_w, [a], [b], x=x, labels=y, device=cpu
        )
        assert nll[0, 0] == pytest.approx(anchor_nll[k], abs=1e-5)
        assert kl[k, 0, 0] == pytest.approx(0.0, abs=1e-5)  # no divergence from itself
        assert (np.delete(kl[:, 0, 0], k) > 1e-6).all()  # but from the other anchors
    assert len(set(np.round(anchor_nll, 6))) == 3
