"""Benchmark 3: one training epoch of ResNet-20 — our pipeline vs the write-ups' style.

Data: Fashion-MNIST, 1x28x28 (CIFAR-10 is not available offline here), the same seeded subset of
``train_images`` images on both sides, with CIFAR's augmentation (random crop after 4-pixel
padding, horizontal flip) and ResNet-20 (skip + BN, 3 stages of 16/32/64 channels) on 1-channel
inputs. Both sides: momentum SGD, cross-entropy, ``loss.item()`` and the accuracy count every
step (what both training loops log), fresh model (seed 0) per measured epoch, drop_last.

* ours: the loop of ``landscape.train``: the images are one in-memory normalised tensor,
  ``landscape.data.Batches`` shuffles and augments whole batches (crop and flip by indexing), the
  model and inputs are channels-last.
* theirs: ``torchvision.datasets.FashionMNIST`` + ``DataLoader(shuffle=True)`` with per-sample
  PIL transforms ``RandomCrop(28, padding=4), RandomHorizontalFlip(), ToTensor(),
  Normalize(mean, std)``, contiguous (NCHW) model, ``num_workers`` 0 and 2.

Equal accuracy cannot be tested in one short epoch; instead both sides' inputs and loss are
compared on a fixed batch without augmentation (same model weights).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

import landscape as ls
from landscape.data import DATASET_INFO, Batches, Data, data_root

from .common import RESNET_OPTIONS, Row, interleave, med, spread, timed

LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4


def _model(channels_last: bool):
    torch.manual_seed(0)
    m = ls.build_model("resnet", RESNET_OPTIONS, (1, 28, 28))
    return m.to(memory_format=torch.channels_last) if channels_last else m


def _step(model, opt, x, y) -> tuple[float, int]:
    opt.zero_grad(set_to_none=True)
    out = model(x)
    loss = F.cross_entropy(out, y)
    loss.backward()
    opt.step()
    return loss.item(), int((out.argmax(1) == y).sum().item())


def ours_epoch(data, batch: int, epoch: int) -> float:
    model = _model(True).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    batches = Batches(data, batch, shuffle=True, seed=0, augment=True, drop_last=True)
    batches.set_epoch(epoch)

    def go():
        for x, y in batches:
            _step(model, opt, x.contiguous(memory_format=torch.channels_last), y)
    return timed(go)[1]


def their_epoch(dataset, batch: int, workers: int, epoch: int) -> float:
    from torch.utils.data import DataLoader

    model = _model(False).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    g = torch.Generator().manual_seed(epoch)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True, generator=g)

    def go():  # the DataLoader's worker start-up is part of its epoch, as in the write-ups
        for x, y in loader:
            _step(model, opt, x, y)
    return timed(go)[1]


def _torchvision_subset(root, n: int, train_tf: bool):
    from torchvision import datasets, transforms

    _, _, mean, std, _ = DATASET_INFO["fashion_mnist"]
    tfs = [transforms.RandomCrop(28, padding=4), transforms.RandomHorizontalFlip()] if train_tf else []
    tf = transforms.Compose(tfs + [transforms.ToTensor(), transforms.Normalize(mean, std)])
    ds = datasets.FashionMNIST(str(data_root(root)), train=True, download=False, transform=tf)
    g = torch.Generator().manual_seed(0)  # the indices landscape.subset(data, n, seed=0) takes
    idx = torch.randperm(len(ds), generator=g)[:n].sort().values
    return Subset(ds, idx.tolist())


def same_loss_check(data, root, k: int = 128) -> dict:
    """Both pipelines' inputs and loss on the first ``k`` images, no augmentation, same weights."""
    plain = _torchvision_subset(root, len(data), train_tf=False)
    k = min(k, len(data))
    xs = torch.stack([plain[i][0] for i in range(k)])
    ys = torch.tensor([plain[i][1] for i in range(k)])
    model = _model(False).eval()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    with torch.no_grad():
        theirs = F.cross_entropy(model(xs), ys).item()
        ours = F.cross_entropy(model_cl(data.x[:k].contiguous(memory_format=torch.channels_last)),
                               data.y[:k]).item()
    return {"images": k, "labels_equal": bool(torch.equal(ys, data.y[:k])),
            "max_abs_input_diff": float((xs - data.x[:k]).abs().max()),
            "loss_ours": ours, "loss_theirs": theirs, "abs_loss_diff": abs(ours - theirs)}


def run(budget, root, log) -> tuple[list[Row], dict]:
    n = budget.train_images
    data = ls.subset(ls.load_data("fashion_mnist", train=True, root=root), n, seed=0)
    dataset = _torchvision_subset(root, n, train_tf=True)
    check = same_loss_check(data, root)
    log(f"[training] {n} images; same-batch check: loss diff {check['abs_loss_diff']:.2e}, "
        f"input diff {check['max_abs_input_diff']:.2e}")
    rows, configs = [], {}
    for batch in budget.train_batches:
        sides = {"ours": lambda r, b=batch: ours_epoch(data, b, r)}
        for w in budget.train_workers:
            sides[f"DataLoader, num_workers={w}"] = lambda r, b=batch, w=w: their_epoch(dataset, b, w, r)
        # warm-up on two batches (allocator, oneDNN primitive caches) for both layouts
        ours_epoch(Data(data.name, data.x[:2 * batch], data.y[:2 * batch]), batch, 99)
        their_epoch(Subset(dataset, range(min(2 * batch, n))), batch, 0, 99)
        res = interleave(sides, budget.repeats, log, f"training batch {batch}")
        t_ours = res.pop("ours")
        best = [min(ts) for ts in zip(*res.values())]  # the faster write-up setting, per repeat
        configs[batch] = {"ours_s": t_ours, **{k: v for k, v in res.items()},
                          "ratios": {k: spread([t / o for t, o in zip(v, t_ours)])
                                     for k, v in res.items()}}
        theirs_txt = ", ".join(f"workers={k.split('=')[-1]}: {med(v):.1f} s" for k, v in res.items())
        rows.append(Row(
            benchmark="3 training",
            case=f"ResNet-20 epoch, {n:,} Fashion-MNIST images (1x28x28), batch {batch}",
            ours=f"in-memory tensors, batched augmentation, channels_last: {med(t_ours):.1f} s",
            baseline=f"torchvision Dataset + DataLoader, per-sample PIL transforms ({theirs_txt})",
            ratio_def="speed-up (faster DataLoader setting s / our s)",
            ratio=spread([b / o for b, o in zip(best, t_ours)]),
            target=">= 3",
            note=f"same fixed batch without augmentation: |loss difference| = "
                 f"{check['abs_loss_diff']:.1e}",
        ).judge())
    return rows, {"images": n, "same_batch_check": check, "per_batch": configs}
