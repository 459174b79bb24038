"""Where a training step's time goes, by class of operation, from a profile of a steady epoch.

Usage:
    python benchmarks/op_classes.py PROFILE_DIR [--peak-tflops 989] [--peak-tbps 4.8]
        [--write OUT.json]

``PROFILE_DIR`` holds what ``benchmarks/train_throughput.py --profile-dir`` wrote on the GPU
machine: ``trace.json.gz`` (every kernel of one epoch, named after the HLO instruction it runs),
``train_step.hlo.txt.gz`` (the optimised HLO of the step) and ``cost.json`` (XLA's count of
FLOPs and bytes accessed per step, and the measured seconds per step).

Each kernel of the training step is put in one class by what its HLO instruction does:

* **convolutions** — cuDNN convolutions, forward and both backward passes (custom calls, or
  fusions that contain a convolution);
* **augmentation gather** — fusions that gather: the image lookup, the shifted crop and flip;
* **optimiser** — the instructions that produce the updated weights and momenta (the step's
  outputs at the trainable-variable and optimiser-variable positions);
* **batch norm and other reductions** — fusions with a reduction (batch-norm statistics and their
  gradients; also pooling and the loss, which are small);
* **element-wise** — the remaining loop fusions (normalisation, ReLU, additions, casts);
* **copies and transposes**, and **other** (what is left).

Prints a table of milliseconds per step and shares of the kernel time, the GPU's busy share of
the step, and the achieved compute (MFU) and memory bandwidth against the given peaks.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

CLASSES = (
    "convolutions",
    "batch norm and other reductions",
    "element-wise",
    "augmentation gather",
    "optimiser",
    "copies and transposes",
    "other",
)

_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<type>.+?)\s+(?P<opcode>[\w\-]+)\((?P<args>.*)$"
)


def parse_hlo(text: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]], list[str]]:
    """Instructions of the entry computation, opcodes of every computation, and ROOT operands.

    Args:
        text: Optimised HLO module text.

    Returns:
        ``(instructions, computations, root_operands)``: entry instructions by name (opcode,
        called computations, custom-call target, operands); every computation's opcodes, by
        name; and the operands of the entry computation's ROOT tuple, in order.
    """
    computations: dict[str, list[str]] = {}
    instructions: dict[str, dict[str, Any]] = {}
    root_operands: list[str] = []
    current: str | None = None
    entry = False
    for line in text.splitlines():
        header = re.match(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if header and not line.startswith(" "):
            current, entry = header.group(2), bool(header.group(1))
            computations[current] = []
            continue
        if current is None:
            continue
        match = _INSTRUCTION.match(line)
        if match is None:
            continue
        opcode = match.group("opcode")
        computations[current].append(opcode)
        if entry:
            args = match.group("args")
            instructions[match.group("name")] = {
                "opcode": opcode,
                "calls": re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", args),
                "target": (re.findall(r'custom_call_target="([^"]+)"', args) or [""])[0],
                "operands": re.findall(r"%([\w.\-]+)", args.split(")")[0]),
                "index": int((re.findall(r"\bindex=(\d+)", args) or ["-1"])[0]),
            }
            if line.lstrip().startswith("ROOT") and opcode == "tuple":
                root_operands = instructions[match.group("name")]["operands"]
    return instructions, computations, root_operands


def classify(
    instructions: dict[str, dict[str, Any]],
    computations: dict[str, list[str]],
    root_operands: list[str],
    *,
    state_counts: tuple[int, int, int, int],
    log_outputs: int,
) -> dict[str, str]:
    """The class of every entry instruction.

    Args:
        instructions: From :func:`parse_hlo`.
        computations: From :func:`parse_hlo`.
        root_operands: From :func:`parse_hlo`.
        state_counts: Trainable, non-trainable, optimiser and metric variables (the step's
            outputs after the logs, in that order).
        log_outputs: Scalar logs the step returns first.

    Returns:
        ``{instruction name: class}``.
    """
    trainable, non_trainable, optimizer, _ = state_counts
    start = log_outputs
    update_positions = set(range(start, start + trainable)) | set(
        range(start + trainable + non_trainable, start + trainable + non_trainable + optimizer)
    )

    def producer(name: str) -> str:
        """The instruction that computes ``name``, through tuples and pass-throughs."""
        for _ in range(len(instructions)):
            info = instructions.get(name, {})
            operands = info.get("operands") or []
            if info.get("opcode") in ("bitcast", "copy") and operands:
                name = operands[0]
            elif info.get("opcode") == "get-tuple-element" and operands:
                source = instructions.get(operands[0], {})
                if source.get("opcode") == "tuple" and 0 <= info["index"] < len(source["operands"]):
                    name = source["operands"][info["index"]]
                else:
                    return operands[0]  # an element of a multi-output fusion
            else:
                break
        return name

    updates = {producer(root_operands[i]) for i in update_positions if i < len(root_operands)}
    classes = {}
    for name, info in instructions.items():
        opcode = info["opcode"]
        inside = [op for called in info["calls"] for op in computations.get(called, [])]
        if opcode == "custom-call" and re.search(r"conv|cudnn", info["target"], re.I):
            cls = "convolutions"
        elif opcode == "convolution" or "convolution" in inside:
            cls = "convolutions"
        elif name in updates:
            cls = "optimiser"
        elif opcode == "gather" or "gather" in inside:
            cls = "augmentation gather"
        elif opcode in ("reduce", "reduce-window") or "reduce" in inside:
            cls = "batch norm and other reductions"
        elif opcode == "fusion":
            cls = "element-wise"
        elif opcode in ("copy", "transpose", "copy-start", "copy-done"):
            cls = "copies and transposes"
        else:
            cls = "other"
        classes[name] = cls
    return classes


def state_counts_from_hlo(text: str) -> tuple[tuple[int, int, int, int], int]:
    """Variables per state group (Keras' ``state_0`` … ``state_3`` parameters) and log outputs."""
    entry = next(line for line in text.splitlines() if line.startswith("ENTRY"))
    counts = [len(set(re.findall(rf"state_{g}__(\d+)_", entry))) for g in range(4)]
    outputs = entry.split("->", 1)[1]
    scalars_first = re.match(r"\s*\(((?:f32\[\], )+)", outputs)
    log_outputs = scalars_first.group(1).count("f32[]") if scalars_first else 0
    return (counts[0], counts[1], counts[2], counts[3]), log_outputs


def kernel_events(trace: dict[str, Any], module_prefix: str = "jit_train_step") -> list[dict]:
    """Complete events of the training step's device work (or, on a CPU, its thunks)."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    device_pids = {
        e["pid"]
        for e in events
        if e.get("ph") == "M"
        and e.get("name") == "process_name"
        and "/device:" in str(e.get("args", {}).get("name", ""))
    }
    chosen = []
    for event in events:
        if event.get("ph") != "X" or "dur" not in event:
            continue
        args = event.get("args", {})
        if not str(args.get("hlo_module", "")).startswith(module_prefix):
            continue
        if device_pids and event.get("pid") not in device_pids:
            continue
        chosen.append(event)
    return chosen


def analyse(
    folder: Path,
    *,
    peak_tflops: float,
    peak_tbps: float,
    model_gflop_per_image: float | None = None,
) -> dict[str, Any]:
    """Milliseconds per step by class, the busy share and the achieved rates of a profile.

    XLA's cost analysis does not look inside custom calls, so its FLOP and byte counts leave the
    cuDNN convolutions out: its bytes are set against the time of the other kernels
    (``non_convolution_tbps``), and the model-FLOP utilisation comes from the model's own count
    (``model_gflop_per_image``, forward; training ≈ 3 × forward), when given.
    """
    hlo = gzip.open(folder / "train_step.hlo.txt.gz", "rt").read()
    cost = json.loads((folder / "cost.json").read_text())
    trace = json.load(gzip.open(folder / "trace.json.gz", "rt"))
    instructions, computations, roots = parse_hlo(hlo)
    counts, logs = state_counts_from_hlo(hlo)
    classes = classify(instructions, computations, roots, state_counts=counts, log_outputs=logs)
    events = kernel_events(trace)
    if not events:
        raise SystemExit(f"no kernel of jit_train_step in {folder / 'trace.json.gz'}")
    per_op: dict[str, list[float]] = collections.defaultdict(list)
    for event in events:
        per_op[event["args"].get("hlo_op") or event.get("name", "")].append(float(event["dur"]))
    steps = statistics.median(len(durations) for durations in per_op.values())
    milliseconds: dict[str, float] = dict.fromkeys(CLASSES, 0.0)
    unmatched = 0.0
    for op, durations in per_op.items():
        cls = classes.get(op)
        if cls is None:
            unmatched += sum(durations)
            cls = "other"
        milliseconds[cls] += sum(durations) / 1000 / steps
    kernel_ms = sum(milliseconds.values())
    step_ms = 1000 * cost["measured_seconds_per_step"]
    flops, bytes_accessed = cost["flops_per_step"], cost["bytes_accessed_per_step"]
    other_ms = kernel_ms - milliseconds["convolutions"]
    model_flops = (
        None if model_gflop_per_image is None else 3 * model_gflop_per_image * 1e9 * cost["batch"]
    )
    return {
        "steps_traced": steps,
        "milliseconds_per_step": {k: round(v, 3) for k, v in milliseconds.items()},
        "share_of_kernel_time": {k: round(v / kernel_ms, 4) for k, v in milliseconds.items()},
        "kernel_milliseconds_per_step": round(kernel_ms, 3),
        "measured_milliseconds_per_step": round(step_ms, 3),
        "busy_share": round(kernel_ms / step_ms, 4),
        "unmatched_kernel_milliseconds": round(unmatched / 1000 / steps, 3),
        "xla_flops_per_step": flops,
        "xla_bytes_accessed_per_step": bytes_accessed,
        "achieved_tflops": round(flops / (step_ms / 1000) / 1e12, 2),
        "achieved_tbps": round(bytes_accessed / (step_ms / 1000) / 1e12, 3),
        "peak_tflops": peak_tflops,
        "peak_tbps": peak_tbps,
        "xla_flop_utilisation": round(flops / (step_ms / 1000) / (peak_tflops * 1e12), 4),
        "bandwidth_utilisation": round(bytes_accessed / (step_ms / 1000) / (peak_tbps * 1e12), 4),
        "non_convolution_milliseconds_per_step": round(other_ms, 3),
        "non_convolution_tbps": round(bytes_accessed / (other_ms / 1000) / 1e12, 3),
        "non_convolution_bandwidth_utilisation": round(
            bytes_accessed / (other_ms / 1000) / (peak_tbps * 1e12), 4
        ),
        "model_flops_per_step": model_flops,
        "mfu": None
        if model_flops is None
        else round(model_flops / (step_ms / 1000) / (peak_tflops * 1e12), 4),
        "batch": cost["batch"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 datasheet")
    parser.add_argument("--peak-tbps", type=float, default=4.8, help="memory, datasheet")
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument(
        "--model-gflop-per-image", type=float, default=None, help="forward, for the MFU"
    )
    args = parser.parse_args(argv)
    result = analyse(
        args.folder,
        peak_tflops=args.peak_tflops,
        peak_tbps=args.peak_tbps,
        model_gflop_per_image=args.model_gflop_per_image,
    )
    for cls in CLASSES:
        ms, share = result["milliseconds_per_step"][cls], result["share_of_kernel_time"][cls]
        print(f"{cls:<34} {ms:8.3f} ms/step  {share:6.1%}")
    print(
        f"kernels {result['kernel_milliseconds_per_step']:.2f} ms of a "
        f"{result['measured_milliseconds_per_step']:.2f} ms step "
        f"(busy {result['busy_share']:.0%})"
    )
    if result["mfu"] is not None:
        print(f"model FLOPs: MFU {result['mfu']:.1%} of {args.peak_tflops:.0f} TFLOP/s")
    print(
        f"outside the convolutions XLA counts {result['xla_bytes_accessed_per_step'] / 1e9:.2f} "
        f"GB per step in {result['non_convolution_milliseconds_per_step']:.2f} ms of kernels: "
        f"{result['non_convolution_tbps']:.2f} TB/s "
        f"({result['non_convolution_bandwidth_utilisation']:.0%} of {args.peak_tbps} TB/s)"
    )
    if args.write is not None:
        args.write.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
