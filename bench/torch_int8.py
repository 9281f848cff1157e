#!/usr/bin/python3
"""PyTorch's static int8 for the reference models, the peer of bench/fashion.lua's "lunet-int8" line.

../shared/bench/torch_peer.py prints PyTorch's dynamic int8 figures for the MLP only; this
script quantizes both reference models statically, as lunet.quantize does: trained for the
same epochs with the same loop (torch_peer's own functions), calibrated on the first 512
training images with the engine's default qconfig, Conv/Linear + ReLU fused.  One JSON line
per engine, with torch_peer's keys.  Run from the repository root:

    /usr/bin/python3 bench/torch_int8.py [--model mlp|cnn] [--epochs N] [--threads T] [--seed S]
"""
import argparse, copy, json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench"))
import torch
import torch.nn as nn
from torch_peer import load, build, accuracy, latency


def train(model, xtr, ytr, epochs, seed):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 64):
            b = perm[i:i + 64]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xtr[b]), ytr[b]).backward()
            opt.step()
    return model.eval()


def fusable(model):
    """[Conv2d|Linear, ReLU] index pairs of the Sequential, for fuse_modules."""
    layers = list(model)
    return [[str(i), str(i + 1)] for i in range(len(layers) - 1)
            if isinstance(layers[i], (nn.Conv2d, nn.Linear)) and isinstance(layers[i + 1], nn.ReLU)]


def quantize_static(model, engine, calibration):
    torch.backends.quantized.engine = engine
    fused = torch.ao.quantization.fuse_modules(model, fusable(model))
    q = nn.Sequential(torch.ao.quantization.QuantStub(), fused, torch.ao.quantization.DeQuantStub()).eval()
    q.qconfig = torch.ao.quantization.get_default_qconfig(engine)
    torch.ao.quantization.prepare(q, inplace=True)
    with torch.no_grad():
        q(calibration)
    return torch.ao.quantization.convert(q, inplace=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cnn", choices=["mlp", "cnn"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load("train")
    xte, yte = load("test")
    model = train(build(a.model), xtr, ytr, a.epochs, a.seed)
    for engine in ("fbgemm", "onednn", "qnnpack"):
        if engine not in torch.backends.quantized.supported_engines:
            continue
        q = quantize_static(copy.deepcopy(model), engine, xtr[:512])
        print(json.dumps(dict(peer="pytorch-int8-static-" + engine, model=a.model, threads=a.threads,
                              epochs=a.epochs, test_accuracy=round(accuracy(q, xte, yte), 4),
                              f32_test_accuracy=round(accuracy(model, xte, yte), 4),
                              infer_b1_us=round(latency(q, xte, 1, 2000) * 1e6, 1),
                              infer_b256_samples_per_s=round(256 / latency(q, xte, 256, 50), 1))), flush=True)


if __name__ == "__main__":
    main()
