"""Base-classifier architectures, laid out like Cohen et al.'s released checkpoints.

Every model is ``nn.Sequential(NormalizeLayer(means, sds), net)``: inputs are
images in [0, 1], where the smoothing noise is added, and the first layer
normalizes. State-dict keys therefore start with ``1.`` (e.g.
``1.layer2.0.downsample.0.weight``), as in the released ``checkpoint.pth.tar`` files.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


class NormalizeLayer(nn.Module):
    """(x − mean) / sd per channel. Means and sds are non-persistent buffers:
    they follow ``.to(device)`` but are not in the state dict (as in Cohen et al.)."""

    def __init__(self, means: Sequence[float], sds: Sequence[float]) -> None:
        super().__init__()
        if len(means) != len(sds) or any(s <= 0 for s in sds):
            raise ValueError(f"sds: need one positive sd per mean, got means={means}, sds={sds}")
        self.register_buffer("means", torch.tensor(means).view(-1, 1, 1), persistent=False)
        self.register_buffer("sds", torch.tensor(sds).view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.means) / self.sds


class BasicBlock(nn.Module):
    """He et al.'s two-conv residual block; 1×1 conv + BN projection when the shape changes."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2 (widths 16/32/64, 8×8 average pool, ``fc``)."""

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth: must be 6n+2 with n >= 1 (20, 56, 110, …), got {depth}")
        blocks = (depth - 2) // 6
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, blocks, 1)
        self.layer2 = self._make_layer(32, blocks, 2)
        self.layer3 = self._make_layer(64, blocks, 2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(self.inplanes, planes, stride)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet20(num_classes: int = 10) -> nn.Sequential:
    """ResNet-20 for 32×32 RGB inputs in [0, 1], with CIFAR-10 normalization in front."""
    return nn.Sequential(NormalizeLayer(CIFAR10_MEAN, CIFAR10_STD), CifarResNet(20, num_classes))


def cifar_resnet110(num_classes: int = 10) -> nn.Sequential:
    """ResNet-110 (Cohen et al.'s CIFAR-10 base classifier), CIFAR-10 normalization in front."""
    return nn.Sequential(NormalizeLayer(CIFAR10_MEAN, CIFAR10_STD), CifarResNet(110, num_classes))


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


class MnistCNN(nn.Module):
    """Small CNN for 28×28 grey digits: two strided convolutions and two linear layers.

    Chosen for certified accuracy per CPU-second: about 10× the samples/s of
    the classic two-conv-plus-pool MNIST net on 2 CPU cores (strided
    convolutions instead of pooling halve the work of each layer).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(inplace=True), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CifarCNN(nn.Module):
    """Small VGG-style CNN for 32×32 RGB (three conv–BN–ReLU–pool stages, two linear layers)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2)]

        self.features = nn.Sequential(*stage(3, 32), *stage(32, 64), *stage(64, 128))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(inplace=True), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DataParallelKeys(nn.Module):
    """Holds a module under ``.module`` so state-dict keys match files saved from ``nn.DataParallel``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def mnist_cnn(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(NormalizeLayer(MNIST_MEAN, MNIST_STD), MnistCNN(num_classes))


def cifar_cnn(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(NormalizeLayer(CIFAR10_MEAN, CIFAR10_STD), CifarCNN(num_classes))


def resnet50(num_classes: int = 1000) -> nn.Sequential:
    """torchvision's ResNet-50 (random weights, nothing downloaded) with keys ``1.module.…`` as released."""
    from torchvision.models import resnet50 as tv_resnet50

    return nn.Sequential(NormalizeLayer(IMAGENET_MEAN, IMAGENET_STD),
                         DataParallelKeys(tv_resnet50(weights=None, num_classes=num_classes)))


class DnCNN(nn.Module):
    """Residual denoiser: D(x) = x − body(x), body = conv–ReLU, (conv–ReLU) × (depth − 2), conv; ``channels`` in
    and out. Works on [B, C, H, W] images of any size (all convolutions keep H × W)."""

    def __init__(self, channels: int, depth: int = 6, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)  # start as the identity: D(x) = x
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


def dncnn_mnist(num_classes: int = 10) -> nn.Module:  # num_classes: the registry's signature; unused
    return DnCNN(1, depth=6, width=32)


def dncnn_cifar(num_classes: int = 10) -> nn.Module:
    # As small as the MNIST one: on a CPU, D's forward pass is most of CERTIFY's cost (bench_denoise).
    return DnCNN(3, depth=6, width=32)


class RouteByConfidence(nn.Module):
    """The routing rule of :class:`ConfidenceRouter`: ``weight[i, 0]`` is the least confidence that routes to
    noise level i or above (``weight[0, 0]`` = 0). Its ``weight`` is what makes the file's last 2-D tensor
    [m, 1], so a checkpoint of a router reports m classes (the noise levels) like any σ-estimator."""

    def __init__(self, num_levels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_levels, 1), requires_grad=False)

    def forward(self, confidence: torch.Tensor) -> torch.Tensor:
        # Level = (number of thresholds reached) − 1; weight[0] = 0 is always reached. Any deterministic rule is a
        # valid base classifier for stage 1 of dual RS; monotone thresholds make it "more confident → larger σ".
        level = (confidence[:, None] >= self.weight[None, :, 0]).sum(1) - 1
        return torch.nn.functional.one_hot(level.clamp_min(0), self.weight.shape[0]).to(confidence.dtype)


class ConfidenceRouter(nn.Module):
    """A σ-estimator that reads an expert's own output: the top softmax probability of ``expert`` (the largest
    σ's base classifier) on the noisy input, thresholded into one of m noise levels (one-hot scores).

    Smoothed at σ_e like any σ-estimator (dual RS stage 1), it votes for a larger σ where the expert is
    confident under noise. It has no trained weights of its own: the thresholds are chosen on training data
    (``rs_core.dual.router.fit_router``).
    """

    def __init__(self, expert: nn.Module, num_levels: int) -> None:
        super().__init__()
        self.expert = expert
        self.route = RouteByConfidence(num_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        confidence = torch.softmax(self.expert(x).float(), dim=1).amax(1)
        return self.route(confidence)


def router_mnist_cnn(num_classes: int = 3) -> nn.Module:  # num_classes: the number of noise levels routed to
    return ConfidenceRouter(mnist_cnn(10), num_classes)


def router_cifar_cnn(num_classes: int = 3) -> nn.Module:
    return ConfidenceRouter(cifar_cnn(10), num_classes)


ARCHITECTURES = {
    "mnist_cnn": (mnist_cnn, (1, 28, 28)),
    "cifar_cnn": (cifar_cnn, (3, 32, 32)),
    "cifar_resnet20": (cifar_resnet20, (3, 32, 32)),
    "cifar_resnet110": (cifar_resnet110, (3, 32, 32)),
    "resnet50": (resnet50, (3, 224, 224)),
    # Denoisers for denoised smoothing (rs_core.models.denoisers), stored in the same checkpoint layout.
    "dncnn_mnist": (dncnn_mnist, (1, 28, 28)),
    "dncnn_cifar": (dncnn_cifar, (3, 32, 32)),
    # σ-estimators of dual RS that route by an expert's confidence (rs_core.dual.router); "router_<expert's arch>".
    "router_mnist_cnn": (router_mnist_cnn, (1, 28, 28)),
    "router_cifar_cnn": (router_cifar_cnn, (3, 32, 32)),
}
ROUTERS = frozenset({"router_mnist_cnn", "router_cifar_cnn"})
DENOISERS = frozenset({"dncnn_mnist", "dncnn_cifar"})

# Architectures whose global pooling takes any input size (the others fix H×W through a Linear layer).
ANY_INPUT_SIZE = frozenset({"resnet50"})


def get_architecture(arch: str, num_classes: int = 10) -> nn.Sequential:
    """A freshly initialized model by name (the ``arch`` field of a checkpoint)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch][0](num_classes)
