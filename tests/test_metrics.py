"""Cost metrics: parameter and MAC counts by hand, uncounted ops reported, activation liveness."""

from __future__ import annotations

from torch import nn

from hwnas.metrics import arch_cost, count_macs, count_params, mbconv_work, peak_activation_bytes
from hwnas.spaces import Block, get_space


def test_mbconv_params_match_hand_computation():
    space = get_space("mobile:mnist")
    # k3_e6, 16 -> 16: expand 16*96, BN 2*96, depthwise 96*3*3, BN 2*96, project 96*16, BN 2*16.
    block = Block("mbconv", 16, 16, (28, 28), stride=1, kernel=3, expansion=6, groups=1)
    assert count_params(space.build_block(block)) == 16 * 96 + 192 + 96 * 9 + 192 + 96 * 16 + 32
    # k5_e3_g2, 24 -> 32 stride 2: grouped 1x1 convs halve their weights.
    block = Block("mbconv", 24, 32, (14, 14), stride=2, kernel=5, expansion=3, groups=2)
    assert count_params(space.build_block(block)) == 24 * 72 // 2 + 144 + 72 * 25 + 144 + 72 * 32 // 2 + 64
    # k3_e1: no expansion conv at all.
    block = Block("mbconv", 16, 16, (28, 28), kernel=3, expansion=1)
    assert count_params(space.build_block(block)) == 16 * 9 + 32 + 16 * 16 + 32


def test_analytic_mbconv_macs_agree_with_fvcore_on_the_built_blocks():
    for spec in ("mobile:mnist", "mobile:cifar"):
        space = get_space(spec)
        for seed in range(4):
            arch = space.sample(seed)
            mbconvs = [b for b in space.blocks(arch) if b.kind == "mbconv"]
            work = mbconv_work(arch)
            traced = sum(count_macs(space.build_block(b), b.input_shape).macs for b in mbconvs)
            assert work.pointwise_macs + work.depthwise_macs == traced and work.blocks == len(mbconvs)
    space = get_space("mobile:mnist")  # k3 -> k5 in layer 0 (96 hidden channels at 28x28) adds depthwise work only
    k3, k5 = (mbconv_work(space.parse(f"k{k}_e6-k3_e3-k3_e3-k3_e3-k3_e3-k3_e3-k3_e3")) for k in (3, 5))
    assert k3.pointwise_macs == k5.pointwise_macs and k3.activation_elems == k5.activation_elems
    assert k5.depthwise_macs - k3.depthwise_macs == 28 * 28 * 96 * (25 - 9)


def test_nb201_op_params_and_macs_match_hand_computation():
    space = get_space("nb201")
    conv = space.build_block(Block("nor_conv_3x3", 16, 16, (32, 32), kernel=3))
    assert count_params(conv) == 16 * 16 * 9 + 2 * 16
    counts = count_macs(conv, (16, 32, 32))
    assert counts.macs == 16 * 16 * 9 * 32 * 32
    assert "batch_norm" in counts.other_macs  # counted by fvcore, kept out of MACs, still reported
    pool = space.build_block(Block("avg_pool_3x3", 16, 16, (32, 32), kernel=3))
    pool_counts = count_macs(pool, (16, 32, 32))
    assert pool_counts.macs == 0
    assert pool_counts.uncounted_ops == {"aten::avg_pool2d": 1}  # never a silent zero


def test_arch_cost_orders_and_reports_uncounted_ops():
    space = get_space("nb201")
    heavy = arch_cost(space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"))
    light = arch_cost(space.parse("|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|"))
    assert heavy.params > light.params and heavy.macs > light.macs
    # 6 convs/cell x 5 cells x 3 stages: 3x3 vs 1x1 differ by 9x in cell MACs only.
    cell_3x3 = 6 * 5 * sum(16 * 2**s * 16 * 2**s * 9 * (32 // 2**s) ** 2 for s in range(3))
    cell_1x1 = cell_3x3 // 9
    assert heavy.macs - light.macs == cell_3x3 - cell_1x1
    assert heavy.uncounted_ops.get("aten::add", 0) > 0


def test_peak_activation_bytes_by_hand():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    # input 1x8x8 (256 B) + conv out 4x8x8 (1024 B) live together; then relu out (1024) + conv out
    # (1024) while the input is already freed: peak = 2048 bytes.
    assert peak_activation_bytes(model, (1, 8, 8)) == 2048
    assert peak_activation_bytes(model, (1, 8, 8), batch_size=3) == 3 * 2048


def test_residual_keeps_input_alive():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 1)
            self.b = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return x + self.b(self.a(x))

    # x (128 B) stays live until the add: x + a(x) + b(a(x)) = 384 B at the peak.
    assert peak_activation_bytes(Res(), (2, 4, 4)) == 3 * 2 * 4 * 4 * 4


def test_activation_bytes_grow_with_expansion():
    space = get_space("mobile:mnist")
    small = space.make(["k3_e1"] + ["k3_e1"] * 6)
    big = space.make(["k3_e6"] + ["k3_e6"] * 6)
    assert arch_cost(big).activation_bytes > arch_cost(small).activation_bytes
