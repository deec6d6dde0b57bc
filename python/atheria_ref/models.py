"""Reference networks of Atheria's laws.

The attribute names below ARE the file format: a module's ``state_dict`` keys
are the tensor names in ``model.safetensors``, which the Rust candle backend
reads by name. Renaming an attribute breaks every exported model.
"""

from __future__ import annotations

import torch
from torch import nn

#: Architectures the exporter knows, with their model.json constants.
ARCHITECTURES = {
    # name: (update rule, receptive radius (None = global), spatial multiple, has hidden)
    "conv3x3": ("additive", 1, 1, False),
    "mlp": ("additive", 0, 1, True),
    "deep_qca": ("additive", 1, 1, True),
    "unet": ("additive", None, 4, True),
    "unet_unitary": ("unitary", None, 4, True),
    # Atheria's engine multiplies by psi only for the class named exactly
    # `UNetUnitary` (src/engines/qca_engine.py, `_evolve_logic`), so its
    # `UNetUnitaryRMSNorm` and `UNetConvLSTM` are additive laws.
    "unet_convlstm": ("additive", None, 4, True),
    "unet_unitary_rmsnorm": ("additive", None, 4, True),
}

#: The U-Net family: global laws pooling twice (H and W multiples of 4).
UNETS = ("unet", "unet_unitary", "unet_convlstm", "unet_unitary_rmsnorm")

#: Architectures that carry memory from step to step.
RECURRENT = ("unet_convlstm",)


def memory_spec(arch: str, hidden: int | None) -> list[dict]:
    """The model.json ``memory`` list: ``{"name", "channels", "stride"}`` per
    memory tensor, in the order the model takes and returns them; empty for a
    law without memory.

    ``unet_convlstm``'s ConvLSTM runs at the bottleneck (H/4 x W/4) over
    4 * hidden channels, and keeps its hidden state and cell state.
    """
    if arch == "unet_convlstm":
        if hidden is None or hidden < 1:
            raise ValueError("unet_convlstm needs hidden channels (at least 1) to size its memory")
        return [{"name": "h_state", "channels": 4 * hidden, "stride": 4},
                {"name": "c_state", "channels": 4 * hidden, "stride": 4}]
    return []


def spec_for(arch: str) -> dict:
    """The model.json fields fixed by the architecture."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture `{arch}`: expected one of {', '.join(ARCHITECTURES)}")
    update, radius, multiple, has_hidden = ARCHITECTURES[arch]
    return {
        "update": update,
        "receptive_radius": radius,
        "spatial_multiple": multiple,
        "has_hidden": has_hidden,
        "recurrent": arch in RECURRENT,
    }


class Conv3x3(nn.Module):
    """One 3x3 convolution 2D -> 2D with bias."""

    def __init__(self, d_state: int):
        super().__init__()
        self.conv = nn.Conv2d(2 * d_state, 2 * d_state, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _cell_mlp(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    # Indices 0, 2, 4 are the convs: the names `net.0`, `net.2`, `net.4` are
    # part of the format, so the ELUs must stay at 1 and 3.
    return nn.Sequential(
        nn.Conv2d(c_in, hidden, 1),
        nn.ELU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ELU(),
        nn.Conv2d(hidden, c_out, 1),
    )


class Mlp(nn.Module):
    """Per-cell MLP as 1x1 convolutions 2D -> h -> h -> 2D."""

    def __init__(self, d_state: int, hidden: int):
        super().__init__()
        self.net = _cell_mlp(2 * d_state, hidden, 2 * d_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DeepQca(nn.Module):
    """A fixed neighbour-sum depthwise 3x3 conv, then a per-cell MLP."""

    def __init__(self, d_state: int, hidden: int):
        super().__init__()
        c = 2 * d_state
        self.conv_neighbors = nn.Conv2d(c, 8 * c, 3, padding=1, groups=c, bias=False)
        self.conv_neighbors.weight.requires_grad_(False)
        self.processing_net = _cell_mlp(8 * c, hidden, c)
        set_neighbor_kernel(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.processing_net(self.conv_neighbors(x))


def set_neighbor_kernel(model: DeepQca) -> None:
    """Sets deep_qca's fixed kernel: 1 on the 8 neighbours, 0 at the centre."""
    with torch.no_grad():
        w = model.conv_neighbors.weight
        w.fill_(1.0)
        w[:, :, 1, 1] = 0.0


def groups_for(c: int) -> int:
    """GroupNorm groups of the U-Net: c/8 above 8 channels, 1 when that does not divide c."""
    g = c // 8 if c > 8 else 1
    return g if c % g == 0 else 1


class ConvBlock(nn.Module):
    """(3x3 conv, GroupNorm, ELU) twice; convs without bias."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        g = groups_for(c_out)
        self.conv_block = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.GroupNorm(g, c_out, eps=1e-5),
            nn.ELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.GroupNorm(g, c_out, eps=1e-5),
            nn.ELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(x)


class RMSNorm2d(nn.Module):
    """Atheria's RMSNorm2d (src/models/rmsnorm.py): per sample and channel,
    x / sqrt(mean over H, W of x^2 + eps) * weight[c]; no mean subtracted, no bias."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = torch.sqrt(torch.mean(x * x, dim=(2, 3), keepdim=True) + self.eps)
        return x / rms * self.weight.view(1, -1, 1, 1)


class ConvBlockRMSNorm(nn.Module):
    """(3x3 conv without bias, RMSNorm2d, ELU) twice: Atheria's ConvBlockRMSNorm."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            RMSNorm2d(c_out),
            nn.ELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            RMSNorm2d(c_out),
            nn.ELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(x)


class UNet(nn.Module):
    """Two-level U-Net; the bottleneck runs at H/4 (there is no third pooling).

    ``block`` is the (conv, norm, ELU) x 2 block: ConvBlock (GroupNorm) for
    Atheria's UNet and UNetUnitary, ConvBlockRMSNorm for UNetUnitaryRMSNorm;
    the module names are the same either way.
    """

    def __init__(self, d_state: int, hidden: int, block=ConvBlock):
        super().__init__()
        c, d2 = hidden, 2 * d_state
        self.inc = block(d2, c)
        self.down1 = nn.Sequential(nn.MaxPool2d(2), block(c, 2 * c))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), block(2 * c, 4 * c))
        self.bot = block(4 * c, 8 * c)
        self.up1 = nn.ConvTranspose2d(8 * c, 4 * c, 2, stride=2)
        self.conv_up1 = block(6 * c, 4 * c)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.conv_up2 = block(3 * c, c)
        self.outc = nn.Conv2d(c, d2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        b = self.bot(x3)
        u = self.conv_up1(torch.cat([self.up1(b), x2], dim=1))
        u = self.conv_up2(torch.cat([self.up2(u), x1], dim=1))
        return self.outc(u)


class UNetUnitaryRMSNorm(UNet):
    """Atheria's UNetUnitaryRMSNorm: the U-Net with RMSNorm2d in place of
    GroupNorm (same names; each norm has a ``weight`` and no bias). An
    additive law despite its name (see ARCHITECTURES)."""

    def __init__(self, d_state: int, hidden: int):
        super().__init__(d_state, hidden, block=ConvBlockRMSNorm)


def convlstm_groups(c: int) -> int:
    """GroupNorm groups of Atheria's UNetConvLSTM ConvBlock
    (src/models/unet_convlstm.py): max(1, c // 8 if c > 8 else 1), and 1 when
    that does not divide c. The max(1, ..) never acts (c // 8 >= 1 above 8),
    so this is ``groups_for`` (tested for every c up to 1024)."""
    g = max(1, c // 8 if c > 8 else 1)
    return g if c % g == 0 else 1


class UNetConvLSTM(nn.Module):
    """Atheria's UNetConvLSTM: the U-Net with a ConvLSTM cell on the
    bottleneck input (H/4 x W/4, 4 * hidden channels), whose hidden and cell
    state are the law's memory.

    ``forward(x, h_state, c_state) -> (delta, h_state_next, c_state_next)``,
    every memory tensor 4-D [B, 4h, H/4, W/4] (Atheria's module takes and
    returns them as [1, B, 4h, H/4, W/4]; the leading 1 is dropped here, as in
    model.json's contract). Attributes are declared in Atheria's order so the
    state_dict lists its keys as a training checkpoint does.
    """

    #: The memory tensors, in the order forward takes and returns them.
    MEMORY = ("h_state", "c_state")

    def __init__(self, d_state: int, hidden: int):
        super().__init__()
        c, d2 = hidden, 2 * d_state
        self.inc = ConvBlock(d2, c)
        self.down1 = nn.Sequential(nn.MaxPool2d(2), ConvBlock(c, 2 * c))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), ConvBlock(2 * c, 4 * c))
        self.memory_channels = 4 * c
        # Gates from cat(x3, h): chunks forget, input, output, candidate.
        self.conv_gates = nn.Conv2d(4 * c + self.memory_channels, 4 * self.memory_channels, 3, padding=1)
        self.bot = ConvBlock(4 * c, 8 * c)
        self.up1 = nn.ConvTranspose2d(8 * c, 4 * c, 2, stride=2)
        self.conv_up1 = ConvBlock(6 * c, 4 * c)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.conv_up2 = ConvBlock(3 * c, c)
        self.outc = nn.Conv2d(c, d2, 1)

    def memory_shapes(self, batch: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """Shapes of h_state and c_state for a [batch, 2D, height, width] input."""
        shape = (batch, self.memory_channels, height // 4, width // 4)
        return [shape, shape]

    def forward(self, x: torch.Tensor, h_state: torch.Tensor, c_state: torch.Tensor):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        gates = self.conv_gates(torch.cat([x3, h_state], dim=1))
        f, i, o, g = torch.chunk(gates, 4, dim=1)
        c_next = torch.sigmoid(f) * c_state + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        b = self.bot(h_next)
        u = self.conv_up1(torch.cat([self.up1(b), x2], dim=1))
        u = self.conv_up2(torch.cat([self.up2(u), x1], dim=1))
        return self.outc(u), h_next, c_next


def is_recurrent(model: nn.Module) -> bool:
    """True for a module that takes and returns memory (UNetConvLSTM)."""
    return hasattr(model, "memory_shapes")


def build_model(arch: str, d_state: int, hidden: int | None = None) -> nn.Module:
    """The reference module for ``arch`` (in eval mode, f32, on the CPU)."""
    if d_state < 1:
        raise ValueError(f"d_state must be at least 1, got {d_state}")
    spec = spec_for(arch)
    if spec["has_hidden"]:
        if hidden is None or hidden < 1:
            raise ValueError(f"architecture {arch} needs --hidden (at least 1)")
    if arch == "conv3x3":
        model = Conv3x3(d_state)
    elif arch == "mlp":
        model = Mlp(d_state, hidden)
    elif arch == "deep_qca":
        model = DeepQca(d_state, hidden)
    elif arch == "unet_convlstm":
        model = UNetConvLSTM(d_state, hidden)
    elif arch == "unet_unitary_rmsnorm":
        model = UNetUnitaryRMSNorm(d_state, hidden)
    else:
        model = UNet(d_state, hidden)
    return model.float().eval()


def last_layer(model: nn.Module) -> nn.Module:
    """The layer whose output is the delta (the one whose scale matters)."""
    if isinstance(model, Conv3x3):
        return model.conv
    if isinstance(model, Mlp):
        return model.net[4]
    if isinstance(model, DeepQca):
        return model.processing_net[4]
    return model.outc


#: Std of the last layer's weights under ``init="random"``: large enough that
#: the deltas are far from zero (a near-zero delta would let a wrong update
#: rule pass a comparison).
LAST_LAYER_STD = 0.2

#: The U-Nets' last layer (``outc``, a 1x1 conv over ``hidden`` O(1) ELU
#: activations) at std 0.2 gives |delta| ~ 1 per step, and the unitary rule
#: (delta * psi) is then chaotic: in float64 a 1e-7 change of the initial
#: state grew to 3.3e-4 after 10 steps (about 2.2x per step; D 8, hidden 32,
#: 128 x 128, gamma 0.01), and PyTorch in float32 ended 2.5e-3 from float64,
#: so no float32 engine could match PyTorch within 1e-3. At std 0.05 float32
#: ends 4.6e-5 from float64 (0.1: 2.0e-4) and the state still moves by ~2.0
#: in those 10 steps. ``--last-std 0.2`` still makes the chaotic law.
UNET_LAST_LAYER_STD = 0.05


def default_last_std(arch: str) -> float:
    """The last layer's std under ``init="random"`` when none is asked for."""
    return UNET_LAST_LAYER_STD if arch in UNETS else LAST_LAYER_STD


@torch.no_grad()
def init_weights(model: nn.Module, arch: str, seed: int, init: str = "random", zero_bias: bool = False,
                 last_std: float | None = None) -> nn.Module:
    """Deterministic weights for tests and benchmarks.

    ``random``: every tensor drawn from a seeded generator; the last layer's
    weights have std ``last_std`` (default: ``default_last_std(arch)``, 0.2,
    or 0.05 for the U-Nets: see ``UNET_LAST_LAYER_STD``). The draws do not
    depend on the std, so only the last layer's weights change with it.
    GroupNorm affine parameters are perturbed around (1, 0) so a swapped
    weight/bias would show; RMSNorm2d weights around 1 (std 0.1) so a
    backend that ignores them would show.
    ``identity`` (conv3x3 only): weight[c, c, 1, 1] = 1, bias 0, so the additive
    rule gives psi' = 2 psi, which normalises back to psi.
    """
    if init == "identity":
        if last_std is not None:
            raise ValueError("--last-std sets random weights: it does not apply to --init identity")
        if arch != "conv3x3":
            raise ValueError(f"--init identity is only defined for conv3x3, not {arch}")
        w = model.conv.weight
        w.zero_()
        for c in range(w.shape[0]):
            w[c, c, 1, 1] = 1.0
        model.conv.bias.zero_()
        return model
    if init != "random":
        raise ValueError(f"unknown init `{init}`: use random or identity")
    if last_std is None:
        last_std = default_last_std(arch)
    if not last_std > 0:
        raise ValueError(f"the last layer's std must be > 0, got {last_std}")

    gen = torch.Generator().manual_seed(seed)
    last = last_layer(model)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if module is last:
                std = last_std
            else:
                # He-like scale keeps activations O(1) through the stack.
                fan_in = module.weight[0].numel() if isinstance(module, nn.Conv2d) else module.weight.shape[0]
                std = (2.0 / max(fan_in, 1)) ** 0.5
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
        elif isinstance(module, nn.GroupNorm):
            module.weight.copy_(1.0 + 0.1 * torch.randn(module.weight.shape, generator=gen))
            module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
        elif isinstance(module, RMSNorm2d):
            module.weight.copy_(1.0 + 0.1 * torch.randn(module.weight.shape, generator=gen))
    if isinstance(model, DeepQca):
        set_neighbor_kernel(model)
    if zero_bias:
        for name, p in model.named_parameters():
            if name.endswith("bias") and not _is_norm_param(model, name):
                p.zero_()
    return model


def _is_norm_param(model: nn.Module, name: str) -> bool:
    owner = model.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(owner, nn.GroupNorm)
