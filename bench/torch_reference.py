"""PyTorch references for the benchmarks: a VGG16 LPIPS of torchvision's layer layout (random weights:
NVIDIA's vgg16.pt cannot be downloaded here, and torchvision must stay out of this environment; the
cost is the same) and one step of NVIDIA's projector (stylegan2-ada-pytorch `projector.py`, its loop
body line by line) around NVIDIA's own Generator, imported from a checkout given by the caller.

Only the benchmarks import this module (torch is a test dependency, not a dependency of the package).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

# VGG16's convolutions (torchvision's `vgg16().features`): channels per conv, 'M' = 2x2 max pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (1, 3, 6, 9, 12)  # the convs whose ReLU outputs LPIPS compares: conv1_2, 2_2, 3_3, 4_3, 5_3


class TorchLPIPS(torch.nn.Module):
    """LPIPS (v0.1 structure) over a random-weight VGG16: `features(x)` is one flat vector per image
    whose squared distance is the LPIPS distance (what NVIDIA's `vgg16(x, return_lpips=True)` returns),
    `forward(x, y)` the distance. x in [0, 255] (NVIDIA's convention) when `scale_255`, else [-1, 1]."""

    def __init__(self, seed: int = 0, scale_255: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        convs, c = [], 3
        for v in VGG16_LAYOUT:
            if v == "M":
                continue
            conv = torch.nn.Conv2d(c, v, 3, padding=1)
            with torch.no_grad():
                conv.weight.normal_(0, (2.0 / (9 * c)) ** 0.5, generator=g)
                conv.bias.zero_()
            convs.append(conv)
            c = v
        self.convs = torch.nn.ModuleList(convs)
        self.lins = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.rand(1, convs[i].out_channels, 1, 1, generator=g)) for i in LPIPS_TAPS])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.scale_255 = scale_255
        self.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_255:
            x = x / 127.5 - 1
        x = (x - self.shift) / self.scale
        out, i = [], 0
        for v in VGG16_LAYOUT:
            if v == "M":
                x = F.max_pool2d(x, 2)
                continue
            x = F.relu(self.convs[i](x))
            if i in LPIPS_TAPS:
                f = x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10)
                lin = self.lins[LPIPS_TAPS.index(i)]
                out.append((f * lin.sqrt() / (f.shape[2] * f.shape[3]) ** 0.5).flatten(1))
            i += 1
        return torch.cat(out, 1)

    def forward(self, x, y):
        return (self.features(x) - self.features(y)).square().sum(1)


def import_nvidia(path: str):
    """NVIDIA's `training.networks` module from a stylegan2-ada-pytorch checkout (the user's)."""
    sys.path.insert(0, os.path.abspath(os.path.expanduser(path)))
    from training import networks  # noqa: E402  (NVIDIA's code, never copied into this project)
    return networks


class NvidiaProjectorStep:
    """One step of NVIDIA's projector (projector.py's loop body): w + decaying noise repeated over the
    layers (W space), synthesis with the optimised noise buffers, LPIPS features of the (area-resized
    to 256) image against the target's, the noise autocorrelation regulariser x 1e5, backward, Adam over
    w and the noise buffers, noise renormalisation. Random weights; float32 (force_fp32), 2 threads."""

    def __init__(self, networks, kwargs: dict, threads: int, num_steps: int = 1000, seed: int = 0):
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.G = G = networks.Generator(**kwargs).eval().requires_grad_(False)
        self.vgg = TorchLPIPS(seed)
        z = torch.from_numpy(np.random.RandomState(123).randn(1000, G.z_dim)).float()
        w = G.mapping(z, None)[:, :1, :].numpy()
        self.w_avg = np.mean(w, axis=0, keepdims=True)
        self.w_std = float((np.sum((w - self.w_avg) ** 2) / 1000) ** 0.5)
        target = torch.rand(1, 3, G.img_resolution, G.img_resolution) * 255
        if target.shape[2] > 256:
            target = F.interpolate(target, size=(256, 256), mode="area")
        self.target_features = self.vgg.features(target)
        self.noise_bufs = {n: b for n, b in G.synthesis.named_buffers() if "noise_const" in n}
        self.w_opt = torch.tensor(self.w_avg, requires_grad=True)
        for b in self.noise_bufs.values():
            b[:] = torch.randn_like(b)
            b.requires_grad = True
        self.opt = torch.optim.Adam([self.w_opt] + list(self.noise_bufs.values()), betas=(0.9, 0.999), lr=0.1)
        self.num_steps, self.step_index = num_steps, 0

    def __call__(self) -> float:
        t = (self.step_index % self.num_steps) / self.num_steps
        self.step_index += 1
        w_noise_scale = self.w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
        lr_ramp = min(1.0, (1.0 - t) / 0.25)
        lr_ramp = 0.5 - 0.5 * np.cos(lr_ramp * np.pi)
        lr_ramp = lr_ramp * min(1.0, t / 0.05)
        for group in self.opt.param_groups:
            group["lr"] = 0.1 * lr_ramp
        w_noise = torch.randn_like(self.w_opt) * w_noise_scale
        ws = (self.w_opt + w_noise).repeat([1, self.G.mapping.num_ws, 1])
        synth = self.G.synthesis(ws, noise_mode="const", force_fp32=True)
        synth = (synth + 1) * (255 / 2)
        if synth.shape[2] > 256:
            synth = F.interpolate(synth, size=(256, 256), mode="area")
        dist = (self.target_features - self.vgg.features(synth)).square().sum()
        reg = 0.0
        for v in self.noise_bufs.values():
            noise = v[None, None, :, :]
            while True:
                reg += (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
                reg += (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
                if noise.shape[2] <= 8:
                    break
                noise = F.avg_pool2d(noise, kernel_size=2)
        loss = dist + reg * 1e5
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            for buf in self.noise_bufs.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
        return float(loss)
