"""The seed's softmax regression in PyTorch with the whole dataset held as one tensor.

Same model, initialization, loss, optimizer (SGD lr 0.1), batch size (256) and shuffling per
epoch as ../shared/reference/seed_reference.py, but without torchvision's DataLoader: each batch
is an index into in-memory tensors. This is the "PyTorch in-memory" row of BENCHMARKS.md.

    /usr/bin/python3 bench/torch_inmemory.py [EPOCHS] [--json]
"""
import gzip
import json
import os
import resource
import sys
import time

import numpy as np
import torch
from torch import nn

SOURCE = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx(name, offset):
    with gzip.open(os.path.join(SOURCE, name + ".gz")) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    epochs = int(args[0]) if args else 10
    torch.manual_seed(0)
    x_train = torch.from_numpy(read_idx("train-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255)
    y_train = torch.from_numpy(read_idx("train-labels-idx1-ubyte", 8).astype(np.int64))
    x_test = torch.from_numpy(read_idx("t10k-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255)
    y_test = torch.from_numpy(read_idx("t10k-labels-idx1-ubyte", 8).astype(np.int64))
    net = nn.Sequential(nn.Linear(784, 10))
    nn.init.normal_(net[0].weight, std=0.01)
    nn.init.zeros_(net[0].bias)
    loss = nn.CrossEntropyLoss(reduction="none")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    n = x_train.shape[0]
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss_sum = torch.zeros(())
        correct = torch.zeros(())
        order = torch.randperm(n)
        for i in range(0, n, 256):
            idx = order[i:i + 256]
            X, y = x_train[idx], y_train[idx]
            y_hat = net(X)
            l = loss(y_hat, y)
            optimizer.zero_grad()
            l.mean().backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += l.sum()
                correct += (y_hat.argmax(1) == y).sum()
        seconds = time.perf_counter() - start
        with torch.no_grad():
            test_acc = float((net(x_test).argmax(1) == y_test).float().mean())
        row = dict(epoch=epoch, train_loss=float(loss_sum) / n, train_accuracy=float(correct) / n,
                   test_accuracy=test_acc, seconds=seconds)
        history.append(row)
        print(f"epoch {epoch} loss {row['train_loss']:.4f} train acc {row['train_accuracy']:.4f} "
              f"test acc {test_acc:.4f} train seconds {seconds:.2f}", flush=True)
    if "--json" in sys.argv:
        print(json.dumps(dict(model="pytorch-inmemory", epochs=history, test_accuracy=history[-1]["test_accuracy"],
                              maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))


if __name__ == "__main__":
    main()
