"""The worked examples of /work/shared/seed-examples.md (1, 2, 6, 7), by their
numbers, through the nn/optim layer, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from nnkernels import nn, optim

from _pylayer import on_backend, require_kernels

torch = pytest.importorskip("torch")


def test_example1_single_neuron_sgd_step(backend, dtype):
    require_kernels(backend, "pointwise_loss")
    with on_backend(backend):
        lin = nn.Linear(2, 1, dtype=dtype)
        lin.weight.data[...] = [[0.5, -0.3]]
        lin.bias.data[...] = [0.1]
        opt = optim.SGD(lin.parameters(), lr=0.1)
        loss_fn = nn.MSELoss()
        x = np.array([[1.0, 2.0]], dtype=dtype)
        y = np.array([[1.0]], dtype=dtype)
        out = lin(x)
        tol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out, [[0.0]], atol=tol)
        loss = loss_fn(out, y)
        assert isinstance(loss, float)
        assert loss == pytest.approx(1.0, abs=tol)
        opt.zero_grad()
        lin.backward(loss_fn.backward())
        np.testing.assert_allclose(lin.weight.grad, [[-2.0, -4.0]], atol=tol)
        np.testing.assert_allclose(lin.bias.grad, [-2.0], atol=tol)
        opt.step()
        np.testing.assert_allclose(lin.weight.data, [[0.7, 0.1]], atol=tol)
        np.testing.assert_allclose(lin.bias.data, [0.3], atol=tol)
        np.testing.assert_allclose(lin(x), [[1.2]], atol=tol)


def test_example2_two_layer_forward(backend, dtype):
    require_kernels(backend, "activation_forward")
    with on_backend(backend):
        model = nn.Sequential(nn.Linear(2, 3, dtype=dtype), nn.ReLU(dtype=dtype), nn.Linear(3, 2, dtype=dtype))
        model.load_state_dict({
            "0.weight": [[0.5, -0.3], [0.2, 0.8], [-0.4, 0.6]], "0.bias": [0.1, -0.1, 0.2],
            "2.weight": [[0.7, -0.2, 0.5], [-0.3, 0.9, 0.1]], "2.bias": [0.0, 0.1]})
        x = np.array([[1.0, 0.5]], dtype=dtype)
        tol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(model[:2](x), [[0.45, 0.50, 0.10]], atol=tol)
        out = model(x)
        np.testing.assert_allclose(out, [[0.265, 0.425]], atol=tol)
        np.testing.assert_allclose(out, [[0.27, 0.42]], atol=0.005 + tol)  # as printed (rounded)


def test_example6_adam_three_steps(backend, dtype):
    with on_backend(backend):
        p = nn.Parameter(np.array([5.0], dtype=dtype))
        opt = optim.Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
        tol = 1e-6 if dtype == np.float32 else 1e-12
        expected = [  # (m, v, theta) after each step, from the worked example
            (0.2, 0.004, 4.9),
            (0.33, 0.00625, 4.802),
        ]
        thetas = []
        for k, g in enumerate([2.0, 1.5, 3.0]):
            opt.zero_grad()
            p.grad += g
            opt.step()
            thetas.append(float(p.data[0]))
            st = opt.state_dict()["state"][0]
            if k == 0:
                m, v, theta = expected[0]
                assert st["exp_avg"][0] == pytest.approx(m, abs=tol)
                assert st["exp_avg_sq"][0] == pytest.approx(v, abs=tol)
                assert st["exp_avg"][0] / (1 - 0.9) == pytest.approx(2.0, rel=1e-5)   # m-hat
                assert st["exp_avg_sq"][0] / (1 - 0.999) == pytest.approx(4.0, rel=1e-4)  # v-hat
                assert thetas[-1] == pytest.approx(theta, abs=1e-6)  # eps shifts it by 5e-10
            if k == 1:
                m, v, theta = expected[1]
                assert st["exp_avg"][0] == pytest.approx(m, abs=tol)
                assert st["exp_avg_sq"][0] == pytest.approx(v, abs=5e-6)  # printed rounded
                assert st["exp_avg"][0] / (1 - 0.9 ** 2) == pytest.approx(1.737, abs=1e-3)
                assert st["exp_avg_sq"][0] / (1 - 0.999 ** 2) == pytest.approx(3.125, abs=2e-3)
                assert thetas[-1] == pytest.approx(theta, abs=1e-3)
        # step 3 against torch.optim.Adam
        tp = torch.nn.Parameter(torch.tensor([5.0], dtype=torch.float64))
        topt = torch.optim.Adam([tp], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
        want = []
        for g in [2.0, 1.5, 3.0]:
            tp.grad = torch.tensor([g], dtype=torch.float64)
            topt.step()
            want.append(float(tp.detach()[0]))
        np.testing.assert_allclose(thetas, want, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("sizes,count", [([784, 128, 10], 101_770), ([3, 5, 5, 2], 62),
                                         ([784, 256, 128, 10], 235_146)])
def test_example7_parameter_counts(sizes, count):
    m = nn.MLP(sizes)
    assert m.num_parameters() == count
    t = torch.nn.Sequential(*[torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])])
    assert sum(p.numel() for p in t.parameters()) == count
