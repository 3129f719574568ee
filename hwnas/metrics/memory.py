"""Peak activation memory of one forward pass, from tensor liveness over the torch.fx graph."""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

# Nodes whose output shares storage with their first input instead of allocating.
_ALIAS_MODULES = (nn.Identity,)
_ALIAS_METHODS = {"view", "unflatten", "transpose", "permute", "unsqueeze", "squeeze", "expand"}


def _bytes(meta: object) -> int:
    if meta is None:
        return 0
    if hasattr(meta, "shape") and hasattr(meta, "dtype"):  # TensorMetadata (itself a tuple)
        numel = 1
        for d in meta.shape:
            numel *= int(d)
        return numel * torch.empty((), dtype=meta.dtype).element_size()
    if isinstance(meta, (tuple, list)):
        return sum(_bytes(m) for m in meta)
    return 0


def _is_alias(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(str(node.target)), _ALIAS_MODULES)
    return node.op == "call_method" and node.target in _ALIAS_METHODS


def peak_activation_bytes(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> int:
    """Largest total size of simultaneously live activations (input included, weights excluded).

    Eager execution order in eval mode: each op's output is allocated before its inputs are
    freed; a tensor is freed after its last reader; view-like ops share storage.
    """
    was_training = model.training
    model.eval()
    try:
        gm = fx.symbolic_trace(model)
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(batch_size, *input_shape))
    finally:
        model.train(was_training)

    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    owner: dict[fx.Node, fx.Node] = {}  # storage owner of each node
    size: dict[fx.Node, int] = {}
    for n in nodes:
        if n.op in ("placeholder", "call_module", "call_function", "call_method"):
            src = n.all_input_nodes[0] if n.all_input_nodes else None
            if _is_alias(gm, n) and src is not None and src in owner:
                owner[n] = owner[src]
            else:
                owner[n] = n
                size[n] = _bytes(n.meta.get("tensor_meta"))
    last_use: dict[fx.Node, int] = {}
    for n in nodes:
        for user in n.users:
            if n in owner:
                o = owner[n]
                last_use[o] = max(last_use.get(o, 0), index[user])
    live = peak = 0
    frees: dict[int, int] = {}
    for o, i in last_use.items():
        frees[i] = frees.get(i, 0) + size.get(o, 0)
    for i, n in enumerate(nodes):
        if owner.get(n) is n:
            live += size[n]
            peak = max(peak, live)
        if n.op == "output":
            break
        live -= frees.get(i, 0)
    return peak
