"""A minimal Adam optimiser for the registration stages.

`torch.optim` costs about 1.2 CPU-seconds to import (it pulls in torch._dynamo), more than a whole linear stage;
the registration only needs plain Adam (no weight decay, no AMSGrad) on a few small tensors, so it is written
here. Same update as `torch.optim.Adam` with default betas and eps (bias-corrected first and second moments).
"""

from __future__ import annotations


class Adam:
    """Adam over parameter groups ``[{"params": [tensor, ...], "lr": float}, ...]`` (or a list of tensors + lr).

    `param_groups[g]["lr"]` may be changed between steps (learning-rate schedules), as with torch.optim.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        import torch

        params = list(params)
        if params and isinstance(params[0], torch.Tensor):
            params = [{"params": params, "lr": lr}]
        self.param_groups = [{"params": list(g["params"]), "lr": float(g.get("lr", lr))} for g in params]
        self.betas, self.eps, self.t = betas, eps, 0
        self.state = {id(p): (torch.zeros_like(p), torch.zeros_like(p)) for g in self.param_groups
                      for p in g["params"]}

    def zero_grad(self) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def step(self) -> None:
        import torch

        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        with torch.no_grad():
            for g in self.param_groups:
                for p in g["params"]:
                    if p.grad is None:
                        continue
                    m, v = self.state[id(p)]
                    m.mul_(b1).add_(p.grad, alpha=1.0 - b1)
                    v.mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
                    denom = (v / c2).sqrt_().add_(self.eps)
                    p.addcdiv_(m, denom, value=-g["lr"] / c1)
