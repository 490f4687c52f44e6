"""torch.export programs (``ExportedProgram``, ``.pt2`` files, ``exported.module()``) as ordinary modules that the
torch.fx frontend converts.

torch.export lowers a model to ATen operators (``aten.conv2d``, ``aten.batch_norm``, ``aten.relu``, ...) reading
lifted parameters (``get_attr``); the fx frontend lowers standard layers. ``as_module`` rebuilds an equivalent
``torch.fx.GraphModule`` of those layers -- Conv2d, Linear, BatchNorm1d/2d, ReLU, AvgPool2d, AdaptiveAvgPool2d --
and functions (flatten, add, cat, max_pool2d, which ``convert`` refuses by name) with the program's weights, named
after the source modules (``nn_module_stack``) so that layer names stay the user's. An operator without such a
layer is an ``UnsupportedLayerError`` naming it and its position. The rebuilt module runs any batch size: a
``view``/``reshape`` to (batch, features) becomes ``flatten(x, 1)``; the program's example batch size is not kept.
"""
from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from snnc.ir.errors import UnsupportedLayerError

aten = torch.ops.aten


def is_exported(obj: Any) -> bool:
    """True for an ``ExportedProgram`` or the module of one (a GraphModule of ATen operators)."""
    if isinstance(obj, torch.export.ExportedProgram):
        return True
    if isinstance(obj, torch.fx.GraphModule):
        return any(n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) for n in obj.graph.nodes)
    return False


def as_module(obj: Any) -> Any:
    """``obj`` unchanged unless it is a torch.export program (or its module): then the rebuilt nn.Module."""
    if not is_exported(obj):
        return obj
    gm = obj.module() if isinstance(obj, torch.export.ExportedProgram) else obj
    return _Rebuild(gm).run()


def _attr(gm: torch.nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class _Param:
    """A lifted parameter/buffer in the program: its tensor and the module path it came from."""

    def __init__(self, target: str, value: torch.Tensor) -> None:
        self.target, self.value = target, value

    @property
    def owner(self) -> str:
        return self.target.rpartition(".")[0]


class _Rebuild:
    def __init__(self, gm: torch.fx.GraphModule) -> None:
        self.gm = gm
        self.root = nn.Module()
        self.graph = torch.fx.Graph()
        self.env: dict[str, Any] = {}
        self.installed: dict[str, nn.Module] = {}

    # ---- helpers -----------------------------------------------------------------------------------------------
    def refuse(self, n: torch.fx.Node, why: str = "") -> None:
        raise UnsupportedLayerError(f"torch.export program: operator {n.target} at position {n.name!r} "
                                    f"{why or 'has no snnc rule'}; supported: {', '.join(sorted(_RULE_NAMES))}")

    def val(self, n: torch.fx.Node, a: Any) -> Any:
        """The rebuilt value of argument ``a`` (a node, a parameter, or a constant)."""
        if isinstance(a, torch.fx.Node):
            v = self.env[a.name]
            return v
        if isinstance(a, (list, tuple)):
            return type(a)(self.val(n, x) for x in a)
        return a

    def tensor_in(self, n: torch.fx.Node, i: int = 0) -> torch.fx.Node:
        v = self.val(n, n.args[i])
        if not isinstance(v, torch.fx.Node):
            self.refuse(n, "reads a parameter or constant where snnc needs the data path")
        return v

    def param(self, n: torch.fx.Node, a: Any, what: str) -> torch.Tensor | None:
        v = self.val(n, a)
        if v is None or isinstance(v, _Param):
            return None if v is None else v.value
        self.refuse(n, f"computes its {what} from the data (snnc needs fixed parameters)")
        return None

    def rank(self, a: Any) -> int | None:
        v = a.meta.get("val") if isinstance(a, torch.fx.Node) else None
        return v.dim() if isinstance(v, torch.Tensor) else None

    def shape(self, a: Any) -> tuple | None:
        v = a.meta.get("val") if isinstance(a, torch.fx.Node) else None
        return tuple(v.shape) if isinstance(v, torch.Tensor) else None

    def name_for(self, n: torch.fx.Node, kind: type, owner: str = "") -> str:
        """The source module's path when it is of ``kind`` (else the program's node name)."""
        stack = n.meta.get("nn_module_stack") or {}
        if not owner and stack:
            path, tname = list(stack.values())[-1]
            if str(tname).endswith("." + kind.__name__) or str(tname) == kind.__name__:
                owner = str(path)
        owner = owner.replace("[", ".").replace("]", "").replace("'", "")
        ok = owner and all(p.isidentifier() or p.isdigit() for p in owner.split("."))
        return owner if ok else n.name

    def install(self, n: torch.fx.Node, name: str, module: nn.Module) -> str:
        """Add ``module`` under ``name`` (nested paths allowed); a name already taken by another module becomes
        the node's name. A stateless layer or the same weights used twice share one module."""
        if name in self.installed:
            old = self.installed[name]
            same = type(old) is type(module) and repr(old) == repr(module) and all(
                torch.equal(a, b) for a, b in zip(old.state_dict().values(), module.state_dict().values()))
            if same:
                return name
            name = n.name
            while name in self.installed:
                name += "_"
        parent = self.root
        parts = name.split(".")
        for p in parts[:-1]:
            if not hasattr(parent, p):
                parent.add_module(p, nn.Module())
            parent = getattr(parent, p)
        if hasattr(parent, parts[-1]):
            name = n.name
            parent = self.root
            parts = [name]
        parent.add_module(parts[-1], module)
        self.installed[name] = module
        return name

    def call_module(self, n: torch.fx.Node, name: str, module: nn.Module, x: torch.fx.Node) -> torch.fx.Node:
        target = self.install(n, name, module)
        return self.graph.call_module(target, (x,))

    # ---- the walk ----------------------------------------------------------------------------------------------
    def run(self) -> torch.fx.GraphModule:
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                self.env[n.name] = self.graph.placeholder(n.name)
            elif n.op == "get_attr":
                self.env[n.name] = _Param(str(n.target), _attr(self.gm, str(n.target)))
            elif n.op == "call_module":
                if not n.users:  # torch.export's input guard (_guards_fn): no output, nothing to convert
                    continue
                self.refuse(n, "is a submodule call inside a torch.export program")
            elif n.op == "call_function":
                rule = _RULES.get(n.target)
                if rule is None:
                    self.refuse(n)
                self.env[n.name] = rule(self, n)
            elif n.op == "output":
                out = n.args[0]
                if isinstance(out, (tuple, list)) and len(out) == 1:
                    out = out[0]
                self.graph.output(self.val(n, out))
            else:
                self.refuse(n)
        gm = torch.fx.GraphModule(self.root, self.graph, "ExportedModel")
        return gm.eval()


def _pairs(v: Any, n: int = 2) -> tuple:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,) * n


def _conv2d(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    a = list(n.args) + [None] * 7
    x = r.tensor_in(n)
    w = r.param(n, a[1], "weight")
    b = r.param(n, a[2], "bias")
    stride = _pairs(a[3] if a[3] is not None else 1)
    padding = a[4] if isinstance(a[4], str) else _pairs(a[4] if a[4] is not None else 0)
    dilation = _pairs(a[5] if a[5] is not None else 1)
    groups = int(a[6] if a[6] is not None else 1)
    if w is None or w.dim() != 4:
        r.refuse(n, "is not a 2-d convolution with a fixed weight")
    m = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=stride, padding=padding,
                  dilation=dilation, groups=groups, bias=b is not None)
    with torch.no_grad():
        m.weight.copy_(w)
        if b is not None:
            m.bias.copy_(b)
    return r.call_module(n, r.name_for(n, nn.Conv2d, _owner(n, a[1])), m, x)


def _owner(n: torch.fx.Node, a: Any) -> str:
    return str(a.target).rpartition(".")[0] if isinstance(a, torch.fx.Node) and a.op == "get_attr" else ""


def _linear(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    a = list(n.args) + [None]
    x = r.tensor_in(n)
    w, b = r.param(n, a[1], "weight"), r.param(n, a[2], "bias")
    if w is None or w.dim() != 2:
        r.refuse(n, "is not a linear layer with a fixed 2-d weight")
    m = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        m.weight.copy_(w)
        if b is not None:
            m.bias.copy_(b)
    return r.call_module(n, r.name_for(n, nn.Linear, _owner(n, a[1])), m, x)


def _batch_norm(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    # aten.batch_norm(x, w, b, mean, var, training, momentum, eps, cudnn) and
    # aten._native_batch_norm_legit_no_training(x, w, b, mean, var, momentum, eps)
    a = list(n.args)
    legit = n.target is aten._native_batch_norm_legit_no_training.default
    if not legit and a[5]:
        r.refuse(n, "runs batch norm in training mode (export the model after model.eval())")
    eps = float(a[6] if legit else a[7])
    x = r.tensor_in(n)
    w, b = r.param(n, a[1], "weight"), r.param(n, a[2], "bias")
    mean, var = r.param(n, a[3], "running mean"), r.param(n, a[4], "running variance")
    if mean is None or var is None:
        r.refuse(n, "has no running statistics (track_running_stats=False)")
    rank = r.rank(n.args[0])
    cls = {4: nn.BatchNorm2d, 2: nn.BatchNorm1d}.get(rank)
    if cls is None:
        r.refuse(n, f"normalises a rank-{rank} tensor (snnc converts BatchNorm1d on (N, C) and BatchNorm2d)")
    m = cls(mean.shape[0], eps=eps, affine=w is not None)
    with torch.no_grad():
        if w is not None:
            m.weight.copy_(w)
            m.bias.copy_(b if b is not None else torch.zeros_like(w))
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
    out = r.call_module(n, r.name_for(n, cls, _owner(n, a[1]) or _owner(n, a[3])), m.eval(), x)
    return (out, None, None) if legit else out


def _relu(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    return r.call_module(n, r.name_for(n, nn.ReLU), nn.ReLU(), r.tensor_in(n))


def _avg_pool2d(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    a = list(n.args) + [None] * 6
    k = _pairs(a[1])
    s = _pairs(a[2]) if a[2] else k
    p = _pairs(a[3] if a[3] is not None else 0)
    m = nn.AvgPool2d(k, s, p, ceil_mode=bool(a[4]), count_include_pad=a[5] if a[5] is not None else True,
                     divisor_override=a[6])
    return r.call_module(n, r.name_for(n, nn.AvgPool2d), m, r.tensor_in(n))


def _adaptive_avg_pool2d(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    m = nn.AdaptiveAvgPool2d(tuple(n.args[1]))
    return r.call_module(n, r.name_for(n, nn.AdaptiveAvgPool2d), m, r.tensor_in(n))


def _mean(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    """x.mean((2, 3)) / x.mean((-2, -1), keepdim) on (N, C, H, W): global average pooling."""
    dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    keep = n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False)
    if r.rank(n.args[0]) != 4 or dims is None or sorted(d % 4 for d in dims) != [2, 3]:
        r.refuse(n, "is a mean over other dimensions than H and W of an (N, C, H, W) tensor")
    y = r.call_module(n, r.name_for(n, nn.AdaptiveAvgPool2d), nn.AdaptiveAvgPool2d(1), r.tensor_in(n))
    return y if keep else r.graph.call_function(torch.flatten, (y, 1))


def _flatten(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    start = n.args[1] if len(n.args) > 1 else 0
    end = n.args[2] if len(n.args) > 2 else -1
    return r.graph.call_function(torch.flatten, (r.tensor_in(n), start, end))


def _view(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    """view/reshape to (batch, features): flatten(x, 1); any other reshape is refused."""
    src, dst = r.shape(n.args[0]), r.shape(n)
    if src is None or dst is None or len(src) < 2 or len(dst) != 2 or dst[0] != src[0] \
            or dst[1] != math.prod(src[1:]):
        r.refuse(n, f"reshapes {src} to {dst} (snnc converts a flatten to (batch, features) only)")
    return r.graph.call_function(torch.flatten, (r.tensor_in(n), 1))


def _add(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    alpha = n.kwargs.get("alpha", 1)
    if alpha != 1 or len(n.args) != 2:
        r.refuse(n, "adds with alpha != 1")
    a, b = r.val(n, n.args[0]), r.val(n, n.args[1])
    if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)):
        r.refuse(n, "adds a constant or a parameter (snnc converts residual adds of two layers)")
    return r.graph.call_function(operator.add, (a, b))


def _cat(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    xs = r.val(n, n.args[0])
    if not all(isinstance(x, torch.fx.Node) for x in xs):
        r.refuse(n, "concatenates a constant or a parameter")
    dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
    return r.graph.call_function(torch.cat, (list(xs), dim))


def _identity(r: _Rebuild, n: torch.fx.Node) -> torch.fx.Node:
    return r.tensor_in(n)


def _max_pool2d(r: _Rebuild, n: torch.fx.Node) -> Any:
    y = r.graph.call_function(F.max_pool2d, (r.tensor_in(n), n.args[1]))  # convert refuses it by name
    return (y, None) if n.target is aten.max_pool2d_with_indices.default else y


def _getitem(r: _Rebuild, n: torch.fx.Node) -> Any:
    v = r.val(n, n.args[0])
    if isinstance(v, tuple):
        return v[n.args[1]]
    r.refuse(n, "indexes a tensor")


def _op(name: str, overload: str = "default") -> Any:
    packet = getattr(aten, name, None)
    return getattr(packet, overload, None) if packet is not None else None


_RULES: dict[Any, Any] = {k: v for k, v in {
    _op("conv2d"): _conv2d, _op("conv2d", "padding"): _conv2d, _op("linear"): _linear,
    _op("batch_norm"): _batch_norm, _op("_native_batch_norm_legit_no_training"): _batch_norm,
    _op("relu"): _relu, _op("relu_"): _relu,
    _op("avg_pool2d"): _avg_pool2d, _op("adaptive_avg_pool2d"): _adaptive_avg_pool2d, _op("mean", "dim"): _mean,
    _op("flatten", "using_ints"): _flatten, _op("view"): _view, _op("reshape"): _view, _op("_unsafe_view"): _view,
    _op("add", "Tensor"): _add, _op("add_", "Tensor"): _add, _op("cat"): _cat,
    _op("dropout"): _identity, _op("dropout_"): _identity, _op("clone"): _identity, _op("contiguous"): _identity,
    _op("alias"): _identity, _op("detach"): _identity,
    _op("max_pool2d"): _max_pool2d, _op("max_pool2d_with_indices"): _max_pool2d,
    operator.getitem: _getitem,
}.items() if k is not None}
_RULE_NAMES = {str(k).removeprefix("aten.") for k in _RULES if k is not operator.getitem}
