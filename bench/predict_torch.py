"""The PyTorch baseline of the prediction section of `npm run bench` (bench/predict.py runs it).

Classifies every image under ROOT (a folder of class folders, torchvision's ImageFolder layout)
with a softmax-regression model, a batch at a time, and writes the rows `imgclf predict
--results-file` writes: path,label,probability,top1_label,top1_probability,...,error.

The model is one linear layer on the flattened pixels, as imgclf's `softmax`. With --run it
takes that run's own weights (model.json's weightsManifest over weights.bin: the Dense kernel
[H*W*C, classes] and bias) and class names, so its labels can be compared with imgclf's; without
--run it uses random weights of the same shape (only the speed is then meaningful).

Pixels are laid out as imgclf lays them out (height, width, channels, scaled to [0, 1]) before
the flatten, so a run's kernel applies unchanged. Prints one JSON line: images, seconds of the
prediction loop, first-batch seconds.

    /usr/bin/python3 bench/predict_torch.py ROOT OUT.csv --size 28 --channels 1 --run RUN
"""

import argparse
import csv
import json
import os
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def run_weights(run_dir):
    """The Dense kernel and bias of an imgclf softmax run, and its class names."""
    with open(os.path.join(run_dir, "model.json")) as f:
        model = json.load(f)
    with open(os.path.join(run_dir, "metadata.json")) as f:
        classes = json.load(f)["classNames"]
    tensors = []
    for group in model["weightsManifest"]:
        blob = b"".join(open(os.path.join(run_dir, p), "rb").read() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            n = 1
            for d in w["shape"]:
                n *= d
            t = torch.frombuffer(bytearray(blob[offset : offset + 4 * n]), dtype=torch.float32)
            tensors.append(t.reshape(w["shape"]))
            offset += 4 * n
    kernel = next(t for t in tensors if t.dim() == 2)
    bias = next(t for t in tensors if t.dim() == 1)
    return kernel, bias, classes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--run")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    start = time.perf_counter()
    steps = [transforms.Resize((a.size, a.size))]
    if a.channels == 1:
        steps.append(transforms.Grayscale(1))
    else:
        steps.append(transforms.Lambda(lambda im: im.convert("RGB")))
    steps.append(transforms.ToTensor())
    data = datasets.ImageFolder(a.root, transform=transforms.Compose(steps))
    loader = DataLoader(data, batch_size=a.batch_size, shuffle=False, num_workers=a.workers)

    inputs = a.size * a.size * a.channels
    if a.run:
        kernel, bias, names = run_weights(a.run)
    else:
        g = torch.Generator().manual_seed(0)
        kernel = torch.randn(inputs, a.classes, generator=g) * 0.01
        bias = torch.zeros(a.classes)
        names = [str(i) for i in range(a.classes)]
    linear = torch.nn.Linear(inputs, len(names))
    with torch.no_grad():
        linear.weight.copy_(kernel.t())
        linear.bias.copy_(bias)
    linear.eval()
    k = min(a.top_k, len(names))

    header = ["path", "label", "probability"]
    for i in range(1, k + 1):
        header += [f"top{i}_label", f"top{i}_probability"]
    header.append("error")
    done = 0
    first = None
    with open(a.out, "w", newline="") as f, torch.no_grad():
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for x, _ in loader:
            # NCHW to imgclf's NHWC order, so the run's kernel rows line up.
            flat = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            probs = torch.softmax(linear(flat), dim=1)
            top_p, top_i = probs.topk(k, dim=1)
            for j in range(x.shape[0]):
                path = data.samples[done + j][0]
                ps = top_p[j].tolist()
                ix = top_i[j].tolist()
                row = [path, names[ix[0]], round(ps[0], 6)]
                for p, i in zip(ps, ix):
                    row += [names[i], round(p, 6)]
                row.append("")
                w.writerow(row)
            done += x.shape[0]
            f.flush()
            if first is None:
                first = time.perf_counter() - start
    seconds = time.perf_counter() - start
    print(json.dumps({"images": done, "seconds": seconds, "first_batch_seconds": first}))


if __name__ == "__main__":
    main()
