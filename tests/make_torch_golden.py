"""Golden values of torch.nn.functional.cross_entropy for tests/test_xent_grad.py.

Computes PyTorch's cross-entropy losses and their autograd gradients in float64 over a compact
grid -- class weights on/off, label_smoothing in {0, 0.1}, reduction in {none, sum, mean}, class
indices with ignored positions (ignore_index -100 and a custom one) and class probabilities,
class axis last (N, C) and not last (N, C, d) -- on small seeded inputs, and saves inputs and
outputs to tests/data/torch_golden.npz (about 55 KB). The tests only read that file; torch is not
a dependency of fastxent or of its tests.

Regenerate (from the repository root, with torch installed; written with torch 2.13.0 CPU):

    python tests/make_torch_golden.py
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

OUT = pathlib.Path(__file__).parent / "data" / "torch_golden.npz"


def inputs():
    """name -> (logits, target, ignore_index); the class axis is 1, as in PyTorch."""
    rng = np.random.default_rng(20240607)
    sets = {}
    x = rng.standard_normal((7, 5)) * 2
    t = rng.integers(0, 5, 7)
    t[[1, 4]] = -100
    sets["index_nc"] = (x, t, -100)
    x = rng.standard_normal((4, 6, 3)) * 2
    t = rng.integers(0, 6, (4, 3))
    t[0, 1] = t[2, 2] = -100
    sets["index_ncd"] = (x, t, -100)
    x = rng.standard_normal((6, 4)) * 2
    t = rng.integers(0, 4, 6)
    t[[0, 3]] = 2
    sets["index_custom_ignore"] = (x, t, 2)
    x = rng.standard_normal((7, 5)) * 2
    q = rng.dirichlet(np.ones(5), 7)
    q[0] = [0, 0, 1, 0, 0]
    sets["prob_nc"] = (x, q, -100)
    x = rng.standard_normal((4, 6, 3)) * 2
    q = np.moveaxis(rng.dirichlet(np.full(6, 0.5), (4, 3)), -1, 1)
    sets["prob_ncd"] = (x, q, -100)
    return sets


def main():
    arrays, cases = {}, []
    rng = np.random.default_rng(7)
    for name, (x, t, ignore_index) in inputs().items():
        n_classes = x.shape[1]
        arrays[f"{name}/logits"], arrays[f"{name}/target"] = x, t
        arrays[f"{name}/weight"] = rng.uniform(0.25, 2.0, n_classes)
        for use_weight in (False, True):
            for smoothing in (0.0, 0.1):
                for reduction in ("none", "sum", "mean"):
                    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
                    w = torch.tensor(arrays[f"{name}/weight"]) if use_weight else None
                    loss = F.cross_entropy(xt, torch.tensor(t), weight=w, ignore_index=ignore_index,
                                           reduction=reduction, label_smoothing=smoothing)
                    loss.sum().backward()
                    key = f"case{len(cases)}"
                    arrays[f"{key}/loss"] = loss.detach().numpy()
                    arrays[f"{key}/grad"] = xt.grad.numpy()
                    cases.append(dict(key=key, inputs=name, weight=use_weight,
                                      label_smoothing=smoothing, reduction=reduction,
                                      ignore_index=ignore_index))
    arrays["cases"] = np.array(json.dumps(cases))
    arrays["torch_version"] = np.array(torch.__version__)
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {len(cases)} cases to {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
